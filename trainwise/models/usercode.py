"""User model code (``path/file.py:fn``, ``package.module:fn``): located and fingerprinted when a run is set up
(absolute path + SHA-256 of the file, recorded in the recipe), and imported only from that recorded file, only
while its hash still matches. Resolving a spec the user typed (relative to the current directory, or on
``sys.path``) happens at fit time only; a saved recipe is never resolved again.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from ..errors import TrainwiseError, check_choice

__all__ = ["is_user_spec", "user_recipe", "verified_source", "load_function", "sha256_hex"]


def is_user_spec(spec: str) -> bool:
    """Whether a model spec names user code (``file.py:fn`` or ``pkg.mod:fn``) rather than a built-in.

    >>> is_user_spec("mlp:128,64"), is_user_spec("nets/tiny.py:build"), is_user_spec("zoo.nets:tiny")
    (False, True, True)
    """
    kind, _, rest = spec.partition(":")
    return bool(rest) and (kind.endswith(".py") or "." in kind or "/" in kind)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _locate(where: str, target: str) -> Path:
    """The absolute path of the file that defines ``where`` (a .py path, or a module found on sys.path).
    A module's parent packages are imported to find it (at fit time: the user named them)."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise TrainwiseError(f"model file '{path}' does not exist", hint="give path/to/file.py:function")
        return path.resolve()
    try:
        spec = importlib.util.find_spec(where)
    except Exception as e:  # noqa: BLE001 - user code (a parent package) may raise anything
        raise TrainwiseError(f"cannot import module '{where}' for model '{target}': {type(e).__name__}: {e}",
                             hint="install the package or give path/to/file.py:function") from None
    if spec is None:
        raise TrainwiseError(f"cannot import module '{where}' for model '{target}': no module named '{where}'",
                             hint="install the package or give path/to/file.py:function")
    if not spec.has_location or not spec.origin or not Path(spec.origin).is_file():
        raise TrainwiseError(f"module '{where}' for model '{target}' has no source file to record ({spec.origin})",
                             hint="give a function defined in a .py file: path/to/file.py:function or package.module:function")
    return Path(spec.origin).resolve()


def user_recipe(spec: str, input_shape: tuple[int, ...], output_size: int) -> dict[str, Any]:
    """The recipe of a user-code model, with the file's absolute path and SHA-256 (fit time: ``spec`` is
    resolved as typed, a path relative to the current directory)."""
    where, _, name = spec.rpartition(":")
    path = _locate(where, spec)
    return {"builder": "import", "target": f"{path}:{name}" if where.endswith(".py") else spec, "file": str(path),
            "sha256": sha256_hex(path.read_bytes()), "input_shape": list(input_shape), "output_size": output_size}


def verified_source(recipe: dict[str, Any], *, source: str = "the model recipe") -> bytes:
    """The bytes of the recipe's recorded file, refused when the file is gone or its SHA-256 changed.
    ``source``: where the recipe was read from (named in the errors)."""
    path, expected = Path(recipe["file"]), recipe["sha256"]
    if not path.is_file():
        raise TrainwiseError(f"the user model file '{path}' recorded in {source} does not exist",
                             hint="put the file back at that path (a run records the absolute path of its model code), "
                                  "or train the run again")
    data = path.read_bytes()
    found = sha256_hex(data)
    if found != expected:
        raise TrainwiseError(f"the user model file '{path}' changed since the run was trained: its SHA-256 is now "
                             f"{found[:12]}..., {source} records {expected[:12]}...",
                             hint="restore the file as it was when the run was trained (e.g. from version control), or "
                                  "train the run again with the current file; its code is not run while the hashes differ")
    return data


def load_function(recipe: dict[str, Any], *, source: str = "the model recipe"):
    """The model function of a user-code recipe, imported from its recorded file after checking its hash: a
    ``file.py`` is executed from exactly the bytes that were checked; a module must still resolve to that file."""
    data = verified_source(recipe, source=source)
    path, target = Path(recipe["file"]), recipe["target"]
    where, _, name = target.rpartition(":")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"trainwise_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            exec(compile(data, str(path), "exec"), module.__dict__)  # exactly the hash-checked bytes
        except Exception as e:  # noqa: BLE001
            raise TrainwiseError(f"cannot import model file '{path}': {type(e).__name__}: {e}", hint="fix the error in that file") from None
    else:
        moved = TrainwiseError(f"module '{where}' no longer resolves to '{path}', the file recorded in {source}",
                               hint="run in the environment the run was trained in (the same sys.path / PYTHONPATH), "
                                    "or train the run again")
        if _locate(where, target) != path:
            raise moved
        try:
            module = importlib.import_module(where)
        except Exception as e:  # noqa: BLE001
            raise TrainwiseError(f"cannot import module '{where}' for model '{target}': {type(e).__name__}: {e}",
                                 hint="install the package or give path/to/file.py:function") from None
        if Path(getattr(module, "__file__", None) or "").resolve() != path:
            raise moved
    fn = getattr(module, name, None)
    if not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        check_choice(f"function in '{where}'", name, public)
    return fn
