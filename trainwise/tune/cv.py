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

from ..config import RunConfig
from ..data import fold_indices
from ..errors import TrainwiseError
from ..pipeline import check_run, in_memory_name, load_raw, setup_run
from ..population import Member, MemberResult, run_population, select_best, spread
from ..report.writer import RunWriter
from ..runs import check_output_dir
from ..train.callbacks import tie_breaker

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
    t_start = time.perf_counter()
    if isinstance(data, str):
        options["data"], data = data, None
    elif data is not None:
        options.setdefault("data", in_memory_name(data))
    cfg = RunConfig.build(options, source="option").model_copy(update={"checkpoint": False})
    if cfg.mlflow:
        raise TrainwiseError("--mlflow logs the runs of `trainwise fit`; cv, tune and auto do not log to MLflow yet",
                             hint="drop --mlflow here; train the chosen configuration with `trainwise fit --config ... --mlflow`")
    if cfg.time_column:
        raise TrainwiseError(f"cross-validation shuffles rows into folds, which --time-column {cfg.time_column} forbids "
                             "(a fold would train on the future)", hint="use `trainwise fit --split time` for one time-ordered "
                                                                       "split, or drop --time-column")
    check_output_dir(cfg.run_dir)
    raw = load_raw(cfg, data, y)
    probe = setup_run(cfg, raw=raw)  # the task, as the fold runs will see it
    check_run(probe)  # input errors before the run directory exists
    classification = probe.prep.task == "classification"  # stratified by class (several label columns: not stratified)
    encoded = probe.prep.target.encode(raw.y, what="target") if classification and not probe.prep.target.multilabel else None
    grouped = raw.groups is not None  # --group-column: whole groups to the test split and to each fold (no stratification)
    runs = fold_indices(len(raw), folds, seed=cfg.seed, test_fraction=cfg.split[2], rotate=rotate,
                        stratify=None if grouped else encoded,
                        regression_target=None if classification or grouped else raw.y.astype(float),
                        given_test=(raw.given_splits or {}).get("test"), groups=raw.groups)
    writer = RunWriter.create(cfg.run_dir, f"{cfg.data}-cv")
    writer.write_config(cfg)
    members = [Member(f"fold-{i + 1}", cfg=cfg, raw=dataclasses.replace(raw, given_splits=idx), writer=writer.sub(f"fold-{i + 1}"),
                      evaluate_test=rotate)  # rotation: each fold's own test fold, once
               for i, idx in enumerate(runs)]

    def announce(i: int, m: Member) -> None:
        if console is not None and not cfg.quiet:
            idx = runs[i]
            console.print(f"[bold]fold {i + 1}/{folds}[/bold]: {len(idx['train'])} train, {len(idx['val'])} val, "
                          f"{len(idx['test'])} test rows")

    def record(i: int, r: MemberResult) -> None:
        summary = r.result.summary()
        r.member.writer.write_summary(r.result, {**summary, "cv_fold": i + 1})  # evaluate() refuses to rebuild its split
        r.info.update(summary)

    results = run_population(members, console=console, on_start=announce, on_done=record)
    fold_rows = [{"fold": i + 1, **{f"{k}_rows": len(v) for k, v in idx.items()}, "best_epoch": r.info["best_epoch"],
                  **r.info["best"], **(r.info["test"] or {})} for i, (idx, r) in enumerate(zip(runs, results))]
    tie = tie_breaker(results[0].result.stopper.monitor)  # equal accuracies: the lower validation loss wins
    chosen = select_best([r.best for r in results], results[0].result.stopper.mode,
                         tie=[r.result.best.get(tie) if r.result else None for r in results] if tie else None)
    best = results[chosen].result
    metric_keys = [k for k in fold_rows[0] if k.startswith(("val/", "test/"))]
    spreads = spread(fold_rows, metric_keys)
    test = None
    if not rotate and len(runs[0]["test"]):  # held-out test split: evaluated once, for the best fold's model
        test = best.trainer.evaluate(best.batches["test"], prefix="test")
    header = list(fold_rows[0])
    writer.write_text("cv.csv", "\n".join([",".join(header)] + [",".join(repr(r[h]) for h in header) for r in fold_rows]) + "\n")
    summary = {"design": "rotate" if rotate else "holdout", "folds": folds, "fold_results": fold_rows, "spread": spreads,
               "chosen_fold": None if rotate else chosen + 1, "test": test,
               "test_evaluations": folds if rotate else int(test is not None), "monitor": best.stopper.monitor,
               "data": probe.prep.describe() | {"sizes": {"rows": len(raw)}}, "seed": cfg.seed,
               "wall_time_s": round(time.perf_counter() - t_start, 3)}
    writer.write_json("summary.json", summary)
    return CVResult(fold_rows, spreads, test, writer.run_dir, summary)
