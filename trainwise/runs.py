"""Run-directory files at the lowest layer: atomic writes, metrics.csv, summary.json, weights (safetensors),
the JSON needed to rebuild model and preprocessing, and checkpoints — nothing is ever pickled.
Reading a whole run back is `trainwise.saved.load_run`."""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from .errors import TrainwiseError

__all__ = ["atomic_write", "write_json", "write_metrics_csv", "new_run_dir", "save_artifacts",
           "encode_state", "decode_state", "save_checkpoint", "load_checkpoint"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder + rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
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
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / "model.safetensors", save(tensors))
    write_json(run_dir / "model.json", recipe)
    write_json(run_dir / "preprocess.json", preprocessing)


# --- checkpoints: any nest of dicts/lists/tuples/numbers/strings/tensors, as one safetensors file whose
# header metadata holds the JSON skeleton. Loading never unpickles: only JSON and raw tensor bytes are read.

def encode_state(state: Any) -> bytes:
    """Serialize a state dict (as returned by `Trainer.state_dict`) to safetensors bytes."""
    tensors: dict[str, torch.Tensor] = {}

    def enc(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = o.detach().to("cpu", copy=True).contiguous()  # copies: shared storage is not allowed
            return {"__tensor__": key, "device": str(o.device)}
        if isinstance(o, dict):
            if all(isinstance(k, str) for k in o):
                return {"__dict__": {k: enc(v) for k, v in o.items()}}
            return {"__items__": [[enc(k), enc(v)] for k, v in o.items()]}
        if isinstance(o, tuple):
            return {"__tuple__": [enc(v) for v in o]}
        if isinstance(o, list):
            return [enc(v) for v in o]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot checkpoint a {type(o).__name__} (only tensors, numbers, strings, lists and dicts)")

    skeleton = json.dumps(enc(state))
    return save(tensors, metadata={"trainwise": skeleton})


def decode_state(data: bytes, *, map_location: str | torch.device | None = None) -> Any:
    """The inverse of `encode_state`; tensors go back to their device (or ``map_location``)."""
    tensors = load(data)
    header_len = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {})

    def dec(o: Any) -> Any:
        if isinstance(o, list):
            return [dec(v) for v in o]
        if not isinstance(o, dict):
            return o
        if "__tensor__" in o:
            t = tensors[o["__tensor__"]]
            return t.to(map_location or o["device"]) if (map_location or o["device"]) != "cpu" else t
        if "__dict__" in o:
            return {k: dec(v) for k, v in o["__dict__"].items()}
        if "__items__" in o:
            return {dec(k): dec(v) for k, v in o["__items__"]}
        return tuple(dec(v) for v in o["__tuple__"])

    return dec(json.loads(metadata["trainwise"]))


def save_checkpoint(path: str | Path, state: Any) -> bytes:
    """Write a checkpoint atomically; returns the bytes (so the same state can be written elsewhere)."""
    data = encode_state(state)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return data


def load_checkpoint(path: str | Path, *, map_location: str | torch.device | None = None) -> Any:
    path = Path(path)
    if not path.is_file():
        raise TrainwiseError(f"checkpoint '{path}' does not exist",
                             hint="resume a run that was started with checkpoints on (the default)")
    try:
        return decode_state(path.read_bytes(), map_location=map_location)
    except Exception as e:  # noqa: BLE001 - any decoding problem means the file is not a trainwise checkpoint
        raise TrainwiseError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {e})",
                             hint="the file is damaged or not a trainwise checkpoint; use checkpoints/best.safetensors "
                                  "or start the run again") from None
