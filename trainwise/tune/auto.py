"""`trainwise auto`: the lecture's systematic approach in one command, within a time budget.

1. prove the model can learn (overfit a tiny subset), 2. find a learning rate (range test), 3. a regularized
run with early stopping, 4. a bounded Optuna search around it, 5. retrain the best and evaluate the test split
once, 6. write the report. Stages 3-4 only ever see the train and validation splits.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import TrainwiseError

__all__ = ["auto"]


def auto(data: str | None = None, *, budget_minutes: float = 10.0, out: str | Path | None = None, console=None,
         **options: Any) -> dict[str, Any]:
    """Run the recipe; returns a summary dict (also written to ``out/summary.json``)."""
    from ..api import model_for
    from ..diagnose import sanity
    from ..runs import new_run_dir, write_json
    from ..train import Trainer
    from .lr_finder import lr_find
    from .search import tune

    if budget_minutes <= 0:
        raise TrainwiseError(f"budget_minutes must be > 0, got {budget_minutes}", hint="e.g. --budget-minutes 5")
    t0 = time.perf_counter()
    deadline = t0 + 60 * budget_minutes
    if data is not None:
        options["data"] = data
    cfg = RunConfig.build({**options, "quiet": True}, source="option")
    out_dir = Path(out) if out else new_run_dir(None, f"{cfg.data}-auto")
    out_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: console.print(msg)) if console is not None else (lambda msg: None)
    stages: list[dict[str, Any]] = []

    def stage(name: str, started: float, **info: Any) -> None:
        stages.append({"stage": name, "seconds": round(time.perf_counter() - started, 2), **info})

    s0 = time.perf_counter()
    say("[bold]1/6 can the model learn?[/bold] training on a tiny subset with regularization off")
    check = sanity(config=cfg)
    say(f"    {check.verdict}")
    stage("sanity", s0, can_learn=check.can_learn, verdict=check.verdict)
    if not check.can_learn:
        summary = {"status": "stopped", "reason": check.verdict, "stages": stages}
        write_json(out_dir / "summary.json", summary)
        return summary

    s0 = time.perf_counter()
    say("[bold]2/6 learning-rate range test[/bold]")
    model, setup = model_for(cfg)
    trainer = Trainer(model, loss=setup.loss, optimizer=cfg.optimizer, momentum=cfg.momentum, kind=setup.kind, device=setup.device)
    found = lr_find(trainer, setup.prep.batches(kind=setup.kind, device=setup.device, batch_size=cfg.batch_size,
                                                 seed=cfg.seed)["train"])
    found.save(out_dir)
    top = found.suggestion or 1e-2
    low, high = top / 10, top  # the suggestion tends to sit near the edge of stability: search below it
    center = math.sqrt(low * high)
    say(f"    suggested {top:.2e}; searching {low:.1e} .. {high:.1e}")
    stage("lr_finder", s0, suggestion=found.suggestion, search_range=[low, high])

    say(f"[bold]3/6 regularized run[/bold]: lr {center:.2e}, dropout {cfg.dropout}, early stopping (patience {cfg.patience})")
    say("[bold]4/6 bounded search around it[/bold] (Optuna TPE, median pruning; train/val only)")
    space = {"lr": {"type": "loguniform", "low": low, "high": high},
             "dropout": {"type": "uniform", "low": 0.0, "high": 0.4},
             "weight_decay": {"type": "categorical", "choices": [0.0, 1e-5, 1e-4, 1e-3]},
             "batch_size": {"type": "categorical", "choices": sorted({cfg.batch_size, 32, 64})}}
    s0 = time.perf_counter()
    first = {"lr": center, "dropout": cfg.dropout, "weight_decay": cfg.weight_decay if cfg.weight_decay in
             (0.0, 1e-5, 1e-4, 1e-3) else 0.0, "batch_size": cfg.batch_size}
    fixed = {k: v for k, v in cfg.model_dump().items() if k not in space and k not in ("quiet", "checkpoint", "run_dir", "seed")}
    reserve = 0.15 * (deadline - time.perf_counter()) + 10  # time kept for the final retrain and the report
    result = tune(space, method="optuna", trials=10_000, out=out_dir / "search", seed=cfg.seed,
                  timeout=max(deadline - time.perf_counter() - reserve, 1.0), enqueue=[first], retrain=False,
                  console=None, **fixed)
    table = result["results"]
    base_row = table[table["trial"] == 0].iloc[0]
    key = [c for c in table.columns if c.startswith("best_")][0]
    say(f"    the regularized run (trial 0): {key[5:]} {base_row[key]:.4f}")
    say(f"    {len(table)} trials ({(table['status'] == 'pruned').sum()} pruned); best {key[5:]} "
        f"{table.iloc[0][key]:.4f} with {result['best']}")
    stage("search", s0, trials=len(table), best=result["best"], best_value=float(table.iloc[0][key]),
          regularized_run=float(base_row[key]))

    s0 = time.perf_counter()
    say("[bold]5/6 retrain the best configuration and evaluate the test split once[/bold]")
    from ..api import fit

    final_cfg = RunConfig.build({**fixed, **result["best"], "seed": cfg.seed, "quiet": True,
                                 "run_dir": str(out_dir / "best")}, source="best trial")
    final = fit(config=final_cfg)
    say("    test: " + ", ".join(f"{k} {v:.4f}" for k, v in (final.test or {}).items()))
    stage("retrain", s0, test=final.test)
    say(f"[bold]6/6 report[/bold]: {final.run_dir / 'report.html'}")
    warnings = [d for d in final.summary["diagnostics"] if d["severity"] != "info"]
    for d in warnings:
        say(f"    {d['severity']} {d['code']}: {d['evidence']}")
    summary = {"status": "done", "budget_minutes": budget_minutes, "wall_time_s": round(time.perf_counter() - t0, 1),
               "stages": stages, "best": result["best"], "test": final.test, "test_evaluations": 1,
               "run_dir": str(final.run_dir), "report": str(final.run_dir / "report.html")}
    write_json(out_dir / "summary.json", summary)
    return summary
