"""Every choice list, and the parsers of option strings, declared once: config validation, the CLI's help,
the error messages and the modules that implement a choice all read them from here.

>>> sorted(ACTIVATIONS)[:2]
['elu', 'gelu']
>>> parse_image_size("64,48"), parse_augment("flip,rotate=15")
((64, 48), {'flip': 0.5, 'rotate': 15.0})
"""
from __future__ import annotations

import numbers

from .errors import TrainwiseError, check_choice

__all__ = ["ACTIVATIONS", "LOSSES", "CLASSIFICATION_LOSSES", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "INITS", "TASKS",
           "MISSING", "COMPILE_MODES", "EARLY_STOP_RULES",
           "BUILTIN_DATA", "MODES", "PENALIZE", "IMAGE_NORMS", "IN_MEMORY",
           "MANY_LEVELS", "CHANNELS", "AUGMENTS", "NA_VALUES", "parse_augment", "parse_image_size",
           "parse_na_values", "CLASSIFICATION_METRICS", "REGRESSION_METRICS", "BINARY_DEFAULT_METRICS", "HIGHER_IS_BETTER",
           "MULTILABEL_DEFAULT_METRICS", "MULTILABEL_METRICS",
           "parse_metrics"]

# names only (no torch here: the command line's parser and help are built from this module); the layers and
# loss classes they name are in models.builders and train.components
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu", "selu")  # selu: LeCun-normal init (builders)
LOSSES = ("cross_entropy", "bce_with_logits", "mse", "l1", "huber", "multilabel_bce")
CLASSIFICATION_LOSSES = ("cross_entropy", "bce_with_logits", "multilabel_bce")  # multilabel_bce: one BCE per label column
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "step", "exponential", "cosine", "onecycle", "plateau")
PRECISIONS = ("32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's; reduce-overhead: CUDA graphs
INITS = ("default", "xavier", "kaiming", "normal")
TASKS = ("auto", "classification", "regression")
MISSING = ("error", "drop", "median")
MODES = ("auto", "min", "max")
# early stopping: no improvement on the best for `patience` epochs, or the lecture notes' `patience` consecutive
# epochs each worse than the one before
EARLY_STOP_RULES = ("patience", "consecutive")
PENALIZE = ("weights", "all")
IMAGE_NORMS = ("half", "train", "imagenet", "none")
IN_MEMORY = ("arrays", "dataframe")  # the data names of a run trained on data given in memory (fit(X, y), fit(df))
MANY_LEVELS = ("target", "pool")  # CSV text columns of more than 30 levels: target-encoded | rare levels pooled
# CSV cells read as missing: the usual markers (the trailing comma: an empty cell, which is always missing)
NA_VALUES = "?,NA,N/A,n/a,NaN,nan,null,None,"
BUILTIN_DATA = ("digits", "breast-cancer", "wine", "iris", "diabetes", "toy-regression", "fashion-mnist", "mnist")
CHANNELS = ("auto", "1", "3")
# --metrics: computed on the validation and test splits at epoch end (train/ keeps loss + the main metric: the hot
# loop). f1/precision/recall: of the positive (second) class for two classes, macro-averaged for more; _macro,
# _micro, _weighted choose the average. auroc / average_precision: one-vs-rest macro for more than two classes.
# top2_accuracy ... top10_accuracy: the true class among the k highest scores.
CLASSIFICATION_METRICS = ("balanced_accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "precision", "precision_macro",
                          "precision_micro", "precision_weighted", "recall", "recall_macro", "recall_micro", "recall_weighted",
                          "auroc", "average_precision", "log_loss", *(f"top{k}_accuracy" for k in range(2, 11)))
REGRESSION_METRICS = ("mape",)
# --metrics auto: nothing beyond accuracy for several classes and R²/MAE/RMSE for regression; for two classes the
# metrics that imbalance makes necessary
BINARY_DEFAULT_METRICS = ("balanced_accuracy", "f1", "precision", "recall", "auroc", "average_precision")
# and for several label columns (multi-label): the rows with every label right, and F1, AUROC, AP over the labels
MULTILABEL_DEFAULT_METRICS = ("exact_match", "f1_macro", "f1_micro", "auroc", "average_precision")
MULTILABEL_METRICS = ("exact_match", "f1", "f1_macro", "f1_micro", "f1_weighted", "precision", "precision_macro", "precision_micro",
                      "precision_weighted", "recall", "recall_macro", "recall_micro", "recall_weighted", "auroc", "average_precision",
                      "log_loss")
# what an `auto` mode maximizes; every other metric (losses, errors, log_loss, mape) is minimized
HIGHER_IS_BETTER = frozenset({"accuracy", "r2", "exact_match", *(m for m in CLASSIFICATION_METRICS if m != "log_loss")})

# augmentation name -> (default value, what the value means, allowed range)
AUGMENTS = {"flip": (0.5, "probability of a horizontal flip", (0, 1)),
            "vflip": (0.5, "probability of a vertical flip", (0, 1)),
            "rotate": (10.0, "maximum rotation in degrees (uniform in [-v, v])", (0, 180)),
            "crop": (0.8, "random resized crop: smallest kept area fraction (aspect 3/4..4/3), resized back", (0.01, 1)),
            "translate": (0.1, "maximum shift as a fraction of width/height", (0, 1)),
            "jitter": (0.2, "brightness/contrast (and saturation for RGB) factors uniform in [1-v, 1+v]", (0, 1)),
            "brightness": (0.2, "brightness factor uniform in [1-v, 1+v] (the lecture's ColorJitter(brightness=0.2))", (0, 1))}


def parse_augment(spec: str | None) -> dict[str, float]:
    """``"flip,rotate=10"`` -> ``{"flip": 0.5, "rotate": 10.0}``; empty or ``none`` -> ``{}``.

    >>> parse_augment("flip,rotate=15,crop=0.7")
    {'flip': 0.5, 'rotate': 15.0, 'crop': 0.7}
    """
    out: dict[str, float] = {}
    if not spec or spec.strip().lower() == "none":
        return out
    for part in spec.split(","):
        name, _, value = part.strip().partition("=")
        check_choice("augmentation", name, AUGMENTS)
        default, meaning, (lo, hi) = AUGMENTS[name]
        try:
            v = float(value) if value else default
        except ValueError:
            raise TrainwiseError(f"augment '{part}': '{value}' is not a number", hint=f"e.g. {name}={default}") from None
        if not lo <= v <= hi:
            raise TrainwiseError(f"augment '{part}': {v:g} is outside [{lo}, {hi}] ({meaning})", hint=f"e.g. {name}={default}")
        out[name] = v
    if "jitter" in out and "brightness" in out:
        raise TrainwiseError(f"augment '{spec}' has both jitter (brightness, contrast and saturation) and brightness",
                             hint="give one: brightness=0.2 (the lecture's ColorJitter(brightness=0.2)) or jitter=0.2")
    return out


def _whole(p) -> int:
    """A whole number of pixels (at most 65,536): an integer, a float without a fraction (numpy's too), or its text."""
    fraction = isinstance(p, numbers.Real) and not isinstance(p, numbers.Integral) and not float(p).is_integer()
    if type(p).__name__ in ("bool", "bool_") or fraction:  # (numpy's bool too: no numpy import for --help)
        raise ValueError(p)
    size = int(p)
    if size > 65536:
        raise ValueError(p)
    return size


def parse_image_size(value) -> tuple[int, int] | None:
    """``28`` -> (28, 28); ``"64,48"`` -> (64, 48) as (height, width); None stays None."""
    if value is None:
        return None
    parts = [p for p in str(value).replace("x", ",").split(",") if p.strip()] if isinstance(value, str) else \
        list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        size = tuple(_whole(p) for p in parts)
    except (TypeError, ValueError, OverflowError):  # (text, 28.5, .inf, NaN, true: not a size)
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise TrainwiseError(f"image_size={value!r} is not a size", hint="give one number (28) or height,width (64,48)")
    return size


def parse_na_values(spec: str) -> list[str]:
    """``"?,NA"`` -> the cell values a CSV reader treats as missing; an empty cell always is one.

    >>> parse_na_values("?,NA")
    ['?', 'NA', '']
    """
    if not isinstance(spec, str):
        raise TrainwiseError(f"na_values={spec!r} is not a comma-separated list", hint=f"e.g. --na-values '{NA_VALUES}'")
    values = [v.strip() for v in spec.split(",")]
    return [v for v in dict.fromkeys(values) if v] + [""]


ALWAYS_COMPUTED = ("loss", "accuracy", "mae", "rmse", "r2")


def parse_metrics(spec: str | list | tuple | None) -> tuple[str, ...] | str:
    """``--metrics``: ``auto``, ``none`` (-> ``()``) or known names, comma-separated; an unknown one is an error
    with "did you mean".

    >>> parse_metrics("f1, auroc"), parse_metrics("none"), parse_metrics("auto"), parse_metrics("accuracy,f1")
    (('f1', 'auroc'), (), 'auto', ('f1',))
    """
    if spec is None:
        return ()
    if isinstance(spec, str):
        if spec.strip().lower() in ("auto", "none", ""):
            return "auto" if spec.strip().lower() == "auto" else ()
        spec = spec.split(",")
    if not isinstance(spec, (list, tuple)):
        raise TrainwiseError(f"metrics: {spec!r} is not a list of metric names",
                             hint="e.g. --metrics f1,auroc (metrics: [f1, auroc] in a config file), auto or none")
    # loss, accuracy, MAE, RMSE and R² are always computed: naming them (as Keras users do) asks for nothing more
    names = [n for n in (str(n).strip().lower() for n in spec) if n and n not in ALWAYS_COMPUTED]
    for n in names:
        check_choice("metrics", n, tuple(dict.fromkeys((*CLASSIFICATION_METRICS, *REGRESSION_METRICS, *MULTILABEL_METRICS))))
    return tuple(dict.fromkeys(names))
