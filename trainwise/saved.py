"""Reading a run directory back as data: config, rebuilt model (best weights), preprocessing, summary."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .config import load_config
from .errors import TrainwiseError
from .models import build_model

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A finished run read back: its config, rebuilt model (best weights), preprocessing and summary."""

    path: Path
    config: Any
    model: torch.nn.Module
    recipe: dict
    preprocessing: dict
    summary: dict


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a run's model and preprocessing from its files (safetensors + JSON; nothing is unpickled)."""
    path = Path(run_dir)
    needed = ["config.yaml", "model.json", "model.safetensors", "preprocess.json"]
    absent = [n for n in needed if not (path / n).is_file()]
    if absent:
        raise TrainwiseError(f"'{path}' is not a finished trainwise run (missing {', '.join(absent)})",
                             hint="give the run directory that `trainwise fit` printed")
    recipe = json.loads((path / "model.json").read_text())
    model = build_model(recipe)
    model.load_state_dict(load_file(path / "model.safetensors"))
    model.eval()
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
    return LoadedRun(path, load_config(path / "config.yaml"), model, recipe,
                     json.loads((path / "preprocess.json").read_text()), summary)
