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
from .residual import ResMLP, ResNet
from .tabular import TABULAR_DEFAULTS, TabularNet, combine_members, tabular_recipe
from .usercode import is_user_spec, load_function, user_recipe

__all__ = ["layer_rates", "MLP", "CNN", "ResMLP", "ResNet", "Ensemble", "resolve_model", "build_model", "is_builtin_spec", "ACTIVATIONS"]

BUILTIN_KINDS = ("mlp", "linear", "cnn", "resmlp", "resnet", "tabular")
_ACTIVATION_LAYERS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
                      "elu": nn.ELU, "selu": nn.SELU}
assert tuple(_ACTIVATION_LAYERS) == ACTIVATIONS
_KINDS_HINT = ("use mlp:H1,H2,... (e.g. mlp:128,64), resmlp:WIDTH,BLOCKS (e.g. resmlp:128,4), cnn:C1,C2[:D1] (e.g. cnn:32,64), "
               "resnet:C1,C2,...[:BLOCKS] (e.g. resnet:16,32,64), tabular (tables: see README 'Tabular data'), linear, "
               "path/to/file.py:function or package.module:function")


def is_builtin_spec(spec: str) -> bool:
    """Whether ``spec`` names a built-in model (resolving it imports nothing).

    >>> is_builtin_spec("mlp:128,64"), is_builtin_spec("resnet:16,32"), is_builtin_spec("zoo.nets:tiny")
    (True, True, False)
    """
    return spec.partition(":")[0] in BUILTIN_KINDS


def layer_rates(dropout: float | list[float], n: int, *, spec: str = "the model", what: str = "hidden layers") -> list[float]:
    """One dropout rate per layer: a single rate for every layer, or a list with one per layer (checked).

    >>> layer_rates(0.1, 3), layer_rates([0.3, 0.1], 2)
    ([0.1, 0.1, 0.1], [0.3, 0.1])
    """
    if not isinstance(dropout, (list, tuple)) or len(dropout) == 1:  # one rate for every layer
        return [float(dropout if not isinstance(dropout, (list, tuple)) else dropout[0])] * n
    if len(dropout) != n:
        example = ",".join(f"{max(0.3 - 0.1 * i, 0.1):g}" for i in range(n)) if n else "0"
        raise TrainwiseError(f"--dropout {','.join(f'{p:g}' for p in dropout)} gives {len(dropout)} rates, but {spec} has {n} {what}",
                             hint=f"give one rate per layer (e.g. --dropout {example}) or one rate for all (e.g. --dropout 0.1)")
    return [float(p) for p in dropout]


class MLP(nn.Sequential):
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden size -> Linear. ``dropout``: one
    rate for every hidden layer, or a list with one per hidden layer (0: no Dropout layer there).

    >>> import torch
    >>> MLP(4, [8], 3)(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    >>> [m.p for m in MLP(4, [8, 8, 8], 3, dropout=[0.3, 0.0, 0.1]) if isinstance(m, nn.Dropout)]
    [0.3, 0.1]
    """

    def __init__(self, in_features: int, hidden: list[int], out_features: int, *, activation: str = "relu",
                 dropout: float | list[float] = 0.0, batch_norm: bool = False):
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h, p in zip(hidden, layer_rates(dropout, len(hidden))):
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATION_LAYERS[activation]())
            if p:
                layers.append(nn.Dropout(p))
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class CNN(nn.Sequential):
    """Per channel count a block Conv3x3 -> (BatchNorm) -> activation -> MaxPool2 -> (Dropout), then Flatten ->
    [Linear -> activation -> (Dropout)] per dense size -> Linear. Pooling stops once the map is 1 pixel wide.
    ``dropout``: one rate, or one per conv block and dense layer.

    >>> import torch
    >>> CNN((1, 28, 28), [16, 32], [], 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: list[int], dense: list[int], out_features: int, *,
                 activation: str = "relu", dropout: float | list[float] = 0.0, batch_norm: bool = False):
        c, h, w = input_shape
        layers: list[nn.Module] = []
        rates = layer_rates(dropout, len(channels) + len(dense))
        for ch, p in zip(channels, rates):
            layers.append(nn.Conv2d(c, ch, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(_ACTIVATION_LAYERS[activation]())
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            if p:
                layers.append(nn.Dropout(p))
            c = ch
        layers.append(nn.Flatten())
        width = c * h * w
        for d, p in zip(dense, rates[len(channels):]):
            layers += [nn.Linear(width, d), _ACTIVATION_LAYERS[activation]()] + ([nn.Dropout(p)] if p else [])
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
        return combine_members(torch.stack([m(x) for m in self.members], 1), self.kind)


def _sizes(spec: str, part: str, example: str = "") -> list[int]:
    try:
        sizes = [int(h) for h in part.split(",") if h.strip()]
    except ValueError:
        raise TrainwiseError(f"model spec '{spec}' has a non-integer size ('{part}')" if example else
                             f"model spec '{spec}' has a non-integer size",
                             hint=f"write sizes as integers, e.g. {example}" if example else
                             "write sizes as integers, e.g. mlp:128,64 or cnn:32,64 (cnn:32,64:128 adds a dense layer)") from None
    if any(h <= 0 for h in sizes):
        raise TrainwiseError(f"model spec '{spec}' has a size <= 0" + (f" ('{part}')" if example else ""),
                             hint=f"use positive sizes, e.g. {example}" if example else "use positive sizes, e.g. mlp:128,64 or cnn:32,64")
    return sizes


def _needs_images(spec: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3:
        raise TrainwiseError(f"model '{spec}' needs images (channels, height, width), but these inputs have shape {tuple(input_shape)}",
                             hint="use image data (--data fashion-mnist, mnist or an image folder), or an MLP (mlp:128,64 or resmlp:128,4)")


def _resmlp_sizes(spec: str, rest: str) -> tuple[int, int]:
    example = "resmlp:128,4 (width 128, 4 residual blocks)"
    sizes = _sizes(spec, rest, example)
    if len(sizes) != 2 or rest.count(",") != 1:
        raise TrainwiseError(f"model spec '{spec}' needs two sizes, WIDTH,BLOCKS, but has {repr(rest) if rest else 'none'}",
                             hint=f"e.g. {example}")
    return sizes[0], sizes[1]


def _resnet_sizes(spec: str, rest: str) -> tuple[list[int], int]:
    example = "resnet:16,32,64 (three stages), resnet:16,32,64:2 (two blocks per stage)"
    stages, sep, per_stage = rest.partition(":")
    channels = _sizes(spec, stages, example)
    if not channels:
        raise TrainwiseError(f"model spec '{spec}' has no stage channels", hint=f"give one channel count per stage, e.g. {example}")
    blocks = _sizes(spec, per_stage, example) if sep and ":" not in per_stage else []
    if sep and len(blocks) != 1:
        raise TrainwiseError(f"model spec '{spec}': blocks per stage is one number, not '{per_stage}'", hint=f"e.g. {example}")
    return channels, blocks[0] if blocks else 1


def resolve_model(spec: str, input_shape: tuple[int, ...], output_size: int, *, activation: str = "relu",
                  dropout: float | list[float] = 0.0, batch_norm: bool = False, n_numeric: int | None = None,
                  output_kind: str = "multiclass") -> dict[str, Any]:
    """Turn a spec string and the data's shapes into a recipe for `build_model`, checking it on the way.
    ``dropout``: one rate, or a list with one per layer that has dropout (checked against the spec here).
    ``tabular`` also needs ``n_numeric`` (how many leading inputs are numeric columns; default: all) and the
    ``output_kind`` (how its members' predictions combine).

    >>> r = resolve_model("resnet:16,32:2", (1, 28, 28), 10)
    >>> r["builder"], r["channels"], r["blocks"]
    ('resnet', [16, 32], 2)
    """
    kind, _, rest = spec.partition(":")

    def rates(n: int, what: str) -> float | list[float]:  # a single rate stays one number in the recipe
        if isinstance(dropout, (list, tuple)):
            return layer_rates(dropout, n, spec=f"'{spec}'", what=what) if len(dropout) > 1 else float(dropout[0])
        return dropout

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
                "activation": activation, "dropout": rates(len(hidden), "hidden layers"), "batch_norm": batch_norm}
    if kind == "cnn":
        check_choice("activation", activation, ACTIVATIONS)
        conv, _, dense = rest.partition(":")
        channels = _sizes(spec, conv)
        if not channels:
            raise TrainwiseError(f"model spec '{spec}' has no conv channels", hint="e.g. cnn:32,64")
        _needs_images(spec, input_shape)
        dense_sizes = _sizes(spec, dense)
        return {"builder": "cnn", "input_shape": list(input_shape), "channels": channels, "dense": dense_sizes,
                "out_features": output_size, "activation": activation,
                "dropout": rates(len(channels) + len(dense_sizes), "conv blocks and dense layers"), "batch_norm": batch_norm}
    if kind == "resmlp":
        check_choice("activation", activation, ACTIVATIONS)
        width, blocks = _resmlp_sizes(spec, rest)
        return {"builder": "resmlp", "in_features": math.prod(input_shape), "width": width, "blocks": blocks,
                "out_features": output_size, "activation": activation, "dropout": rates(blocks, "residual blocks"),
                "batch_norm": batch_norm}
    if kind == "resnet":  # batch norm is part of the design: --batch-norm changes nothing here
        check_choice("activation", activation, ACTIVATIONS)
        channels, blocks = _resnet_sizes(spec, rest)
        _needs_images(spec, input_shape)
        return {"builder": "resnet", "input_shape": list(input_shape), "channels": channels, "blocks": blocks,
                "out_features": output_size, "activation": activation,
                "dropout": layer_rates(dropout, 1, spec=f"'{spec}'", what="dropout layer (before its head)")[0]}
    if kind == "tabular":
        if len(input_shape) != 1:
            raise TrainwiseError(f"model '{spec}' is for tables, but these inputs have shape {tuple(input_shape)}",
                                 hint="use it on a CSV file; for images use cnn:32,64 or resnet:16,32,64")
        return tabular_recipe(spec, rest, in_features=input_shape[0], out_features=output_size, kind=output_kind,
                              n_numeric=input_shape[0] if n_numeric is None else n_numeric,
                              dropout=layer_rates(dropout, 1, spec=f"'{spec}'", what="dropout rate (one for all blocks)")[0])
    if is_user_spec(spec):
        return user_recipe(spec, input_shape, output_size)
    raise TrainwiseError(f"unknown model spec '{spec}'", hint=_KINDS_HINT)


def _build_builtin(recipe: dict[str, Any]) -> nn.Module:
    builder, act = recipe["builder"], recipe["activation"]
    if builder == "mlp":
        return MLP(recipe["in_features"], recipe["hidden"], recipe["out_features"], activation=act,
                   dropout=recipe["dropout"], batch_norm=recipe["batch_norm"])
    if builder == "cnn":
        return CNN(tuple(recipe["input_shape"]), recipe["channels"], recipe["dense"], recipe["out_features"],
                   activation=act, dropout=recipe["dropout"], batch_norm=recipe["batch_norm"])
    if builder == "resmlp":
        return ResMLP(recipe["in_features"], recipe["width"], recipe["blocks"], recipe["out_features"],
                      act=_ACTIVATION_LAYERS[act], dropout=recipe["dropout"], batch_norm=recipe["batch_norm"])
    return ResNet(tuple(recipe["input_shape"]), recipe["channels"], recipe["blocks"], recipe["out_features"],
                  act=_ACTIVATION_LAYERS[act], dropout=recipe["dropout"])


@torch.no_grad()
def _selu_init(model: nn.Module, activation: str) -> nn.Module:
    """SELU self-normalizes (activations keep mean 0, variance 1 through the layers) only with weights of
    variance 1/fan_in, LeCun normal; PyTorch's default gives 1/(3 fan_in), and the signal shrinks layer by layer."""
    if activation == "selu":
        for layer in model.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="linear")  # = LeCun normal: N(0, 1/fan_in)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return model


def build_model(recipe: dict[str, Any], *, source: str = "the model recipe") -> nn.Module:
    """Build the module a recipe (from `resolve_model`, or a run's checked ``model.json``) describes. A user-code
    recipe imports its recorded file, refused when that file is missing or its SHA-256 changed (``source``:
    where the recipe came from, for the error). A built-in model with SELU gets LeCun-normal weights.

    >>> build_model(resolve_model("resmlp:16,2", (4,), 3))(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """
    builder = recipe["builder"]
    if builder == "ensemble":
        return Ensemble([build_model(r, source=source) for r in recipe["members"]], kind=recipe["kind"])
    if builder in ("mlp", "cnn", "resmlp", "resnet"):
        return _selu_init(_build_builtin(recipe), recipe["activation"])
    if builder == "tabular":
        return TabularNet(recipe["in_features"], recipe["n_numeric"], recipe["out_features"],
                          **{k: recipe[k] for k in ("kind", "dropout", *TABULAR_DEFAULTS) if k != "smoothing"})  # smoothing: MemberLoss
    if builder != "import":
        raise TrainwiseError(f"{source} has model builder {builder!r}, which cannot be built here",
                             hint="a recipe's builder is mlp, cnn, resmlp, resnet, tabular, ensemble or import (an nn.Module passed to fit "
                                  "is not rebuilt)")
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
