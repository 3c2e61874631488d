"""An ensemble of already trained runs as one run folder: members' probabilities averaged.

Used by `trainwise auto` for its final model: on a 270-row validation split the single best trial is partly
luck (its validation score is the maximum of many noisy ones), while the average of the top few is a
lower-variance model. The result is an ordinary run folder: `evaluate`, `predict` and `report` work on it.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["ensemble_run"]


def ensemble_run(members: list[str | Path], run_dir: str | Path, *, info: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Combine the runs in ``members`` (same data, split and preprocessing) into ``run_dir``; evaluate its
    validation split, and its test split once. Returns the summary (also written to summary.json)."""
    from ..api import _confusion, _setup
    from ..models import build_model
    from ..report.html import write_report
    from ..runs import atomic_write, load_run, save_artifacts, write_json
    from ..train import Trainer

    t0 = time.perf_counter()
    runs = [load_run(m) for m in members]
    cfg = runs[0].config
    pp = runs[0].preprocessing
    recipe = {"builder": "ensemble", "kind": pp["kind"], "members": [r.recipe for r in runs]}
    model = build_model(recipe)
    for slot, run in zip(model.members, runs):
        slot.load_state_dict(run.model.state_dict())
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "config.yaml", cfg.model_copy(update={"run_dir": None}).to_yaml())
    save_artifacts(run_dir, model, recipe, pp)
    s = _setup(cfg, None, None, None, t0)
    batches = s.prep.batches(kind=s.kind, device=torch.device("cpu"), batch_size=cfg.batch_size, seed=cfg.seed)
    trainer = Trainer(model, loss=s.loss, kind=s.kind, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                      target_std=s.prep.target.std)
    best = trainer.evaluate(batches["val"], prefix="val") if "val" in batches else {}
    test = trainer.evaluate(batches["test"], prefix="test") if "test" in batches else None
    confusion = _confusion(trainer, batches["test"], s, run_dir) if test and s.kind != "regression" else None
    specs = [r.summary.get("model", {}).get("spec", "?") for r in runs]
    summary = {
        "status": "completed", "stop_reason": f"ensemble of {len(runs)} trained runs (probabilities averaged)",
        "epochs_run": None, "best_epoch": None, "monitor": runs[0].summary.get("monitor"), "best": best,
        "test": test, "test_evaluations": int(test is not None), "seed": cfg.seed,
        "wall_time_s": round(time.perf_counter() - t0, 3), "data": s.prep.describe(),
        "model": {"spec": "ensemble of " + ", ".join(specs), "recipe": recipe,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "members": info or [{"run_dir": str(m)} for m in members],
        "loss": s.loss, "device": "cpu", "diagnostics": [], "test_confusion": confusion,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir)
    return summary
