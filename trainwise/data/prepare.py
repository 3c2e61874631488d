"""source -> split -> preprocess (fit on train) -> arrays per split. The one-way data path of a run."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from ..errors import TrainwiseError
from ..frames import is_frame, pandas
from .batching import DeviceLoader, TensorBatches, to_tensors
from .columns import weights_summary
from .preprocess import Preprocessor, TargetEncoder, label_matrix, probability_rows
from .raw import RawData
from .splits import split_indices

__all__ = ["PreparedData", "PreparedDataset", "prepare", "prepare_dataset", "infer_task"]


@dataclass
class PreparedData:
    """Model-ready arrays per split plus everything needed to preprocess new data the same way."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (X float32, y int64 | float32)
    task: str
    preprocessor: Preprocessor
    target: TargetEncoder
    name: str
    target_name: str = "y"
    class_names: list[str] | None = None
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    weights: np.ndarray | None = None  # --weight-column: the training rows' weights in the loss (None: all 1)
    soft: np.ndarray | None = None  # the training rows' class probabilities (soft targets) for the loss (None: the labels)
    # the training rows encoded as new rows would be (target encodings fit on the whole training split, not
    # cross-fitted): what the data checks compare validation and test rows with; None when the two are the same
    train_as_new: np.ndarray | None = None

    def arrays_for_checks(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The splits as the data checks (copies of training rows in validation/test) should see them: every
        split encoded the same way."""
        if self.train_as_new is None:
            return self.arrays
        return {**self.arrays, "train": (self.train_as_new, self.arrays["train"][1])}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.arrays["train"][0].shape[1:])

    @property
    def n_classes(self) -> int | None:
        return len(self.target.classes) if self.task == "classification" else None

    @property
    def n_numeric(self) -> int | None:
        """How many leading inputs are numeric columns (the rest one-hot); None: every input is a number."""
        return self.preprocessor.n_numeric_inputs

    def batches(self, *, kind: str, device, batch_size: int, seed: int, num_workers: int = 0) -> dict[str, TensorBatches]:
        """Per split: in-memory device tensors; train shuffled (seeded, with its rows' weights if any), val/test in
        large ordered batches."""
        extras = self.loss_extras(kind=kind, device=device)
        return {k: TensorBatches(*to_tensors(X, y, kind, device), batch_size=batch_size if k == "train" else 4096,
                                 shuffle=k == "train", seed=seed, **(extras if k == "train" else {}))
                for k, (X, y) in self.arrays.items()}

    def loss_extras(self, *, kind: str, device, rows: int | None = None) -> dict[str, torch.Tensor | None]:
        """What the training loss reads beside the labels, for the first ``rows`` training rows (all: None), as
        `TensorBatches` takes them: ``weights`` (a weight per row) and ``soft`` (class probabilities; binary: the
        positive class's, for its one logit), None where the run has none."""
        w, p = (None if a is None else torch.as_tensor(a[:rows], dtype=torch.float32, device=device) for a in (self.weights, self.soft))
        if p is not None and kind == "binary":  # one logit: the soft target is the positive class's probability
            p = p[:, 1:]
        return {"weights": w, "soft": p}

    def _train_labels(self) -> np.ndarray:
        return self.arrays["train"][1]

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "task": self.task, "target": self.target_name,
                             "input_shape": list(self.input_shape),
                             "sizes": {k: int(len(v)) for k, v in self.indices.items() if len(v)}}
        if self.task == "classification" and self.target.multilabel:
            d["labels"] = self.class_names
            d["train_label_counts"] = dict(zip(self.class_names, self._train_labels().sum(0).astype(int).tolist()))  # rows with a 1
        elif self.task == "classification":
            d["n_classes"] = self.n_classes
            d["class_names"] = self.class_names
            counts = np.bincount(self._train_labels(), minlength=self.n_classes)
            d["train_class_counts"] = dict(zip(self.class_names, counts.tolist()))
        if self.soft is not None:  # soft targets: the counts above are of each row's most probable class
            d["train_class_probabilities"] = dict(zip(self.class_names, np.round(self.soft.astype(np.float64).mean(0), 6).tolist()))
            d["train_probabilities_sha256"] = hashlib.sha256(np.ascontiguousarray(self.soft, dtype=np.float32).tobytes()).hexdigest()
        if self.weights is not None:
            d["train_weights"] = weights_summary(self.weights)
        if self.notes:
            d["notes"] = self.notes
        return d


def infer_task(y: np.ndarray) -> str:
    """Classification for text/bool labels or few distinct integer values; regression otherwise."""
    if y.dtype == object or y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        return "classification"
    values = np.unique(y)  # numbers (NaN counted once, as pandas does)
    integral = np.all(np.mod(y.astype(np.float64), 1) == 0)
    return "classification" if integral and len(values) <= max(20, int(0.05 * len(y))) and len(values) < len(y) else "regression"


def _several_targets(raw: RawData, task: str) -> tuple[str, bool]:
    """Several target columns: 0/1 (true/false, yes/no) label columns are a multi-label classification (unless
    ``--task regression``), numeric ones a multi-output regression. Returns (task, multilabel)."""
    pd = pandas()
    y, names = raw.y, raw.target_name.split(",")
    try:
        label_matrix(y, names)
        labels = True
    except TrainwiseError as e:
        labels, why = False, e
    if labels and task in ("auto", "classification"):
        return "classification", True
    if task == "classification":
        raise TrainwiseError(f"{raw.name}: several target columns '{raw.target_name}' are a multi-label classification, "
                             f"so each must hold 0/1 labels, or together each row's class probabilities: {why.message}",
                             hint="give 0/1 (true/false, yes/no) label columns, columns of class probabilities (numbers >= 0, each "
                             "row summing to 1), or one target column with the class labels")
    numeric = np.issubdtype(y.dtype, np.number) or all(pd.api.types.is_number(v) for v in y.ravel()[:1000])
    if not numeric:
        raise TrainwiseError(f"{raw.name}: the targets '{raw.target_name}' hold text, but several targets are a regression "
                             "(or, as 0/1 label columns, a multi-label classification)",
                             hint="give numeric target columns, 0/1 label columns, or one target column")
    return "regression", False


def prepare(raw: RawData, *, task: str = "auto", split=(0.7, 0.15, 0.15), seed: int = 0,
            standardize: bool = True, impute: bool = False, image_norm: str = "half", many_levels: str = "target",
            robust_scale: bool = True) -> PreparedData:
    """Split ``raw`` (stratified for classification), fit preprocessing on train only, transform all splits.
    ``many_levels``: how text columns of many levels become inputs (`Preprocessor`)."""
    y, multilabel, soft = raw.y, False, raw.soft
    if soft is not None:  # class probabilities: a classification, its labels the most probable classes
        if task == "regression":
            raise TrainwiseError(f"{raw.name}: y holds class probabilities (rows summing to 1), but the task is regression",
                                 hint="drop --task regression to train a classifier on them, or give a 1-D regression target")
        task = "classification"
    notes, class_names = list(raw.notes), raw.class_names
    if y.ndim == 2 and y.shape[1] > 1:  # several target columns
        probs = probability_rows(y) if task == "classification" and soft is None else None
        if probs is not None:  # --task classification with columns of class probabilities: soft targets
            y, soft, class_names = probs.argmax(axis=1), probs, raw.target_name.split(",")
            notes.append(f"the target columns {raw.target_name} hold class probabilities (rows summing to 1): trained on them as "
                         "soft targets (cross-entropy), one class per column; metrics, splits and the validation and test "
                         "losses use each row's most probable class")
        else:
            task, multilabel = _several_targets(raw, task)
    task = raw.task if task == "auto" and raw.task else (infer_task(raw.y) if task == "auto" else task)
    if task == "regression" and not np.issubdtype(y.dtype, np.number):
        raise TrainwiseError(f"{raw.name}: target '{raw.target_name}' holds text values like {y[:3].tolist()} but the task is regression",
                             hint="use --task classification, or a numeric target")
    if task == "classification" and not multilabel:
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
            raise TrainwiseError(f"{raw.name}: target '{raw.target_name}' has non-integer values like {y[np.mod(y, 1) != 0][:3].tolist()} "
                                 "but the task is classification", hint="use --task regression, or integer/text class labels")
        classes = np.arange(soft.shape[1]) if soft is not None else \
            np.unique(y) if np.issubdtype(y.dtype, np.number) else pandas().unique(y)  # text labels: None and NaN kept
        if len(classes) < 2:
            raise TrainwiseError(f"{raw.name}: target '{raw.target_name}' has a single class {classes.tolist()}",
                                 hint="classification needs at least two classes")
        y = y.astype(np.int64) if np.issubdtype(y.dtype, np.floating) else y

    if raw.given_splits is not None:
        idx = {k: raw.given_splits.get(k, np.arange(0)) for k in ("train", "val", "test")}
        for name, k in (("val", 1), ("test", 2)):  # a split no file gave (MNIST's train/test files: val) comes out of train
            carve = name == "val" or raw.carve_test  # a test split only where the files say so (--val-data without --test-data)
            if carve and not len(idx[name]) and split[k] > 0 and raw.given_splits.get(name) is None:
                share = split[k] / (split[0] + split[k])
                inner = split_indices(len(idx["train"]), (1 - share, share, 0.0), seed=seed,
                                      stratify=y[idx["train"]] if task == "classification" else None)
                idx["train"], idx[name] = idx["train"][inner["train"]], idx["train"][inner["val"]]
    else:
        plain = raw.groups is None and raw.times is None and not multilabel  # (groups, times, several labels: not by class)
        idx = split_indices(len(y), split, seed=seed, stratify=y if task == "classification" and plain else None,
                            regression_target=y if task == "regression" and plain else None, groups=raw.groups, times=raw.times)

    take = (lambda a, i: a.iloc[i].reset_index(drop=True)) if is_frame(raw.X) else (lambda a, i: a[i])
    pre = Preprocessor(standardize=standardize, impute=impute, image_norm=image_norm, categorical=raw.categorical,
                       many_levels=many_levels, robust=robust_scale)
    train_X = pre.fit_transform(take(raw.X, idx["train"]), y[idx["train"]], task=task, seed=seed)
    target = TargetEncoder.fit(task, y, idx["train"], standardize=standardize,
                               labels=raw.target_name.split(",") if multilabel else None) if soft is None else \
        TargetEncoder(task, classes=list(range(soft.shape[1])))  # every class, the most probable in some row or not
    arrays = {}
    for name, rows in idx.items():
        if len(rows) == 0:
            continue
        X = train_X if name == "train" else pre.transform(take(raw.X, rows))
        arrays[name] = (X, target.encode(y[rows], what=f"{name} split of {raw.name}"))
        _check_finite(arrays[name], name, raw.name, pre)
    if multilabel:
        positives = arrays["train"][1].sum(0)
        constant = [(n, int(p)) for n, p in zip(target.classes, positives) if p in (0, len(arrays["train"][1]))]
        if constant:
            name, p = constant[0]
            raise TrainwiseError(f"{raw.name}: label column '{name}' is {1 if p else 0} in every row of the training split",
                                 hint="drop that label column from --target (nothing to learn), or give rows of both kinds")
    elif task == "classification" and soft is None:  # (soft targets: a class need not be the most probable in any row)
        seen = set(np.unique(arrays["train"][1]).tolist())
        absent = [target.classes[i] for i in range(len(target.classes)) if i not in seen]
        if absent:
            raise TrainwiseError(f"{raw.name}: labels {absent} appear outside the training split but never in it",
                                 hint="put examples of every class in the training data")
    names = class_names or ([str(c) for c in target.classes] if task == "classification" else None)
    weights = raw.weights[idx["train"]] if raw.weights is not None else None
    if weights is not None and not (weights > 0).any():
        raise TrainwiseError(f"{raw.name}: every row of the training split has weight 0", hint="give training rows positive weights")
    as_new = pre.transform(take(raw.X, idx["train"])) if pre.encoded_ else None
    return PreparedData(arrays, task, pre, target, raw.name, raw.target_name, names, idx, notes, weights,
                        None if soft is None else soft[idx["train"]], as_new)


def _check_finite(arrays: tuple[np.ndarray, np.ndarray], split: str, name: str, pre: Preprocessor) -> None:
    """Standardized with the training split's statistics, a value far outside the training range can overflow float32."""
    X, y = arrays
    bad_x = ~np.isfinite(X.reshape(len(X), -1)).all(axis=0) if X.ndim > 1 else np.zeros(0, bool)
    if bad_x.any() or (y.dtype.kind == "f" and not np.isfinite(y).all()):
        names = pre.feature_names_ or [str(i) for i in range(bad_x.size)]
        what = ", ".join(f"'{names[i]}'" for i in np.flatnonzero(bad_x)[:5] if i < len(names)) if bad_x.any() else "the target"
        raise TrainwiseError(f"{name}: after standardizing with the training split's mean and spread, {what} in the {split} split "
                             "no longer fits in float32 (values far outside the training split's range, or a near-constant column)",
                             hint="rescale or clip that column (e.g. log of a wide-ranging value), or pass --no-standardize")


class PreparedDataset(PreparedData):
    """A torch ``Dataset`` split by index: batches come from a DataLoader (workers, pinned memory).

    Items must be ``(x, y)`` pairs of tensors ready for the model (no preprocessing is fit); class labels
    must already be ``0..C-1``.
    """

    def __init__(self, dataset, indices: dict[str, np.ndarray], task: str, n_classes: int | None,
                 input_shape: tuple[int, ...], labels: np.ndarray | None):
        names = [str(i) for i in range(n_classes)] if n_classes else None
        target = TargetEncoder(task, classes=list(range(n_classes)) if n_classes else None)
        super().__init__({}, task, Preprocessor(standardize=False), target, type(dataset).__name__,
                         class_names=names, indices=indices)
        self.dataset, self._input_shape, self._labels = dataset, input_shape, labels

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    def _train_labels(self) -> np.ndarray:
        return self._labels[self.indices["train"]]

    def batches(self, *, kind: str, device, batch_size: int, seed: int, num_workers: int = 0) -> dict[str, DeviceLoader]:
        return {k: DeviceLoader(Subset(self.dataset, idx.tolist()), batch_size=batch_size if k == "train" else 1024,
                                shuffle=k == "train", seed=seed, num_workers=num_workers, device=device, kind=kind)
                for k, idx in self.indices.items() if len(idx)}


def prepare_dataset(dataset, *, task: str = "auto", split=(0.7, 0.15, 0.15), seed: int = 0) -> PreparedDataset:
    """Split a torch Dataset of ``(x, y)`` items by index (stratified when it is classification)."""
    n = len(dataset)
    x0, y0 = dataset[0]
    y0 = torch.as_tensor(y0)
    if task == "auto":
        task = "regression" if y0.is_floating_point() else "classification"
    labels = None
    if task == "classification":
        targets = getattr(dataset, "targets", None)  # torchvision-style datasets carry their labels
        labels = np.asarray(targets if targets is not None else [int(dataset[i][1]) for i in range(n)], dtype=np.int64)
        present = np.unique(labels)
        if present.min() < 0 or not np.array_equal(present, np.arange(present.max() + 1)):
            raise TrainwiseError(f"Dataset labels must be the class indices 0..C-1; found {present[:10].tolist()}",
                                 hint="map the labels to 0..C-1 in the Dataset's __getitem__")
    indices = split_indices(n, split, seed=seed, stratify=labels)
    return PreparedDataset(dataset, indices, task, int(labels.max()) + 1 if labels is not None else None,
                           tuple(torch.as_tensor(x0).shape), labels)
