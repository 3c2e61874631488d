"""Model specs -> modules. A spec is a string (``mlp:128,64``, ``file.py:fn``, ``pkg.mod:fn``); the resolved
recipe is a JSON-safe dict saved with the run, so a model is rebuilt without unpickling anything. A built-in
recipe is data only; a user-code recipe records its file's absolute path and SHA-256 (`usercode`), and
building it imports that file only while the hash matches. Reading a recipe back from a run is checked by
`recipe.check_recipe` first (and user code refused there unless trusted, see `trainwise.saved.load_run`)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import TrainwiseError, check_choice
from ..options import ACTIVATIONS
from .usercode import is_user_spec, load_function, user_recipe

__all__ = ["MLP", "CNN", "Ensemble", "resolve_model", "build_model", "is_builtin_spec", "ACTIVATIONS"]

BUILTIN_KINDS = ("mlp", "linear", "cnn")
_ACTIVATION_LAYERS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
assert tuple(_ACTIVATION_LAYERS) == ACTIVATIONS


def is_builtin_spec(spec: str) -> bool:
    """Whether ``spec`` names a built-in model (resolving it imports nothing).

    >>> is_builtin_spec("mlp:128,64"), is_builtin_spec("linear"), is_builtin_spec("zoo.nets:tiny")
    (True, True, False)
    """
    return spec.partition(":")[0] in BUILTIN_KINDS


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
            layers.append(_ACTIVATION_LAYERS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class CNN(nn.Sequential):
    """Per channel count a block Conv3x3 -> (BatchNorm) -> activation -> MaxPool2 -> (Dropout), then Flatten ->
    [Linear -> activation -> (Dropout)] per dense size -> Linear. Pooling stops once the map is 1 pixel wide.

    >>> import torch
    >>> CNN((1, 28, 28), [16, 32], [], 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: list[int], dense: list[int], out_features: int, *,
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for ch in channels:
            layers.append(nn.Conv2d(c, ch, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(_ACTIVATION_LAYERS[activation]())
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            if dropout:
                layers.append(nn.Dropout(dropout))
            c = ch
        layers.append(nn.Flatten())
        width = c * h * w
        for d in dense:
            layers += [nn.Linear(width, d), _ACTIVATION_LAYERS[activation]()] + ([nn.Dropout(dropout)] if dropout else [])
            width = d
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class Ensemble(nn.Module):
    """Averages its members' predicted probabilities (or values, for regression) and returns them in the
    members' own output form: log-probabilities for multiclass (logits to the softmax), a logit for binary.

    >>> import torch
    >>> e = Ensemble([nn.Linear(2, 3), nn.Linear(2, 3)], kind="multiclass")
    >>> torch.allclose(e(torch.ones(1, 2)).softmax(-1), (e.members[0](torch.ones(1, 2)).softmax(-1) + e.members[1](torch.ones(1, 2)).softmax(-1)) / 2)
    True
    """

    def __init__(self, members: list[nn.Module], *, kind: str):
        super().__init__()
        self.members, self.kind = nn.ModuleList(members), kind

    def forward(self, x):
        outs = torch.stack([m(x) for m in self.members])
        if self.kind == "multiclass":
            return torch.logsumexp(outs.log_softmax(-1), 0) - math.log(len(self.members))
        if self.kind == "binary":
            return torch.logit(outs.sigmoid().mean(0), eps=1e-7)
        return outs.mean(0)


def _sizes(spec: str, part: str) -> list[int]:
    try:
        sizes = [int(h) for h in part.split(",") if h.strip()]
    except ValueError:
        raise TrainwiseError(f"model spec '{spec}' has a non-integer size",
                             hint="write sizes as integers, e.g. mlp:128,64 or cnn:32,64 (cnn:32,64:128 adds a dense layer)") from None
    if any(h <= 0 for h in sizes):
        raise TrainwiseError(f"model spec '{spec}' has a size <= 0", hint="use positive sizes, e.g. mlp:128,64 or cnn:32,64")
    return sizes


def resolve_model(spec: str, input_shape: tuple[int, ...], output_size: int, *, activation: str = "relu",
                  dropout: float = 0.0, batch_norm: bool = False) -> dict[str, Any]:
    """Turn a spec string and the data's shapes into a recipe for `build_model`, checking it on the way."""
    kind, _, rest = spec.partition(":")
    if kind in ("mlp", "linear"):
        check_choice("activation", activation, ACTIVATIONS)
        hidden = _sizes(spec, rest) if kind == "mlp" else []
        if kind == "mlp" and not hidden:  # "mlp:" is a typo more often than a wish for a linear model
            raise TrainwiseError(f"model spec '{spec}' has no hidden layer sizes",
                                 hint="give them, e.g. mlp:128,64, or write linear for a model without hidden layers")
        if kind == "linear" and rest:
            raise TrainwiseError(f"model spec '{spec}': a linear model takes no sizes",
                                 hint="write linear, or mlp:H1,H2,... for hidden layers (e.g. mlp:128,64)")
        return {"builder": "mlp", "in_features": math.prod(input_shape), "hidden": hidden, "out_features": output_size,
                "activation": activation, "dropout": dropout, "batch_norm": batch_norm}
    if kind == "cnn":
        check_choice("activation", activation, ACTIVATIONS)
        conv, _, dense = rest.partition(":")
        channels = _sizes(spec, conv)
        if not channels:
            raise TrainwiseError(f"model spec '{spec}' has no conv channels", hint="e.g. cnn:32,64")
        if len(input_shape) != 3:
            raise TrainwiseError(f"model '{spec}' needs images (channels, height, width), but these inputs have shape {tuple(input_shape)}",
                                 hint="use image data (--data fashion-mnist, mnist or an image folder), or an MLP (mlp:128,64)")
        return {"builder": "cnn", "input_shape": list(input_shape), "channels": channels, "dense": _sizes(spec, dense),
                "out_features": output_size, "activation": activation, "dropout": dropout, "batch_norm": batch_norm}
    if is_user_spec(spec):
        return user_recipe(spec, input_shape, output_size)
    raise TrainwiseError(f"unknown model spec '{spec}'",
                         hint="use mlp:H1,H2,... (e.g. mlp:128,64), cnn:C1,C2[:D1] (e.g. cnn:32,64), linear, path/to/file.py:function "
                              "or package.module:function")


def build_model(recipe: dict[str, Any], *, source: str = "the model recipe") -> nn.Module:
    """Build the module a recipe (from `resolve_model`, or a run's checked ``model.json``) describes. A user-code
    recipe imports its recorded file, refused when that file is missing or its SHA-256 changed (``source``:
    where the recipe came from, for the error)."""
    builder = recipe["builder"]
    if builder == "mlp":
        return MLP(recipe["in_features"], recipe["hidden"], recipe["out_features"], activation=recipe["activation"],
                   dropout=recipe["dropout"], batch_norm=recipe["batch_norm"])
    if builder == "ensemble":
        return Ensemble([build_model(r, source=source) for r in recipe["members"]], kind=recipe["kind"])
    if builder == "cnn":
        return CNN(tuple(recipe["input_shape"]), recipe["channels"], recipe["dense"], recipe["out_features"],
                   activation=recipe["activation"], dropout=recipe["dropout"], batch_norm=recipe["batch_norm"])
    if builder != "import":
        raise TrainwiseError(f"{source} has model builder {builder!r}, which cannot be built here",
                             hint="a recipe's builder is mlp, cnn, ensemble or import (an nn.Module passed to fit is not rebuilt)")
    fn = load_function(recipe, source=source)
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
