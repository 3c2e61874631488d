"""Run configuration: every default with a comment, YAML load/dump, validation that names the fix."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import TrainwiseError, check_choice, did_you_mean
from .options import (
    ACTIVATIONS,
    BUILTIN_DATA,
    CHANNELS,
    COMPILE_MODES,
    EARLY_STOP_RULES,
    IMAGE_NORMS,
    IN_MEMORY,
    INITS,
    LOSSES,
    MANY_LEVELS,
    MISSING,
    MODES,
    NA_VALUES,
    OPTIMIZERS,
    PENALIZE,
    PRECISIONS,
    SCHEDULES,
    TASKS,
    parse_augment,
    parse_image_size,
    parse_metrics,
    parse_na_values,
)

__all__ = ["RunConfig", "CHOICES", "load_config", "read_yaml_mapping", "suggest_key"]

LOSS_CHOICES = ("auto", *LOSSES)
# string options and their allowed values; one validator checks them all (with "did you mean"), the CLI lists them
CHOICES = {"task": TASKS, "missing": MISSING, "activation": tuple(ACTIVATIONS), "loss": LOSS_CHOICES, "optimizer": OPTIMIZERS,
            "mode": MODES, "schedule": SCHEDULES, "precision": PRECISIONS, "compile_mode": COMPILE_MODES, "init": INITS, "penalize": PENALIZE,
            "image_norm": IMAGE_NORMS, "channels": CHANNELS, "many_levels": MANY_LEVELS,
            "early_stop_rule": EARLY_STOP_RULES}


# names other libraries use for our keys, so "did you mean" also helps users coming from them
_ALIASES = {"learning_rate": "lr", "max_epochs": "epochs", "num_epochs": "epochs", "n_epochs": "epochs",
            "batchsize": "batch_size", "bs": "batch_size", "wd": "weight_decay", "optim": "optimizer",
            "criterion": "loss", "arch": "model", "architecture": "model", "dataset": "data", "label": "target",
            "restore_best_weights": "restore_best", "es_patience": "patience", "threshold": "min_delta",
            "max_norm": "clip_norm", "gradient_clip_val": "clip_norm", "clip_grad_norm": "clip_norm",
            "accumulate_grad_batches": "accumulate", "gradient_accumulation_steps": "accumulate",
            "lr_scheduler": "schedule", "scheduler": "schedule", "n_restarts": "restarts", "l1_ratio": "l1",
            "lambda1": "l1", "lambda2": "l2", "amp": "precision", "mixed_precision": "precision"}


def suggest_key(key: str) -> str:
    """'did you mean ...?' for a config key, knowing other libraries' names for it."""
    alias = _ALIASES.get(key.lstrip("-").replace("-", "_"))
    if alias:
        return f"did you mean '{alias}'?" if not key.startswith("-") else f"did you mean '--{alias.replace('_', '-')}'?"
    return did_you_mean(key, RunConfig.model_fields if not key.startswith("-")
                        else ["--" + k.replace("_", "-") for k in RunConfig.model_fields])


class RunConfig(BaseModel):
    """Everything one `trainwise fit` run needs. Saved fully resolved as the run's ``config.yaml``.

    >>> RunConfig(data="iris", lr=0.01).lr
    0.01
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False,
                              defer_build=True)  # inf/nan: never a setting; the validator is built at first use (--help needs none)

    # --- data ---
    data: str = Field("digits", description="built-in name (digits, iris, ..., fashion-mnist, mnist), a .csv / .npz file, or an image folder")
    data_dir: str | None = Field(None, description="fashion-mnist/mnist: folder with the 4 IDX files (default: download once into the cache)")
    target: str | None = Field(None, description="CSV only: the column to predict")
    task: str = Field("auto", description="classification, regression, or auto (inferred from the target)")
    split: tuple[float, float, float] = Field(
        (0.70, 0.15, 0.15), description="train,val,test fractions (the lecture's 70/15/15); time: the same fractions in "
                                        "time order (needs --time-column)")
    val_data: str | None = Field(None, description="a separate validation file (.csv/.npz, the data file's columns); the data "
                                                   "file then trains (and tests, without --test-data)")
    test_data: str | None = Field(None, description="a separate test file (.csv/.npz, the data file's columns)")
    exclude: str | None = Field(None, description="CSV columns to leave out, comma-separated")
    id_column: str | None = Field(None, description="CSV: a column that identifies rows; not a feature, copied into predictions")
    categorical: str | None = Field(None, description="CSV columns of numbers to one-hot encode as categories, comma-separated")
    group_column: str | None = Field(None, description="CSV: a column of groups (patients, users, ...); each group's rows stay "
                                                       "in one split and one cross-validation fold; not a feature")
    weight_column: str | None = Field(None, description="CSV: a column of sample weights (numbers >= 0); the training loss "
                                                        "is their weighted mean (validation and test metrics are not "
                                                        "weighted); not a feature")
    time_column: str | None = Field(None, description="CSV: a column of times or dates; the splits follow it (train the "
                                                      "earliest rows, test the latest); not a feature")
    standardize: bool = Field(True, description="standardize features (and a regression target) with train-split statistics")
    missing: str = Field("error", description="missing values: an error, drop the rows, or median (train-split medians)")
    many_levels: str = Field("target", description="CSV text columns of more than 30 levels: target (each level's mean of the "
                                                   "target, shrunk and cross-fitted: scikit-learn's TargetEncoder) or pool "
                                                   "(the 30 most frequent levels one-hot, the rest one '(other)' input)")
    robust_scale: bool = Field(True, description="CSV numeric columns with heavy tails or outliers: scaled by median and "
                                                 "interquartile range and soft-clipped to about ±3 (off: mean and standard deviation)")
    na_values: str = Field(NA_VALUES, description="CSV: comma-separated cell values read as missing, besides an empty cell")
    # --- images ---
    image_size: str | None = Field(None, description="image folders: resize to N or H,W pixels (default: the first image's size)")
    channels: str = Field("auto", description="image folders: 1 (grayscale), 3 (RGB), auto (3 if any image has colour)")
    image_norm: str = Field("half", description="images: half ((x-0.5)/0.5, the lecture's), train (per-channel train stats), imagenet, none")
    augment: str | None = Field(None, description="training-batch augmentation, e.g. flip,rotate=10,crop=0.8,jitter=0.2 (also vflip, translate)")
    # --- model ---
    model: str = Field("auto", description="auto: tabular for a table (a CSV file, a DataFrame), mlp:128,64 otherwise; "
                                           "mlp:H1,H2,..., resmlp:WIDTH,BLOCKS, cnn:C1,C2[:D1], resnet:C1,C2,...[:BLOCKS], "
                                           "tabular[:key=value,...], linear, path/file.py:function or package.module:function")
    activation: str = Field("relu", description="hidden-layer activation of the built-in models")
    dropout: float | list[float] = Field(0.0, description="dropout probability after each hidden layer, or one per layer "
                                                             "(e.g. 0.3,0.1 for mlp:256,128); none by default: early stopping "
                                                             "on the best epoch regularizes, and 0.1 cost points on small sets")
    batch_norm: bool = Field(False, description="MLP batch norm after each hidden linear layer")
    # --- transfer learning ---
    init_from: str | None = Field(None, description="start from a run's weights (RUN_DIR) or a .safetensors state dict; "
                                                   "a head of another size is replaced")
    train_last: int | None = Field(None, ge=1, description="freeze all but the last N layers that have parameters")
    freeze: str | None = Field(None, description="freeze parameters whose names start with these comma-separated prefixes, e.g. 0.,3.")
    unfreeze_after: int | None = Field(None, ge=1, description="unfreeze everything after this many epochs ...")
    unfreeze_lr_factor: float = Field(0.1, gt=0, le=1, description="... and multiply the learning rate by this")
    # --- optimization ---
    loss: str = Field("auto", description="the loss; auto picks it from the task")
    optimizer: str = Field("adam", description="the optimizer")
    lr: float | str = Field(3e-3, description="learning rate, or auto: the LR finder's suggestion; 3e-3 with the warmup "
                                              "matched a hand-tuned Adam grid on benchmarks/vs_hand_tuned.py")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD/RMSprop momentum (the lecture's 0.9)")
    nesterov: bool = Field(False, description="SGD Nesterov momentum")
    weight_decay: float = Field(0.0, ge=0, description="optimizer weight decay (coupled for sgd/adam, decoupled for adamw)")
    init: str = Field("default", description="weight init: default (PyTorch's), xavier, kaiming, normal (N(0, 0.01²))")
    # --- explicit penalties added to the loss (elastic net = both) ---
    l1: float = Field(0.0, ge=0, description="L1 penalty strength: loss + l1·Σ|w|")
    l2: float = Field(0.0, ge=0, description="L2 penalty strength: loss + l2·Σw² (weight_decay=2·l2 is the same for SGD)")
    penalize: str = Field("weights", description="what l1/l2 act on: weights (not biases or norm layers), or all")
    # --- learning-rate schedule ---
    schedule: str = Field("cosine", description="learning-rate schedule; cosine: warmup, then a half cosine over --epochs")
    step_size: int = Field(10, ge=1, description="step schedule: epochs between LR drops (the lecture's StepLR 10)")
    gamma: float | None = Field(None, gt=0, le=1, description="LR factor: step 0.5 (the lecture's), exponential 0.95, plateau 0.5")
    warmup_epochs: float | str = Field("auto", description="cosine schedule: epochs of linear warmup; auto: 1 (a tenth of a "
                                                            "shorter run), 0 for other schedules")
    schedule_patience: int = Field(5, ge=0, description="plateau schedule: epochs without improvement of monitor before the LR drops")
    # --- the optimization step ---
    clip_norm: float | None = Field(None, gt=0, description="clip the gradient norm to this (the lecture's max_norm=1.0)")
    clip_value: float | None = Field(None, gt=0, description="clip each gradient element to [-v, v]")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step (effective batch = batch_size·accumulate)")
    precision: str = Field("32", description="numeric precision: bf16 autocast; fp16 autocast + grad scaler, CUDA only")
    compile: bool = Field(False, description="torch.compile the model (pays off for long runs on GPU)")
    compile_mode: str = Field("default", description="torch.compile mode with --compile: reduce-overhead replays CUDA "
                                                     "graphs (fewer kernel launches per step for small models on GPU)")
    epochs: int = Field(200, gt=0, description="maximum epochs; early stopping usually ends the run first")
    batch_size: int | str = Field("auto", description="mini-batch size; auto: by the training split's size, 16-128 "
                                                       "(about 50+ steps an epoch; the lecture's Fashion-MNIST loop used 16)")
    seed: int = Field(0, description="seeds model init, splits and shuffling: same seed, same run")
    device: str = Field("auto", description="auto (cuda if available, else cpu) | cpu | cuda | cuda:N")
    nproc: int = Field(1, ge=1, description="data-parallel processes on this machine, started through torchrun; each "
                                            "takes batch_size rows of every global batch of nproc·batch_size")
    num_workers: int = Field(0, ge=0, description="DataLoader workers (only for torch Datasets that are not in memory)")
    # --- early stopping (monitor/mode/patience/min_delta as everywhere in trainwise) ---
    early_stopping: bool = Field(True, description="stop when the monitored metric stops improving")
    monitor: str = Field("auto", description="metric early stopping and best-epoch selection watch; auto: val/accuracy "
                                             "for classification (ties broken by val/loss), val/loss for regression")
    mode: str = Field("auto", description="whether lower or higher is better; auto: max for accuracy/r2/f1/auroc/..., min for "
                                          "losses and errors")
    metrics: str | tuple[str, ...] = Field("auto", description="more validation/test metrics, comma-separated: balanced_accuracy, "
                                                            "f1[_macro|_micro|_weighted], precision[...], recall[...], auroc, "
                                                            "average_precision, log_loss, top2_accuracy..top10_accuracy; mape "
                                                            "(regression); auto: the first six for two classes, none otherwise")
    class_weight: str | None = Field(None, description="weight the classification loss by class: balanced (rare classes count "
                                                       "as much as common ones) or one weight per class in class order, e.g. 1,5")
    patience: int | str = Field("auto", description="epochs without improvement before stopping; auto: a tenth of --epochs, "
                                                    "at least 10 (20 for the default 200)")
    early_stop_rule: str = Field("patience", description="patience: no improvement on the best for `patience` epochs; consecutive "
                                                         "(the lecture notes' rule): `patience` epochs in a row each worse than the one before")
    min_delta: float = Field(0.001, ge=0, description="smallest change that counts as improvement (the lecture's threshold)")
    restore_best: bool = Field(True, description="end with the best epoch's weights, not the last epoch's")
    restarts: int = Field(1, ge=1, description="train this many seeds (seed, seed+1, ...) and keep the best by monitor")
    vectorize: bool = Field(True, description="train restarts as one stacked model (same results, much faster); "
                                              "--no-vectorize trains them one by one")
    checkpoint: bool = Field(True, description="write checkpoints/last and best every epoch (for --resume)")
    # --- output ---
    mlflow: str | None = Field(None, description="also log the run to MLflow at this tracking URI (--mlflow alone: "
                                                 "sqlite:///mlflow.db, MLflow's local store in the working folder)")
    tensorboard: bool = Field(False, description="write TensorBoard logs to RUN_DIR/tensorboard (scalars, histograms, graph)")
    histogram_every: int = Field(5, ge=1, description="TensorBoard: weight/gradient histograms every N epochs")
    run_dir: str | None = Field(None, description="where to write the run (default runs/<data>-<time>)")
    quiet: bool = Field(False, description="no live table")

    @field_validator("data", "run_dir", "data_dir", "init_from", "val_data", "test_data", mode="before")
    @classmethod
    def _paths(cls, v: Any) -> Any:
        v = str(v) if isinstance(v, os.PathLike) else v
        if isinstance(v, str) and "\x00" in v:
            raise ValueError("a path cannot contain a NUL character. HINT: give the file or folder name as it is on disk")
        return v

    @field_validator("batch_size", "patience", mode="before")
    @classmethod
    def _int_or_auto(cls, v: Any, info: ValidationInfo) -> int | str:
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            value = int(v) if not isinstance(v, bool) and float(v) == int(float(v)) else None
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or value < 1:
            example = "32" if info.field_name == "batch_size" else "10"
            raise ValueError(f"'{v}' is neither a whole number >= 1 nor 'auto'. HINT: give a whole number > 0 (e.g. {example}) or auto")
        return value

    @field_validator("warmup_epochs", mode="before")
    @classmethod
    def _warmup(cls, v: Any) -> Any:
        return _number_or_auto(v, "a number of epochs", "1, 0.5", lambda x: x >= 0 and not isinstance(v, bool),
                               f"a warmup must be >= 0 epochs, got {v!r}")

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, v: Any) -> Any:
        try:
            return parse_metrics(v)
        except TrainwiseError as e:
            raise ValueError(f"{e.message}. HINT: {e.hint}") from None

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() in ("balanced", "none", "")):
            return None if v is None or v.strip().lower() in ("none", "") else "balanced"
        text = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        weights = _comma_floats(text, f"'{text}' is neither 'balanced' nor comma-separated numbers. HINT: give balanced, "
                                      "or one weight per class in class order, e.g. 1,5")
        if not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise ValueError(f"class weights must be positive numbers, got {text!r}. HINT: e.g. 1,5 (the second class "
                             "counts five times as much), or balanced")
        return ",".join(f"{w:g}" for w in weights)

    @field_validator("dropout", mode="before")
    @classmethod
    def _dropout(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = _comma_floats(v, f"'{v}' is not a number or comma-separated numbers. HINT: give e.g. 0.1, or one rate per "
                                 "hidden layer like 0.3,0.1")
        if isinstance(v, (list, tuple)):
            if not v:
                raise ValueError("no dropout rate given. HINT: give e.g. 0.1, or one rate per hidden layer like 0.3,0.1")
            v = [float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else p for p in v]
            if len(v) == 1:
                v = v[0]
        rates = v if isinstance(v, list) else [v]
        for p in rates:
            if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1):
                raise ValueError(f"a dropout probability must be in [0, 1), got {p!r}. HINT: give a rate >= 0 and < 1, e.g. 0.1, "
                                 "or one rate per hidden layer like 0.3,0.1")
        return v

    @field_validator("split", mode="before")
    @classmethod
    def _parse_split(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = _comma_floats(v, f"'{v}' is not three comma-separated numbers like 0.7,0.15,0.15")
        if isinstance(v, (list, tuple)) and len(v) == 2:
            v = [v[0], v[1], 0.0]
        return v

    @field_validator("split")
    @classmethod
    def _check_split(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in v) or v[0] <= 0:
            raise ValueError(f"fractions {','.join(map(str, v))} must be >= 0 with a non-empty train split")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"fractions {','.join(map(str, v))} sum to {sum(v):g}, not 1; e.g. 0.7,0.15,0.15")
        return v

    @field_validator(*CHOICES, mode="before")
    @classmethod
    def _choices(cls, v: Any, info: ValidationInfo) -> str:
        return _choice(info.field_name, str(v), CHOICES[info.field_name])

    @field_validator("lr", mode="before")
    @classmethod
    def _lr(cls, v: Any) -> float | str:
        return _number_or_auto(v, "a number", "0.001, 3e-4", lambda x: x > 0, "the learning rate must be > 0 and finite, got {value:g}")

    @field_validator("na_values", mode="before")
    @classmethod
    def _na(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            v = ",".join("" if x is None else str(x) for x in v)
        if isinstance(v, str):
            parse_na_values(v)
        return v

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.lower() in ("none", "null", "", "auto")):
            return None
        try:
            h, w = parse_image_size(v)
        except TrainwiseError as e:
            raise ValueError(f"{e.message}. HINT: {e.hint}") from None
        return f"{h},{w}"

    @field_validator("augment", "freeze", mode="before")
    @classmethod
    def _spec(cls, v: Any) -> Any:
        if v is None or v is False or (isinstance(v, str) and v.lower() in ("none", "null", "", "false")):
            return None
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        return v

    @field_validator("clip_norm", "clip_value", "gamma", "train_last", "unfreeze_after", mode="before")
    @classmethod
    def _none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.lower() in ("none", "null", "") else v

    @model_validator(mode="before")
    @classmethod
    def _time_split(cls, data: Any) -> Any:
        """``split: time``: the default fractions, in the order of --time-column (which it then requires)."""
        if isinstance(data, dict) and isinstance(data.get("split"), str) and data["split"].strip().lower() == "time":
            if not data.get("time_column"):
                raise ValueError("split: 'time' orders the splits by a column of times. HINT: name it with --time-column COLUMN")
            data = {**data, "split": cls.model_fields["split"].default}
        return data

    @model_validator(mode="after")
    def _ranges(self) -> RunConfig:
        if self.augment:
            try:
                parse_augment(self.augment)
            except TrainwiseError as e:
                raise ValueError(f"augment: {e.message}. HINT: {e.hint}") from None
        if self.group_column and self.time_column:
            raise ValueError(f"group_column {self.group_column!r} and time_column {self.time_column!r} both decide the splits. "
                             "HINT: give one of them")
        if (self.group_column or self.time_column) and (self.val_data or self.test_data):
            raise ValueError("val_data/test_data give the splits as files, so group_column/time_column cannot decide them. "
                             "HINT: give the splits as files, or one file with --group-column/--time-column")
        if self.target is not None and not self.data.lower().endswith(".csv") and self.data != "dataframe":
            raise ValueError(f"target: '{self.data}' is not a .csv file, so target={self.target!r} would be ignored "
                             "(built-in sets, .npz files, image folders and arrays carry their own targets). "
                             "HINT: leave --target out, or give a .csv file with that column")
        if self.warmup_epochs != "auto":  # auto resolves to a warmup that fits (pipeline.auto_warmup)
            if self.warmup_epochs and self.schedule != "cosine":
                raise ValueError(f"warmup_epochs: a warmup of {self.warmup_epochs:g} epochs only applies to the cosine schedule, "
                                 f"but schedule is '{self.schedule}'. HINT: add --schedule cosine, or leave --warmup-epochs out")
            if self.warmup_epochs >= self.epochs:
                raise ValueError(f"warmup_epochs: a warmup of {self.warmup_epochs:g} epochs is not shorter than the run "
                                 f"(epochs={self.epochs}), so the cosine part would never start. "
                                 f"HINT: use --warmup-epochs below {self.epochs} (e.g. {max(self.epochs // 10, 1)}), or more --epochs")
        if self.monitor == "auto" and self.mode != "auto":
            raise ValueError(f"mode: mode={self.mode} was given for monitor=auto, which picks its own metric and direction "
                             "(val/accuracy, higher is better, for classification; val/loss for regression). "
                             "HINT: name the metric too, e.g. --monitor val/loss --mode min, or leave --mode out")
        if self.early_stopping and self.split[1] == 0 and (self.monitor.startswith("val/") or self.monitor == "auto"):
            raise ValueError("split: early stopping monitors a validation metric but the validation fraction is 0. "
                             "HINT: give a validation fraction (e.g. --split 0.7,0.15,0.15) or --no-early-stopping")
        return self

    @classmethod
    def build(cls, values: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Validate ``values`` into a config; every problem becomes one TrainwiseError naming the key."""
        fields = cls.model_fields
        for key in values:
            if not isinstance(key, str):
                raise TrainwiseError(f"{source} has the key {key!r}, which is not a name; valid keys: {', '.join(fields)}",
                                     hint="write each setting as name: value, e.g. lr: 0.001")
            if key not in fields:
                hint = suggest_key(key) or "see `trainwise fit --help` for the valid keys"
                raise TrainwiseError(f"unknown {source} key '{key}'; valid keys: {', '.join(fields)}", hint=hint)
        try:
            return cls(**values)
        except ValidationError as e:
            err = e.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            key = ".".join(str(p) for p in err["loc"]) or msg.split(":")[0]
            value = values.get(key, err.get("input"))
            msg, _, hint = msg.partition(". HINT: ")
            raise TrainwiseError(f"invalid {source} value {key}={value!r}: {msg}", hint=hint or _allowed(key)) from None

    def saved_yaml(self) -> str:
        """The config as a run directory keeps it: without the run directory itself, so it can be rerun elsewhere."""
        return self.model_copy(update={"run_dir": None, **self._absolute_paths()}).to_yaml()

    def _absolute_paths(self) -> dict[str, str]:
        """Paths on disk as absolute paths, so that a moved or copied run (or ``--resume`` started from another
        directory) reads the same files; built-in data set names (even with a folder of that name here: the
        name wins, as when loading) and module specs stay as given."""
        out: dict[str, str] = {}
        for key in ("data", "data_dir", "init_from", "val_data", "test_data"):
            value = getattr(self, key)
            if value and not (key == "data" and value in (*BUILTIN_DATA, *IN_MEMORY)) and Path(value).exists():
                out[key] = str(Path(value).resolve())
        if self.mlflow and self.mlflow.startswith("sqlite:///") and not self.mlflow.startswith("sqlite:////"):
            out["mlflow"] = "sqlite:///" + str(Path(self.mlflow.removeprefix("sqlite:///")).resolve())  # --resume from elsewhere
        where, sep, fn = self.model.rpartition(":")
        if sep and where.endswith(".py") and Path(where).is_file():
            out["model"] = f"{Path(where).resolve()}:{fn}"
        return out

    def prepare_options(self) -> dict[str, Any]:
        """The keyword arguments of ``data.prepare`` this config gives (how the data is split and preprocessed)."""
        return {"task": self.task, "split": self.split, "seed": self.seed, "standardize": self.standardize,
                "impute": self.missing == "median", "image_norm": self.image_norm, "many_levels": self.many_levels,
                "robust_scale": self.robust_scale}

    def to_yaml(self) -> str:
        data = self.model_dump()
        data["split"] = list(data["split"])
        return yaml.safe_dump(data, sort_keys=False)


def _number_or_auto(v: Any, what: str, examples: str, ok, bad: str) -> float | str:
    """A validator's number that may be ``auto``: ``ok(value)`` must hold for a finite value, else ``bad`` (which
    may name ``{value:g}``) is the message; the hint gives ``examples``."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    try:
        value = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"'{v}' is neither {what} nor 'auto'. HINT: give e.g. {examples} or auto") from None
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{bad.format(value=value)}. HINT: give e.g. {examples} or auto")
    return value


def _comma_floats(text: str, error: str) -> list[float]:
    """``"0.3,0.1"`` -> [0.3, 0.1]; anything else raises ``error`` (a validator's message)."""
    try:
        return [float(p) for p in text.split(",")]
    except ValueError:
        raise ValueError(error) from None


def _allowed(key: str) -> str:
    """The fix for a value pydantic refused: what the field takes (type, bounds) and its default."""
    field = RunConfig.model_fields.get(key.split(".")[0])
    if field is None:
        return f"set {key} to a valid value (see `trainwise fit --help`)"
    if key == "model":
        return "set model to a model spec, e.g. tabular, mlp:128,64, cnn:32,64 or path/file.py:build (default: auto)"
    kind = {int: "a whole number", float: "a finite number", bool: "true or false"}.get(
        next((a for a in (int, float, bool) if field.annotation in (a, a | None)), None), "a valid value")
    bounds = [f"{op} {getattr(m, attr)}" for m in field.metadata
              for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if getattr(m, attr, None) is not None]
    default = field.default if not isinstance(field.default, tuple) else ",".join(map(str, field.default))
    return f"set {key} to {kind}{' ' + ' and '.join(bounds) if bounds else ''} (default: {default})"


def _choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    try:
        return check_choice(what, value, choices)
    except TrainwiseError as e:
        raise ValueError(str(e)) from None


def read_yaml_mapping(path: str | Path, what: str, hint: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; a missing file, bad YAML or a non-mapping is a TrainwiseError
    naming ``what`` (e.g. "config file 'x.yaml'"); ``hint`` says what a valid file looks like."""
    path = Path(path)
    if not path.is_file():
        raise TrainwiseError(f"{what} does not exist", hint=hint)
    try:
        values = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as e:
        raise TrainwiseError(f"{what} is not valid YAML: {e}", hint="fix the YAML syntax") from None
    except OSError as e:
        raise TrainwiseError(f"{what} cannot be read: {e.strerror or e}", hint="check the file's permissions") from None
    except RecursionError:  # a YAML bomb of nested brackets
        raise TrainwiseError(f"{what} is nested too deeply to be a config", hint=hint) from None
    if values is None:
        raise TrainwiseError(f"{what} is empty (no key: value lines)", hint=hint)
    if not isinstance(values, dict):
        raise TrainwiseError(f"{what} must hold a mapping of key: value", hint=hint)
    return values


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config file and apply ``overrides`` (e.g. from the command line) on top."""
    values = read_yaml_mapping(path, f"config file '{path}'",
                               "give the path of a config.yaml, e.g. runs/<run>/config.yaml (see a run's config.yaml for the layout)")
    values.update(overrides or {})
    return RunConfig.build(values, source=f"config file '{path}'")
