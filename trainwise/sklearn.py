"""scikit-learn estimators on the trainwise pipeline: `TrainwiseClassifier` and `TrainwiseRegressor`.

They follow scikit-learn's estimator contract (``__init__`` only stores parameters; ``fit`` validates with
``sklearn.utils.validation``; learned state ends in ``_``), so they work in ``Pipeline``, ``GridSearchCV``,
``cross_val_score``, ``clone`` and pickle. Training is `trainwise.api.fit` on the arrays given, nothing else:

- Parameters: every `RunConfig` knob that means something for in-memory 2-D arrays, with RunConfig's default
  (see ``EXCLUDED`` for the ones left out and why), plus ``validation_fraction`` (the early-stopping validation
  split is carved from the rows ``fit`` receives; there is never a test split: scoring held-out data is the
  caller's job, e.g. inside cross-validation), ``run_dir`` (None: nothing is written; else the run directory
  that `trainwise fit` writes, refused if it already holds a run) and ``verbose`` (False: no live table).
  The random seed keeps trainwise's name, ``seed``: same seed, same data -> identical predictions. A
  ``batch_size`` larger than the training rows is clipped to them with a warning (as scikit-learn's MLP does),
  so small cross-validation folds still fit; the default ``auto`` never exceeds them.
- Input: numeric arrays, lists or DataFrames (as float32; NaN/inf are refused: put a ``SimpleImputer`` and,
  for text columns, a ``OneHotEncoder`` in front). Preprocessing (standardization of the features and of a
  regression target) is fit on the training rows by the pipeline and kept for ``predict``; predictions are in
  the target's original units, classes are the original labels (``classes_``).
- ``partial_fit``: one epoch over the given rows (scikit-learn's MLP convention), with no validation split, no
  early stopping and no LR schedule; the chunk may be smaller than ``batch_size`` (it then is one batch). The
  first call (on an unfitted estimator) fits the preprocessing on its rows, so for a classifier it must hold
  every class. Later calls, and calls after ``fit``, continue from the current weights with the preprocessing
  of the first fit and a fresh optimizer (its moments are not carried over); labels must be known ones.
  ``partial_fit`` never writes a run directory; the model keeps the last epoch's weights.
- The fitted model lives on the CPU (``model_``), so pickles load anywhere; prediction runs there in float32.

>>> from sklearn.datasets import load_iris
>>> X, y = load_iris(return_X_y=True)
>>> clf = TrainwiseClassifier(model="mlp:16", lr=0.03, epochs=15, batch_size=64).fit(X, y)
>>> clf.classes_.tolist(), clf.predict_proba(X[:2]).shape, clf.score(X, y) > 0.8
([0, 1, 2], (2, 3), True)
"""
from __future__ import annotations

import copy
import numbers
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import api
from .config import RunConfig
from .data import PreparedData, check_weights
from .errors import TrainwiseError
from .pipeline import RunSetup, resolve_auto, resolve_device, train_run
from .train.components import target_kind

__all__ = ["TrainwiseClassifier", "TrainwiseRegressor", "TrainwiseEstimator", "EstimatorInputError", "EXCLUDED"]

# RunConfig keys that are not estimator parameters, and why
EXCLUDED = {
    "data": "the data is fit's X",
    "data_dir": "no data set files are read",
    "target": "the target is fit's y",
    "task": "fixed by the estimator: TrainwiseClassifier or TrainwiseRegressor",
    "split": "replaced by validation_fraction; the estimator never holds out a test split",
    "missing": "scikit-learn input validation refuses NaN; put a SimpleImputer in front",
    "na_values": "CSV files only; the estimators take arrays",
    "image_size": "image folders only; the estimators take 2-D feature arrays",
    "channels": "image folders only",
    "image_norm": "images only",
    "augment": "image augmentation only",
    "num_workers": "DataLoader workers for torch Datasets; arrays are batched in memory",
    "quiet": "replaced by verbose",
    "val_data": "the validation split is carved from fit's rows (validation_fraction)",
    "test_data": "an estimator never holds out a test split",
    "exclude": "CSV columns; select the columns of X yourself (a ColumnTransformer)",
    "id_column": "CSV columns; X holds features only",
    "categorical": "CSV columns; put a OneHotEncoder in front",
    "many_levels": "CSV text columns; put a TargetEncoder in front",
    "robust_scale": "CSV columns; put a RobustScaler in front",
    "weight_column": "a CSV column; an estimator's rows are weighted by fit's sample_weight",
    "group_column": "splits of fit's rows are random; group-aware cross-validation is scikit-learn's (GroupKFold)",
    "time_column": "splits of fit's rows are random; time-ordered cross-validation is scikit-learn's (TimeSeriesSplit)",
    "mlflow": "experiment tracking of `trainwise fit`'s run directory; an estimator is a step inside your own script",
    "nproc": "data-parallel processes are started by torch's launcher (trainwise fit --nproc); an estimator trains in its own",
}
_EXTRA = {"validation_fraction": "fraction of the rows given to fit held out for early stopping and best-epoch "
                                 "selection (0: none; then use early_stopping=False)",
          "verbose": "show the model summary and the live table per epoch",
          "model": RunConfig.model_fields["model"].description + ", or an nn.Module (fit trains a copy of it)",
          "run_dir": "write the run directory here, as `trainwise fit` does (None: nothing is written)"}


class EstimatorInputError(TrainwiseError, ValueError):
    """A `TrainwiseError` that is also the ``ValueError`` scikit-learn expects for bad input or parameters."""


@contextmanager
def _input_errors():
    try:
        yield
    except TrainwiseError as e:
        if isinstance(e, ValueError):
            raise
        raise EstimatorInputError(e.message, hint=e.hint) from None


class TrainwiseEstimator(BaseEstimator):
    """What both estimators share: the parameters, ``fit``, ``partial_fit`` and the forward pass."""

    _task = "auto"

    def __init__(self, *, standardize=True, model="auto", activation="relu", dropout=0.0, batch_norm=False,
                 init_from=None, train_last=None, freeze=None, unfreeze_after=None, unfreeze_lr_factor=0.1,
                 loss="auto", optimizer="adam", lr=3e-3, momentum=0.9, nesterov=False, weight_decay=0.0,
                 init="default", l1=0.0, l2=0.0, penalize="weights", schedule="cosine", step_size=10, gamma=None,
                 warmup_epochs="auto", schedule_patience=5, clip_norm=None, clip_value=None, accumulate=1,
                 precision="32", compile=False, compile_mode="default",
                 epochs=200, batch_size="auto", seed=0, device="auto",
                 early_stopping=True, monitor="auto", mode="auto", metrics="auto", class_weight=None, patience="auto",
                 early_stop_rule="patience", min_delta=0.001,
                 restore_best=True, restarts=1, vectorize=True, checkpoint=True, tensorboard=False, histogram_every=5,
                 run_dir=None, validation_fraction=0.15, verbose=False):
        for name, value in list(locals().items()):  # stored as given, validated in fit: scikit-learn's contract
            if name != "self":
                setattr(self, name, value)

    # --- fitting -------------------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on ``X``, ``y`` (a validation split of ``validation_fraction`` carved from them). ``sample_weight``:
        a weight per row (numbers >= 0); the training loss is the training rows' weighted mean (the validation
        rows' weights are not used: early stopping and the reported metrics are unweighted). Returns self."""
        X, y = self._validate(X, y, reset=True)
        if sample_weight is not None:
            with _input_errors():
                sample_weight = check_weights(sample_weight, len(y))
        self._train(X, y, sample_weight=sample_weight)
        return self

    def _partial_fit(self, X, y):
        first = not self.__sklearn_is_fitted__()
        X, y = self._validate(X, y, reset=first)
        if first:
            self._train(X, y, **self._one_epoch(len(y)))
        else:
            self._continue(X, y)
        return self

    def _options(self, n_rows: int, **overrides: Any) -> dict[str, Any]:
        """The RunConfig options (plus ``model``, maybe an nn.Module) these parameters stand for, for ``n_rows`` rows."""
        params = self.get_params(deep=False)
        fraction, verbose = params.pop("validation_fraction"), params.pop("verbose")
        if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool) or not 0 <= fraction < 1:
            raise ValueError(f"validation_fraction must be a number in [0, 1), got {fraction!r}")
        options = {**params, "task": self._task, "split": (1.0 - fraction, fraction, 0.0), "quiet": not verbose, **overrides}
        n_train = n_rows - round(options["split"][1] * n_rows)  # as split_indices sizes it
        if isinstance(options["batch_size"], numbers.Integral) and options["batch_size"] > n_train >= 1:
            warnings.warn(f"batch_size={options['batch_size']} is larger than the {n_train} training rows; "
                          f"using batch_size={n_train}", UserWarning, stacklevel=4)  # as scikit-learn's MLP does
            options["batch_size"] = n_train
        if isinstance(options["model"], nn.Module):
            options["model"] = copy.deepcopy(options["model"])  # training changes a copy: the parameter stays as given
        return options

    def _one_epoch(self, n_rows: int) -> dict[str, Any]:
        """What a partial_fit call changes: one epoch over all rows, no validation, no schedule, nothing written."""
        batch = min(self.batch_size, n_rows) if isinstance(self.batch_size, numbers.Integral) else self.batch_size
        return {"epochs": 1, "split": (1.0, 0.0, 0.0), "early_stopping": False, "schedule": "none", "restarts": 1,
                "run_dir": None, "batch_size": batch}

    def _train(self, X, y, *, sample_weight=None, **overrides: Any) -> None:
        if isinstance(self.class_weight, dict):  # scikit-learn's form {label: weight}; a label left out weighs 1
            overrides.setdefault("class_weight", ",".join(str(float(self.class_weight.get(c, 1.0))) for c in np.unique(y)))
        with _input_errors():
            result = api.fit(X, y, sample_weight=sample_weight, **self._options(len(y), **overrides))
        self.model_ = result.model.cpu().eval()
        self.preprocessor_, self.target_encoder_ = result.data.preprocessor, result.data.target
        self.loss_ = result.summary["loss"]
        self.history_ = list(result.history)
        self.run_dir_ = result.run_dir
        self._record(result.summary, result.summary["best_epoch"])

    def _continue(self, X, y) -> None:
        """One more epoch from the current weights, on the first fit's preprocessing (`setup_run` would fit it anew)."""
        target, spec = self.target_encoder_, self.summary_["model"]["spec"]
        with _input_errors():
            cfg = RunConfig.build(self._options(len(y), **self._one_epoch(len(y)), model=spec, loss=self.loss_,
                                                lr=self.summary_["lr"] if self.lr == "auto" else self.lr,
                                                init_from=None, train_last=None, freeze=None, unfreeze_after=None,
                                                restore_best=False), source="estimator parameter")
            cfg = cfg.model_copy(update=resolve_auto(cfg, target.task, len(y)))  # as setup_run would
            names = [str(c) for c in target.classes] if target.classes is not None else None
            prep = PreparedData({"train": (self.preprocessor_.transform(X), target.encode(y, what="y"))}, target.task,
                                self.preprocessor_, target, "arrays", class_names=names, indices={"train": np.arange(len(y))})
            setup = RunSetup(cfg, prep, self.loss_, target_kind(self.loss_), {"builder": "python", "class": type(self.model_).__qualname__},
                             resolve_device(cfg.device), user_model=self.model_)
            result = train_run(setup, seed=cfg.seed + self.n_iter_, evaluate_test=False)  # a new shuffle per epoch
        self.model_ = result.model.cpu().eval()
        self.history_ = self.history_ + [{**row, "epoch": len(self.history_) + i + 1} for i, row in enumerate(result.history)]
        self._record(result.summary(), len(self.history_))  # the model holds the last epoch's weights

    def _record(self, summary: dict[str, Any], best_epoch: int | None) -> None:
        self.summary_, self.best_epoch_, self.n_iter_ = summary, best_epoch, len(self.history_)
        for d in summary["diagnostics"]:
            if d["severity"] == "error":
                warnings.warn(f"trainwise: {d['evidence']}; {d['advice']}", ConvergenceWarning, stacklevel=4)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # --- predicting ----------------------------------------------------------------------------------------
    def _forward(self, X) -> np.ndarray:
        """Raw model outputs (float64) for new rows, preprocessed as the training rows were."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        with _input_errors():
            Xt = torch.from_numpy(np.ascontiguousarray(self.preprocessor_.transform(X), dtype=np.float32))
        self.model_.eval()
        with torch.inference_mode():
            return torch.cat([self.model_(Xt[i:i + 4096]) for i in range(0, len(Xt), 4096)]).double().numpy()


def _doc() -> str:
    """The parameters' documentation: RunConfig's descriptions and defaults, and the estimator's own."""
    defaults = TrainwiseEstimator.__init__.__kwdefaults__
    lines = [f"    {k}: {_EXTRA.get(k, f.description)} (default {defaults[k]!r})"
             for k, f in RunConfig.model_fields.items() if k not in EXCLUDED]
    lines += [f"    {k}: {text} (default {defaults[k]!r})" for k, text in _EXTRA.items() if k not in RunConfig.model_fields]
    return ("\n\n    Parameters (keyword-only; as in `RunConfig`, with its defaults):\n\n" + "\n".join(lines) + "\n\n    Not parameters: "
            + "; ".join(f"{k} ({why})" for k, why in EXCLUDED.items()) + ".\n")


_ATTRIBUTES = """
    Attributes: ``model_`` (the trained nn.Module, on the CPU), ``history_`` (one dict per epoch), ``best_epoch_``
    (the epoch whose weights the model holds), ``n_iter_`` (epochs run), ``summary_`` (the run summary, as in
    summary.json), ``loss_``, ``preprocessor_`` and ``target_encoder_`` (the preprocessing fit on the training
    rows), ``run_dir_`` (None unless ``run_dir`` was given), ``n_features_in_``, ``feature_names_in_`` (a
    DataFrame with string column names)."""


class TrainwiseClassifier(ClassifierMixin, TrainwiseEstimator):
    """A neural-network classifier trained the careful way (validation split, early stopping, best weights).

    ``predict_proba`` columns follow ``classes_``, the sorted original labels (ints, strings, ...).

    >>> from sklearn.datasets import load_breast_cancer
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> names = np.where(y == 1, "benign", "malignant")
    >>> clf = TrainwiseClassifier(model="mlp:16", epochs=3, batch_size=128).fit(X, names)
    >>> clf.classes_.tolist(), clf.predict(X[:1]).dtype.kind, len(clf.history_) == clf.n_iter_ <= 3
    (['benign', 'malignant'], 'U', True)
    """

    _task = "classification"

    def _validate(self, X, y, *, reset: bool):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32)
        check_classification_targets(y)
        if reset:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(f"a classifier needs samples of at least 2 classes, but the data contains only one class: {classes[0]!r}")
            self.classes_ = classes
        return X, y

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y`` (see the module docs). The first call's ``y`` must hold every class;
        ``classes``, if given, must be exactly those labels."""
        if classes is not None and not self.__sklearn_is_fitted__() and not np.array_equal(np.unique(classes), np.unique(np.asarray(y))):
            raise ValueError("the first partial_fit call fits the label encoding, so its y must contain exactly the given classes "
                             f"{np.unique(classes).tolist()}; got {np.unique(np.asarray(y)).tolist()}")
        return self._partial_fit(X, y)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``."""
        out = torch.from_numpy(self._forward(X))  # first: it checks the estimator is fitted
        if target_kind(self.loss_) == "multiclass":
            probs = torch.softmax(out, -1)
        else:
            probs = torch.cat([1 - out.sigmoid(), out.sigmoid()], 1)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        proba = np.empty(tuple(probs.shape))
        proba[:, [index[c] for c in self.target_encoder_.classes]] = probs.numpy()
        return proba

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row, as an original label."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]


class TrainwiseRegressor(RegressorMixin, TrainwiseEstimator):
    """A neural-network regressor; the target is standardized for training, predictions are in its units.

    >>> from sklearn.datasets import make_regression
    >>> X, y = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    >>> reg = TrainwiseRegressor(model="linear", lr=0.1, epochs=15, batch_size=64).fit(X, y)
    >>> reg.predict(X[:3]).shape, reg.score(X, y) > 0.9
    ((3,), True)
    """

    _task = "regression"

    def _validate(self, X, y, *, reset: bool):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, y_numeric=True)
        return X, y.astype(np.float64)

    def partial_fit(self, X, y):
        """One epoch over ``X``, ``y`` (see the module docs)."""
        return self._partial_fit(X, y)

    def predict(self, X) -> np.ndarray:
        """Predicted targets, in the units of the ``y`` given to fit."""
        out = self._forward(X)
        return out[:, 0] * self.target_encoder_.std + self.target_encoder_.mean


TrainwiseClassifier.__doc__ += _doc() + _ATTRIBUTES + " ``classes_``: the labels.\n"
TrainwiseRegressor.__doc__ += _doc() + _ATTRIBUTES + "\n"
