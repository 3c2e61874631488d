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

from ..models import build_model
from ..pipeline import RunResult, build_batches, build_trainer, setup_run
from ..report.writer import RunWriter
from ..saved import load_run
from ..train import EarlyStopping

__all__ = ["ensemble_run"]


def ensemble_run(members: list[str | Path], run_dir: str | Path, *, info: list[dict[str, Any]] | None = None,
                 trust_code: bool = False) -> dict[str, Any]:
    """Combine the runs in ``members`` (same data, split and preprocessing) into ``run_dir``; evaluate its
    validation split, and its test split once. Returns the summary (also written to summary.json).
    ``trust_code``: members whose model is user code may be loaded (see `trainwise.saved.load_run`)."""
    t0 = time.perf_counter()
    runs = [load_run(m, trust_code=trust_code) for m in members]
    cfg = runs[0].config
    pp = runs[0].preprocessing
    recipe = {"builder": "ensemble", "kind": pp["kind"], "members": [r.recipe for r in runs]}
    model = build_model(recipe)
    for slot, run in zip(model.members, runs):
        slot.load_state_dict(run.model.state_dict())
    setup = setup_run(cfg.model_copy(update={"device": "cpu"}), recipe=recipe)  # config.yaml's model spec is not resolved
    writer = RunWriter(run_dir)
    writer.write_config(cfg)
    result = RunResult(setup, build_trainer(setup, model, [], optimizer=None), EarlyStopping(), build_batches(setup, cfg.seed), cfg.seed)
    writer.write_model(result)
    best = result.trainer.evaluate(result.batches["val"], prefix="val") if "val" in result.batches else {}
    test = result.evaluate_test(trained=False)
    specs = [r.summary.get("model", {}).get("spec", "?") for r in runs]
    summary = {
        "status": "completed", "stop_reason": f"ensemble of {len(runs)} trained runs (probabilities averaged)",
        "epochs_run": None, "best_epoch": None, "monitor": runs[0].summary.get("monitor"), "best": best,
        "test": test, "test_evaluations": int(test is not None), "seed": cfg.seed,
        "wall_time_s": round(time.perf_counter() - t0, 3), "data": setup.prep.describe(),
        "model": {"spec": "ensemble of " + ", ".join(specs), "recipe": recipe,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "members": info or [{"run_dir": str(m)} for m in members],
        "loss": setup.loss, "device": "cpu", "diagnostics": [], "test_confusion": result.confusion,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    writer.write_summary(result, summary)
    return summary
