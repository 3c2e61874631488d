"""k-fold cross-validation: preprocessing fit inside each fold, per-fold runs and curves, mean ± std.

Two designs (see `trainwise.data.fold_indices`): a held-out test split with stratified folds over the rest
(the test split is evaluated once, for the fold model with the best validation score), or the lecture's
rotation, where every fold is the test fold once and the estimate is the mean of the k test scores.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..data import fold_indices

__all__ = ["cross_validate", "CVResult"]


@dataclasses.dataclass
class CVResult:
    """``folds``: one dict per fold (seed, sizes, best epoch, metrics); ``spread``: mean/std/values per metric."""

    folds: list[dict[str, Any]]
    spread: dict[str, dict[str, Any]]
    test: dict[str, float] | None
    run_dir: Path
    summary: dict[str, Any]


def cross_validate(data: Any = None, y: Any = None, *, folds: int = 5, rotate: bool = False, console=None,
                   **options: Any) -> CVResult:
    """Train one model per fold and summarize; writes ``fold-<i>/`` run folders and ``cv.csv`` + summary.json.

    >>> r = cross_validate("iris", folds=3, epochs=2, quiet=True, run_dir="/tmp/tw-doctest-cv-" + str(time.time_ns()))
    >>> len(r.folds), sorted(r.spread)[:2]
    (3, ['val/accuracy', 'val/loss'])
    """
    from ..api import _finish, _setup, _train, load_raw
    from ..runs import atomic_write, new_run_dir, write_json

    t_start = time.perf_counter()
    if isinstance(data, str):
        options["data"], data = data, None
    elif data is not None:
        options.setdefault("data", "arrays")
    cfg = RunConfig.build(options, source="option").model_copy(update={"checkpoint": False})
    raw = load_raw(cfg, data, y)
    probe = _setup(cfg, None, None, None, t_start, raw=raw)  # the task, as the fold runs will see it
    classification = probe.prep.task == "classification"
    encoded = probe.prep.target.encode(raw.y, what="target") if classification else None
    runs = fold_indices(len(raw), folds, seed=cfg.seed, test_fraction=cfg.split[2], rotate=rotate,
                        stratify=encoded, regression_target=None if classification else raw.y.astype(float),
                        given_test=(raw.given_splits or {}).get("test"))
    run_dir = new_run_dir(cfg.run_dir, f"{cfg.data}-cv")
    atomic_write(run_dir / "config.yaml", cfg.model_copy(update={"run_dir": None}).to_yaml())
    results, fold_rows, best = [], [], None
    for i, idx in enumerate(runs):
        if console is not None and not cfg.quiet:
            console.print(f"[bold]fold {i + 1}/{folds}[/bold]: {len(idx['train'])} train, {len(idx['val'])} val, "
                          f"{len(idx['test'])} test rows")
        s = _setup(cfg, None, None, None, time.perf_counter(), raw=dataclasses.replace(raw, given_splits=idx))
        sub = run_dir / f"fold-{i + 1}"
        sub.mkdir()
        atomic_write(sub / "config.yaml", s.cfg.model_copy(update={"run_dir": None}).to_yaml())
        trainer, stopper, batches = _train(s, sub, cfg.seed, (), console)
        fold = _finish(s, sub, trainer, stopper, batches, test=rotate)  # rotation: each fold's own test fold, once
        write_json(sub / "summary.json", {**fold.summary, "cv_fold": i + 1})  # evaluate() refuses to rebuild its split
        row = {"fold": i + 1, **{f"{k}_rows": len(v) for k, v in idx.items()}, "best_epoch": fold.summary["best_epoch"],
               **fold.summary["best"], **(fold.summary["test"] or {})}
        fold_rows.append(row)
        results.append(fold)
        if best is None or _better(stopper, best[1]):
            best = (fold, stopper, s, batches)
    metric_keys = [k for k in fold_rows[0] if k.startswith(("val/", "test/"))]
    spread = {k: {"mean": float(np.mean([r[k] for r in fold_rows])), "std": float(np.std([r[k] for r in fold_rows])),
                  "values": [r[k] for r in fold_rows]} for k in metric_keys}
    test = None
    if not rotate and len(runs[0]["test"]):  # held-out test split: evaluated once, for the best fold's model
        fold, _, s, batches = best
        test = fold.trainer.evaluate(batches["test"], prefix="test")
    header = list(fold_rows[0])
    atomic_write(run_dir / "cv.csv", "\n".join([",".join(header)] + [",".join(repr(r[h]) for h in header) for r in fold_rows]) + "\n")
    summary = {"design": "rotate" if rotate else "holdout", "folds": folds, "fold_results": fold_rows, "spread": spread,
               "chosen_fold": None if rotate else results.index(best[0]) + 1, "test": test,
               "test_evaluations": folds if rotate else int(test is not None), "monitor": best[1].monitor,
               "data": probe.prep.describe() | {"sizes": {"rows": len(raw)}}, "seed": cfg.seed,
               "wall_time_s": round(time.perf_counter() - t_start, 3)}
    write_json(run_dir / "summary.json", summary)
    return CVResult(fold_rows, spread, test, run_dir, summary)


def _better(stopper, best_stopper) -> bool:
    if stopper.mode == "min":
        return stopper.best_ < best_stopper.best_
    return stopper.best_ > best_stopper.best_
