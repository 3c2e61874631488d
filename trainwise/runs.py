"""The run directory: atomic writes, metrics.csv, summary.json, weights (safetensors) and the JSON needed
to rebuild model and preprocessing without pickle."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from .errors import TrainwiseError

__all__ = ["atomic_write", "write_json", "write_metrics_csv", "new_run_dir", "save_artifacts", "load_run", "LoadedRun"]


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder + rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def write_metrics_csv(path: str | Path, history: list[dict[str, float]]) -> None:
    """One row per epoch; floats written with repr() so equal runs give byte-equal files."""
    if not history:
        return
    columns = list(history[0])
    lines = [",".join(columns)] + [",".join(_fmt(row.get(c)) for c in columns) for row in history]
    atomic_write(path, "\n".join(lines) + "\n")


def _fmt(v: Any) -> str:
    return "" if v is None else repr(float(v)) if isinstance(v, float) else str(v)


def new_run_dir(run_dir: str | None, data_name: str) -> Path:
    """The given folder (created; refused if it already holds a run) or runs/<data>-<timestamp>."""
    if run_dir is None:
        stem = Path(data_name).stem if data_name.endswith((".csv", ".npz")) else data_name
        base = Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        path, i = base, 1
        while path.exists():
            path, i = Path(f"{base}-{i}"), i + 1
    else:
        path = Path(run_dir)
        if (path / "summary.json").exists() or (path / "metrics.csv").exists():
            raise TrainwiseError(f"run directory '{path}' already holds a run",
                                 hint="give a new --run-dir, or delete the old run first")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_artifacts(run_dir: Path, model: torch.nn.Module, recipe: dict, preprocessing: dict) -> None:
    """Weights as safetensors plus model.json (how to build it) and preprocess.json (how to feed it)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / "model.safetensors", save(tensors))
    write_json(run_dir / "model.json", recipe)
    write_json(run_dir / "preprocess.json", preprocessing)


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
    from safetensors.torch import load_file

    from .config import load_config
    from .models import build_model

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
