"""Model specs -> modules. A spec is a string (``mlp:128,64``, ``file.py:fn``, ``pkg.mod:fn``); the resolved
recipe is a JSON-safe dict saved with the run, so a model is rebuilt without unpickling anything."""
from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import TrainwiseError, check_choice

__all__ = ["MLP", "resolve_model", "build_model", "ACTIVATIONS"]

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Sequential):
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden size -> Linear.

    >>> import torch
    >>> MLP(4, [8], 3)(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_features: int, hidden: list[int], out_features: int, *, activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False):
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


def resolve_model(spec: str, input_shape: tuple[int, ...], output_size: int, *, activation: str = "relu",
                  dropout: float = 0.0, batch_norm: bool = False) -> dict[str, Any]:
    """Turn a spec string and the data's shapes into a recipe for `build_model`, checking it on the way."""
    kind, _, rest = spec.partition(":")
    if kind in ("mlp", "linear"):
        check_choice("activation", activation, ACTIVATIONS)
        try:
            hidden = [int(h) for h in rest.split(",") if h.strip()] if kind == "mlp" else []
        except ValueError:
            raise TrainwiseError(f"model spec '{spec}' has a non-integer hidden size",
                                 hint="write hidden sizes as integers, e.g. mlp:128,64") from None
        if any(h <= 0 for h in hidden):
            raise TrainwiseError(f"model spec '{spec}' has a hidden size <= 0", hint="use positive sizes, e.g. mlp:128,64")
        return {"builder": "mlp", "in_features": math.prod(input_shape), "hidden": hidden, "out_features": output_size,
                "activation": activation, "dropout": dropout, "batch_norm": batch_norm}
    if rest and (kind.endswith(".py") or "." in kind or "/" in kind):
        return {"builder": "import", "target": spec, "input_shape": list(input_shape), "output_size": output_size}
    raise TrainwiseError(f"unknown model spec '{spec}'",
                         hint="use mlp:H1,H2,... (e.g. mlp:128,64), linear, path/to/file.py:function or package.module:function")


def build_model(recipe: dict[str, Any]) -> nn.Module:
    """Build the module a recipe (from `resolve_model`, or a run's ``model.json``) describes."""
    if recipe["builder"] == "mlp":
        return MLP(recipe["in_features"], recipe["hidden"], recipe["out_features"], activation=recipe["activation"],
                   dropout=recipe["dropout"], batch_norm=recipe["batch_norm"])
    fn = _import_function(recipe["target"])
    try:
        model = fn(tuple(recipe["input_shape"]), recipe["output_size"])
    except Exception as e:  # noqa: BLE001 - user code: report where it failed
        raise TrainwiseError(f"model function '{recipe['target']}' failed when called with input_shape={tuple(recipe['input_shape'])}, "
                             f"output_size={recipe['output_size']}: {type(e).__name__}: {e}",
                             hint="the function must accept (input_shape, output_size) and return an nn.Module") from None
    if not isinstance(model, nn.Module):
        raise TrainwiseError(f"model function '{recipe['target']}' returned {type(model).__name__}, not a torch.nn.Module",
                             hint="return an nn.Module")
    return model


def _import_function(target: str):
    where, _, name = target.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise TrainwiseError(f"model file '{path}' does not exist", hint="give path/to/file.py:function")
        spec = importlib.util.spec_from_file_location(f"trainwise_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001
            raise TrainwiseError(f"cannot import model file '{path}': {type(e).__name__}: {e}", hint="fix the error in that file") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise TrainwiseError(f"cannot import module '{where}' for model '{target}': {e}",
                                 hint="install the package or give path/to/file.py:function") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        check_choice(f"function in '{where}'", name, public)
    return fn
