"""Run-directory files at the lowest layer: atomic writes, metrics.csv, summary.json, weights (safetensors),
the JSON needed to rebuild model and preprocessing, and checkpoints — nothing is ever pickled. Reading files
back is checked here too: `read_json`, `read_safetensors`, `check_fields` (a JSON object's keys and types) and
`check_tensors_match` (names, shapes, dtypes) turn a damaged or edited file into an error naming it.
Reading a whole run back is `trainwise.saved.load_run`."""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, load_file, save

from .errors import TrainwiseError

__all__ = ["atomic_write", "write_json", "write_metrics_csv", "read_metrics_csv", "new_run_dir", "save_artifacts",
           "encode_state", "decode_state", "snapshot_state", "serialize_snapshot", "save_checkpoint", "load_checkpoint",
           "read_json", "read_safetensors",
           "damaged", "check_fields", "check_tensors_match", "is_int", "is_number", "is_str_list", "Check",
           "check_output_dir", "check_output_file", "RunLock", "clean_temp"]


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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # full disk, quota, read-only file system: the files already there stay intact
            raise TrainwiseError(f"cannot write '{path}': {e.strerror or e}",
                                 hint="free space on that disk or give a folder you can write to; files already "
                                      "written (the last checkpoint) are intact, so `trainwise fit --resume RUN_DIR` "
                                      "continues a stopped run") from e
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON (what jq and JavaScript read): a NaN or infinite float is written as null; in an object at the
    top, ``non_finite`` then lists where, with the value it stood for (``{"test.test/loss": "nan"}``)."""
    found: dict[str, str] = {}
    obj = _strict(obj, "", found)
    if found and isinstance(obj, dict):
        obj = {**obj, "non_finite": found}
    atomic_write(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n")


def _strict(o: Any, where: str, found: dict[str, str]) -> Any:
    if hasattr(o, "tolist") and not isinstance(o, (str, bytes)):
        o = o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        found[where or "."] = str(o)
        return None
    if isinstance(o, dict):
        return {k: _strict(v, f"{where}.{k}" if where else str(k), found) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v, f"{where}[{i}]", found) for i, v in enumerate(o)]
    return o


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


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """A run's metrics.csv back as one dict per epoch (numbers; an empty or unreadable cell is NaN); no file: [].

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> write_metrics_csv(p, [{"epoch": 1, "val/loss": 0.5}]); read_metrics_csv(p)
    [{'epoch': 1.0, 'val/loss': 0.5}]
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(v: str | None) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fmt(v: Any) -> str:
    return "" if v is None else repr(float(v)) if isinstance(v, float) else str(v)


class RunLock:
    """One writer per run directory: an exclusive ``flock`` on ``<run_dir>/.lock``, which also records who holds
    it. The kernel drops the lock when its process dies, so a lock left by a killed run is never in the way.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); lock = RunLock(d)
    >>> try: RunLock(d)
    ... except TrainwiseError as e: print("in use by another trainwise process" in str(e))
    True
    >>> lock.release(); RunLock(d).release()
    """

    def __init__(self, run_dir: str | Path):
        import fcntl  # POSIX only: imported where it is used

        self.fd: int | None = None
        self.path = Path(run_dir) / ".lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "an unknown process"
            os.close(fd)
            raise TrainwiseError(f"run directory '{run_dir}' is in use by another trainwise process ({holder})",
                                 hint="wait for that run to finish (or stop it), or give another --run-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}, since {datetime.now():%Y-%m-%d %H:%M:%S}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __del__(self) -> None:
        self.release()


def clean_temp(run_dir: str | Path) -> list[Path]:
    """Remove the temp files (``.<name>.<random>.tmp``) a killed atomic write left in ``run_dir`` and its
    subfolders; the files they were replacing are whole. Call it holding the run's `RunLock`."""
    removed = [p for p in Path(run_dir).rglob(".*.tmp") if p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def new_run_dir(run_dir: str | None, data_name: str) -> Path:
    """The given folder (created; refused if it already holds a run) or runs/<data>-<timestamp>."""
    if run_dir is None:
        # a path data set (data/x.csv, /abs/images/) is named by its last part: the run still goes under runs/
        stem = Path(data_name.rstrip("/\\")).name.replace(".csv", "").replace(".npz", "") or "data"
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
    return serialize_snapshot(snapshot_state(state))


def snapshot_state(state: Any) -> tuple[dict[str, torch.Tensor], str]:
    """``state``'s tensors copied to the CPU and its JSON skeleton: a consistent copy that training may go on
    changing the originals of (`serialize_snapshot` turns it into a checkpoint's bytes, on any thread)."""
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
    return tensors, skeleton


def serialize_snapshot(snapshot: tuple[dict[str, torch.Tensor], str]) -> bytes:
    tensors, skeleton = snapshot
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
            # only tensors that were on a device move (to ``map_location``): the RNG states were CPU tensors
            # and must stay so (`Generator.set_state` takes CPU bytes only)
            return t.to(map_location or o["device"]) if o["device"] != "cpu" else t
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


# --- reading back: a file that was edited, damaged or comes from elsewhere is an error naming it -----------

Check = tuple[Callable[[Any], bool], str]  # (test, what the value should be, in words)

DAMAGED_HINT = "the file was edited, damaged or written by something else: restore it from the original run, or train the run again"


def damaged(path: str | Path, problem: str, hint: str = DAMAGED_HINT) -> TrainwiseError:
    """The error for a run file that is not what trainwise wrote: names the file and what is wrong with it."""
    return TrainwiseError(f"'{path}' is not a valid trainwise file: {problem}", hint=hint)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; unreadable or malformed JSON is a `damaged` error naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise damaged(path, f"cannot read it as JSON ({type(e).__name__}: {e})") from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; one that cannot be parsed is a `damaged` error naming it."""
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parsing problem means the file is not a safetensors file
        raise damaged(path, f"cannot read it as safetensors ({type(e).__name__}: {e})") from None


def is_int(v: Any) -> bool:
    """An int that is not a bool (JSON ``true`` would otherwise pass as 1)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, torch.Tensor) else f"a tensor of shape {tuple(v.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(obj: Any, fields: Mapping[str, Check], *, path: str | Path, where: str = "",
                 optional: Iterable[str] = (), extra: bool = False) -> dict[str, Any]:
    """Check that ``obj`` (read from ``path``) is an object with exactly ``fields`` (``optional`` ones may be
    absent; ``extra``: other keys are allowed), each passing its test; return it. ``where`` prefixes names.

    >>> check_fields({"a": 1}, {"a": (is_int, "an integer")}, path="x.json")
    {'a': 1}
    >>> check_fields({"a": "1"}, {"a": (is_int, "an integer")}, path="x.json")
    Traceback (most recent call last):
    trainwise.errors.TrainwiseError: 'x.json' is not a valid trainwise file: 'a' is "1", expected an integer. HINT: ...
    """
    if not isinstance(obj, dict):
        raise damaged(path, f"{f'{where[:-1]!r}' if where else 'its content'} is {_short(obj)}, expected a JSON object")
    optional = set(optional)
    missing = [k for k in fields if k not in obj and k not in optional]
    if missing:
        raise damaged(path, "missing " + ", ".join(f"'{where}{k}'" for k in missing))
    unknown = [k for k in obj if k not in fields]
    if unknown and not extra:
        raise damaged(path, "unknown " + ", ".join(f"'{where}{k}'" for k in unknown) + " (expected "
                      + ", ".join(fields) + ")")
    for key, (ok, what) in fields.items():
        if key in obj and not ok(obj[key]):
            raise damaged(path, f"'{where}{key}' is {_short(obj[key])}, expected {what}")
    return obj


def check_tensors_match(expected: Mapping[str, torch.Tensor], found: Any, *, path: str | Path, what: str = "the model") -> None:
    """``found`` (tensors read from ``path``) must have exactly the names, shapes and dtypes of ``expected``
    (e.g. a model's state dict; meta tensors will do), so that loading it cannot fail or go silently wrong."""
    if not isinstance(found, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in found.items()):
        raise damaged(path, f"its weights for {what} are not a mapping of names to tensors")
    hint = ("the file does not belong to this run (another model's weights, or edited): use the run's own file, "
            "or train the run again")
    missing, unknown = [k for k in expected if k not in found], [k for k in found if k not in expected]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"] if missing else []) + \
                ([f"unexpected {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}"] if unknown else [])
        raise damaged(path, f"its tensors do not fit {what}: {'; '.join(parts)}", hint)
    for k, t in expected.items():
        if tuple(found[k].shape) != tuple(t.shape) or found[k].dtype != t.dtype:
            raise damaged(path, f"tensor '{k}' has shape {tuple(found[k].shape)} ({found[k].dtype}), but {what} needs "
                                f"{tuple(t.shape)} ({t.dtype})", hint)


def check_output_dir(path: str | Path | None, option: str = "--run-dir") -> None:
    """Refuse, before any work, a folder that ``option`` names (None: the default runs/) and that cannot be
    created or written: a file in its place or on its path, or a place without write permission (read-only
    disk). Nothing is created; a temporary file is written and removed in the nearest existing parent."""
    p = Path("runs") if path is None else Path(path)
    where = f"{option} '{p}'" if path is not None else f"the default run folder '{p}'"
    if p.exists() and not p.is_dir():
        raise TrainwiseError(f"{where} is a file, not a folder",
                             hint=f"give {option} a folder path (it is created if needed), or move the file away")
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise TrainwiseError(f"{where} cannot be created: '{parent}' on its path is a file",
                             hint=f"give {option} a path whose parents are folders")
    _check_writable(parent, where, option)


def check_output_file(path: str | Path, option: str = "--output") -> None:
    """Refuse, before any work, an output file path that names a folder or lies in a folder that does not exist
    or cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise TrainwiseError(f"{option} '{p}' is a folder, not a file", hint=f"give {option} a file name, e.g. {p / 'predictions.csv'}")
    parent = p.parent
    if not parent.is_dir():
        raise TrainwiseError(f"{option} '{p}': the folder '{parent}' does not exist",
                             hint=f"create it first (mkdir -p {parent}), or give a file in an existing folder")
    _check_writable(parent, f"{option} '{p}'", option)


def _check_writable(folder: Path, where: str, option: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise TrainwiseError(f"{where} cannot be written: no write access to '{folder}' ({e.strerror or e})",
                             hint=f"give {option} a place you can write to, e.g. under your home folder") from None
