"""Reading a run directory back as data: config, rebuilt model (best weights), preprocessing, summary.

A run directory is data only. Every file is checked as it is read (a damaged or edited file is an error naming
it), a built-in model is rebuilt from model.json without importing anything named there, and a model that is
user code (``file.py:fn`` / ``pkg.mod:fn``) is loaded only with ``trust_code=True`` (``--trust-code``), and
then only from the file recorded at fit time while its SHA-256 still matches.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import load_config
from .errors import TrainwiseError
from .models import build_model, check_recipe, user_code
from .models.recipe import KINDS, output_size_of
from .models.usercode import verified_source
from .options import IMAGE_NORMS, LOSSES, MANY_LEVELS
from .runs import Check, check_fields, check_tensors_match, damaged, is_int, is_number, is_str_list, read_json, read_safetensors
from .train.components import target_kind

__all__ = ["LoadedRun", "load_run", "read_recipe", "read_preprocessing", "read_summary", "load_weights", "TRUST_HINT"]

TRUST_HINT = ("pass --trust-code (trust_code=True in the Python API) to load it anyway: trainwise then imports only the "
              "recorded file, and only while its SHA-256 matches the one recorded at fit time. Use it only for runs "
              "from a trusted source: that file's code runs with your permissions")


@dataclass
class LoadedRun:
    """A finished run read back: its config, rebuilt model (best weights), preprocessing and summary."""

    path: Path
    config: Any
    model: torch.nn.Module
    recipe: dict
    preprocessing: dict
    summary: dict


def load_run(run_dir: str | Path, *, trust_code: bool = False) -> LoadedRun:
    """Rebuild a run's model and preprocessing from its files (safetensors + JSON; nothing is unpickled).

    ``trust_code``: allow a model that is user code (see `read_recipe`); without it such a run is refused
    before anything is imported.
    """
    path = Path(run_dir)
    needed = ["config.yaml", "model.json", "model.safetensors", "preprocess.json"]
    absent = [n for n in needed if not (path / n).is_file()]
    if absent and (path / "summary.json").is_file():
        summary = read_summary(path / "summary.json")
        if summary.get("status") == "failed":
            raise TrainwiseError(f"run '{path}' failed in training and has no trained weights: {summary.get('stop_reason')}",
                                 hint="fix the cause and train again with `trainwise fit`")
    if absent:
        raise TrainwiseError(f"'{path}' is not a finished trainwise run (missing {', '.join(absent)})",
                             hint="give the run directory that `trainwise fit` printed")
    recipe = read_recipe(path / "model.json", trust_code=trust_code)
    preprocessing = read_preprocessing(path / "preprocess.json", recipe=recipe)
    summary = read_summary(path / "summary.json") if (path / "summary.json").is_file() else {}
    config = load_config(path / "config.yaml")
    model = load_weights(recipe, path / "model.safetensors", recipe_path=path / "model.json")
    model.eval()
    return LoadedRun(path, config, model, recipe, preprocessing, summary)


def read_recipe(path: str | Path, *, trust_code: bool = False) -> dict[str, Any]:
    """A run's model.json, checked (`check_recipe`). A recipe naming user code is refused unless ``trust_code``;
    with it, the recorded files must still exist with their recorded SHA-256 (checked here, before any import)."""
    recipe = check_recipe(read_json(path), path=path)
    code = user_code(recipe)
    if code and not trust_code:
        files = ", ".join(dict.fromkeys(f"'{c['file']}'" for c in code))
        raise TrainwiseError(f"'{path}' says this run's model is user code: it is built by calling '{code[0]['target']}' "
                             f"from {files}, so loading the run would import and run that file. trainwise does not run "
                             "code named in a run directory unless asked to", hint=TRUST_HINT)
    for c in code:
        verified_source(c, source=f"'{path}'")
    return recipe


def load_weights(recipe: dict[str, Any], weights: str | Path, *, recipe_path: str | Path = "model.json") -> torch.nn.Module:
    """The model of a checked ``recipe`` with the tensors of ``weights`` (a safetensors file), whose names, shapes
    and dtypes must fit it exactly. A built-in model is checked on the meta device first (no memory is spent
    on a recipe that does not fit its weights)."""
    state = read_safetensors(weights)
    source = f"'{recipe_path}'"
    if not user_code(recipe):
        with torch.device("meta"):
            check_tensors_match(build_model(recipe, source=source).state_dict(), state, path=weights,
                                what=f"the model described by {source}")
    model = build_model(recipe, source=source)
    check_tensors_match(model.state_dict(), state, path=weights, what=f"the model described by {source}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as e:
        raise damaged(weights, f"its tensors cannot be loaded into the model ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return model


def _optional(check: Check) -> Check:
    ok, what = check
    return (lambda v: v is None or ok(v), f"null or {what}")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool)) or is_number(v)


_NUMBERS: Check = (lambda v: isinstance(v, list) and all(is_number(x) for x in v), "a list of numbers")
_FEATURES = {
    "standardize": (lambda v: isinstance(v, bool), "true or false"), "impute": (lambda v: isinstance(v, bool), "true or false"),
    "image_norm": (lambda v: v in IMAGE_NORMS, "one of " + ", ".join(IMAGE_NORMS)),
    "columns": _optional((is_str_list, "a list of column names")),
    "categories": (lambda v: isinstance(v, dict) and all(isinstance(c, list) and all(_scalar(x) for x in c) for c in v.values()),
                   "an object of column -> list of categories"),
    "fill": (lambda v: isinstance(v, dict) and all(_scalar(x) for x in v.values()), "an object of column -> fill value"),
    "mean": _optional(_NUMBERS), "std": _optional((lambda v: _NUMBERS[0](v) and all(x != 0 for x in v), "a list of non-zero numbers")),
    "feature_names": (is_str_list, "a list of names"), "categorical": (is_str_list, "a list of column names"),
    "pooled": (is_str_list, "a list of column names"), "robust": (is_str_list, "a list of column names"),
    "robust_scale": (lambda v: isinstance(v, bool), "true or false"),
    "many_levels": (lambda v: v in MANY_LEVELS, "one of " + ", ".join(MANY_LEVELS)),
    "encoded": (lambda v: isinstance(v, dict) and all(_encoding(e) for e in v.values()),
                "an object of column -> {names, levels, values (one list of len(names) numbers per level), default}")}


def _encoding(e: Any) -> bool:
    """One target-encoded column's table, complete and consistent."""
    if not (isinstance(e, dict) and set(e) == {"names", "levels", "values", "default"} and is_str_list(e["names"])):
        return False
    width = len(e["names"])
    rows = e["values"] if isinstance(e["values"], list) else None
    return (width > 0 and isinstance(e["levels"], list) and all(_scalar(x) for x in e["levels"]) and rows is not None
            and len(rows) == len(e["levels"]) and all(_NUMBERS[0](r) and len(r) == width for r in [*rows, e["default"]]))
_TARGET = {"task": (lambda v: v in ("classification", "regression"), "classification or regression"),
           "classes": _optional((lambda v: isinstance(v, list) and all(_scalar(x) for x in v), "a list of labels")),
           "multilabel": (lambda v: isinstance(v, bool), "true or false"),
           "mean": (lambda v: is_number(v) or _NUMBERS[0](v), "a number (a list: one per target)"),
           "std": (lambda v: (is_number(v) and v != 0) or (_NUMBERS[0](v) and all(x != 0 for x in v)),
                   "a non-zero number (a list: one per target)")}
_IMAGE = {"channels": (lambda v: v in (1, 3), "1 or 3"),
          "size": (lambda v: isinstance(v, list) and len(v) == 2 and all(is_int(x) and x > 0 for x in v), "[height, width]")}
_PREPROCESS = {"features": (lambda v: isinstance(v, dict), "an object"), "target": (lambda v: isinstance(v, dict), "an object"),
               "loss": (lambda v: v in LOSSES, "one of " + ", ".join(LOSSES)), "kind": (lambda v: v in KINDS, "one of " + ", ".join(KINDS)),
               "class_names": _optional((is_str_list, "a list of class names")), "target_name": _optional((lambda v: isinstance(v, str), "a name")),
               "image": (lambda v: v is None or isinstance(v, dict), "null or an object")}


def read_preprocessing(path: str | Path, *, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's preprocess.json, checked field by field (and against the model's outputs when ``recipe`` is given)."""
    pp = check_fields(read_json(path), _PREPROCESS, path=path)
    features = check_fields(pp["features"], _FEATURES, path=path, where="features.", optional=["image_norm", "categorical", "pooled", "robust",
                                                                                                        "many_levels", "encoded", "robust_scale"])
    target = check_fields(pp["target"], _TARGET, path=path, where="target.", optional=["multilabel"])
    if pp["image"] is not None:
        check_fields(pp["image"], _IMAGE, path=path, where="image.")
    if (features["mean"] is None) != (features["std"] is None) or len(features["mean"] or ()) != len(features["std"] or ()):
        raise damaged(path, "'features.mean' and 'features.std' do not match in length")
    if pp["kind"] != target_kind(pp["loss"]) or (pp["kind"] == "regression") != (target["task"] == "regression"):
        raise damaged(path, f"kind '{pp['kind']}', loss '{pp['loss']}' and task '{target['task']}' contradict each other")
    if (pp["kind"] == "multilabel") != bool(target.get("multilabel")):
        raise damaged(path, f"kind '{pp['kind']}' and 'target.multilabel' ({target.get('multilabel', False)}) contradict each other")
    if pp["kind"] != "regression":
        names, classes = pp["class_names"], target["classes"]
        if not names or not classes or len(names) != len(classes) or (pp["kind"] == "binary" and len(names) != 2):
            raise damaged(path, f"a {pp['kind']} run needs matching 'class_names' and 'target.classes' "
                                f"(found {len(names or [])} and {len(classes or [])})")
        if recipe is not None and output_size_of(recipe) != (1 if pp["kind"] == "binary" else len(names)):
            raise damaged(path, f"it has {len(names)} classes but the model in model.json has {output_size_of(recipe)} outputs",
                          hint="preprocess.json and model.json come from different runs or were edited: restore them, or train again")
    return pp


_SUMMARY = {"status": (lambda v: isinstance(v, str), "a status name"),
            "epochs_run": _optional((lambda v: is_int(v) and v >= 0, "an integer >= 0")),
            "test_evaluations": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
            "test": _optional((lambda v: isinstance(v, dict) and all(is_int(x) or isinstance(x, float) for x in v.values()),
                               "an object of metrics")),
            "cv_fold": _optional((is_int, "a fold number")),
            "model": (lambda v: isinstance(v, dict), "an object"), "data": (lambda v: isinstance(v, dict), "an object"),
            "diagnostics": _optional((lambda v: isinstance(v, list) and all(
                isinstance(d, dict) and all(isinstance(d.get(k), str) for k in ("severity", "code", "evidence", "advice")) for d in v),
                "a list of diagnoses")),
            "test_confusion": _optional((lambda v: isinstance(v, list) and all(isinstance(r, list) and all(is_int(x) for x in r) for r in v),
                                         "a matrix of counts"))}


def read_summary(path: str | Path) -> dict[str, Any]:
    """A run's summary.json, checked where trainwise reads it back (other keys are kept as they are)."""
    return check_fields(read_json(path), _SUMMARY, path=path, optional=_SUMMARY, extra=True)
