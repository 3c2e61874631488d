"""Checking a model recipe read back from a run's ``model.json`` before anything is built from it: the builder
is one trainwise knows and every field has the type and range trainwise writes. Built-in recipes (mlp, cnn,
resmlp, resnet, ensembles of them) are data only; ``import`` recipes name user code, which `user_code` lists so that loading
can refuse it unless the user trusts it.

>>> check_recipe({"builder": "mlp", "in_features": 4, "hidden": [8], "out_features": 3, "activation": "relu",
...               "dropout": 0.0, "batch_norm": False}, path="model.json")["hidden"]
[8]
>>> check_recipe({"builder": "pickle"}, path="model.json")
Traceback (most recent call last):
trainwise.errors.TrainwiseError: 'model.json' has an unknown model builder 'pickle' (trainwise writes mlp, cnn, resmlp, resnet, ...
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import TrainwiseError
from ..options import ACTIVATIONS
from ..runs import DAMAGED_HINT, Check, check_fields, damaged, is_int, is_number

__all__ = ["check_recipe", "user_code", "output_size_of", "KINDS"]

KINDS = ("multiclass", "binary", "multilabel", "regression")
_MAX_DEPTH = 4  # ensembles of ensembles: deeper than this is not something trainwise writes


def _sizes(v: Any, *, empty: bool = True) -> bool:
    return isinstance(v, list) and (empty or bool(v)) and all(is_int(x) and x > 0 for x in v)


_POSITIVE: Check = (lambda v: is_int(v) and v > 0, "a positive integer")
def _rate(v: Any) -> bool:
    return is_number(v) and 0 <= v < 1


_LAYERS = {"activation": (lambda v: v in ACTIVATIONS, "one of " + ", ".join(ACTIVATIONS)),
           "dropout": (lambda v: _rate(v) or (isinstance(v, list) and bool(v) and all(map(_rate, v))),
                       "a number in [0, 1) or a list of them, one per layer"),
           "batch_norm": (lambda v: isinstance(v, bool), "true or false")}
_BUILDER: Check = (lambda v: isinstance(v, str), "a builder name")
_IMAGE: Check = (lambda v: _sizes(v) and len(v) == 3, "3 positive integers (channels, height, width)")
_CHANNELS: Check = (lambda v: _sizes(v, empty=False), "a non-empty list of positive integers")
FIELDS: dict[str, dict[str, Check]] = {
    "mlp": {"builder": _BUILDER, "in_features": _POSITIVE, "hidden": (_sizes, "a list of positive integers"),
            "out_features": _POSITIVE, **_LAYERS},
    "cnn": {"builder": _BUILDER, "input_shape": _IMAGE, "channels": _CHANNELS,
            "dense": (_sizes, "a list of positive integers"), "out_features": _POSITIVE, **_LAYERS},
    "resmlp": {"builder": _BUILDER, "in_features": _POSITIVE, "width": _POSITIVE, "blocks": _POSITIVE,
               "out_features": _POSITIVE, **_LAYERS},
    "resnet": {"builder": _BUILDER, "input_shape": _IMAGE, "channels": _CHANNELS, "blocks": _POSITIVE,
               "out_features": _POSITIVE, "activation": _LAYERS["activation"], "dropout": (_rate, "a number in [0, 1)")},
    "tabular": {"builder": _BUILDER, "in_features": _POSITIVE, "n_numeric": (lambda v: is_int(v) and v >= 0, "a whole number >= 0"),
                "out_features": _POSITIVE, "kind": (lambda v: v in KINDS, "one of " + ", ".join(KINDS)),
                "dropout": (_rate, "a number in [0, 1)"), "k": _POSITIVE, "width": _POSITIVE, "depth": _POSITIVE,
                "embedding": (lambda v: v in ("periodic", "none"), "periodic or none"), "d_embedding": _POSITIVE,
                "frequency_scale": (lambda v: is_number(v) and v > 0, "a positive number"),
                "scale": (lambda v: isinstance(v, bool), "true or false"), "smoothing": (_rate, "a number in [0, 1)")},
    "ensemble": {"builder": _BUILDER, "kind": (lambda v: v in KINDS, "one of " + ", ".join(KINDS)),
                 "members": (lambda v: isinstance(v, list) and bool(v), "a non-empty list of recipes")},
    "import": {"builder": _BUILDER,
               "target": (lambda v: isinstance(v, str) and ":" in v, "'path/file.py:function' or 'package.module:function'"),
               "file": (lambda v: isinstance(v, str) and Path(v).is_absolute(), "an absolute file path"),
               "sha256": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a SHA-256 hex digest"),
               "input_shape": (lambda v: _sizes(v, empty=False), "a non-empty list of positive integers"),
               "output_size": _POSITIVE},
}


def check_recipe(recipe: Any, *, path: str | Path, where: str = "", depth: int = 0) -> dict[str, Any]:
    """``recipe`` (read from ``path``) if it is a recipe trainwise writes; otherwise an error naming the file."""
    if not isinstance(recipe, dict) or "builder" not in recipe:
        raise damaged(path, f"{f'{where[:-1]!r}' if where else 'the model recipe'} has no 'builder' (a JSON object like "
                            '{"builder": "mlp", ...} is expected)')
    builder = recipe["builder"]
    if builder == "python":
        raise TrainwiseError(f"'{path}' describes a model that was an nn.Module object passed to fit(model=...) "
                             f"(class {recipe.get('class', '?')}); it cannot be rebuilt from the run's files",
                             hint="build the same module in Python and load the weights: module.load_state_dict("
                                  "safetensors.torch.load_file('RUN_DIR/model.safetensors'))")
    if builder not in FIELDS:
        raise TrainwiseError(f"'{path}' has an unknown model builder {builder!r} (trainwise writes {', '.join(FIELDS)})",
                             hint=DAMAGED_HINT)
    check_fields(recipe, FIELDS[builder], path=path, where=where)
    if isinstance(recipe.get("dropout"), list):  # one rate per layer: as many as the model has
        layers = {"mlp": lambda r: len(r["hidden"]), "cnn": lambda r: len(r["channels"]) + len(r["dense"]),
                  "resmlp": lambda r: r["blocks"]}[builder](recipe)
        if len(recipe["dropout"]) != layers:
            raise damaged(path, f"'{where}dropout' has {len(recipe['dropout'])} rates for {layers} layers")
    if builder == "tabular" and recipe["n_numeric"] > recipe["in_features"]:
        raise damaged(path, f"'{where}n_numeric' ({recipe['n_numeric']}) exceeds '{where}in_features' ({recipe['in_features']})")
    if builder == "ensemble":
        if depth >= _MAX_DEPTH:
            raise damaged(path, f"ensembles nested more than {_MAX_DEPTH} deep")
        for i, member in enumerate(recipe["members"]):
            check_recipe(member, path=path, where=f"{where}members[{i}].", depth=depth + 1)
        sizes = [output_size_of(m) for m in recipe["members"]]
        if len(set(sizes)) > 1:
            raise damaged(path, f"the members of ensemble '{where or 'model'}' have different output sizes {sizes}")
    return recipe


def user_code(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``import`` recipes in a (checked) recipe, ensemble members included: the user code it would run."""
    if recipe["builder"] == "ensemble":
        return [r for m in recipe["members"] for r in user_code(m)]
    return [recipe] if recipe["builder"] == "import" else []


def output_size_of(recipe: dict[str, Any]) -> int:
    """How many outputs the recipe's model has (an ensemble: its members').

    >>> output_size_of({"builder": "ensemble", "kind": "binary", "members": [{"builder": "import", "output_size": 1}]})
    1
    """
    if recipe["builder"] == "ensemble":
        return output_size_of(recipe["members"][0])
    return recipe["output_size"] if recipe["builder"] == "import" else recipe["out_features"]
