"""source -> split -> preprocess (fit on train) -> arrays per split. The one-way data path of a run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import TrainwiseError
from .preprocess import Preprocessor, TargetEncoder
from .sources import RawData
from .splits import split_indices

__all__ = ["PreparedData", "prepare", "infer_task"]


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

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.arrays["train"][0].shape[1:])

    @property
    def n_classes(self) -> int | None:
        return len(self.target.classes) if self.task == "classification" else None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "task": self.task, "target": self.target_name,
                             "input_shape": list(self.input_shape),
                             "sizes": {k: int(len(v[1])) for k, v in self.arrays.items()}}
        if self.task == "classification":
            d["n_classes"] = self.n_classes
            d["class_names"] = self.class_names
            counts = np.bincount(self.arrays["train"][1], minlength=self.n_classes)
            d["train_class_counts"] = dict(zip(self.class_names, counts.tolist()))
        if self.notes:
            d["notes"] = self.notes
        return d


def infer_task(y: np.ndarray) -> str:
    """Classification for text/bool labels or few distinct integer values; regression otherwise."""
    if y.dtype == object or y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        return "classification"
    values = pd.unique(y)
    integral = np.all(np.mod(y.astype(np.float64), 1) == 0)
    return "classification" if integral and len(values) <= max(20, int(0.05 * len(y))) and len(values) < len(y) else "regression"


def prepare(raw: RawData, *, task: str = "auto", split=(0.7, 0.15, 0.15), seed: int = 0,
            standardize: bool = True, impute: bool = False) -> PreparedData:
    """Split ``raw`` (stratified for classification), fit preprocessing on train only, transform all splits."""
    task = raw.task if task == "auto" and raw.task else (infer_task(raw.y) if task == "auto" else task)
    y = raw.y
    if task == "regression" and not np.issubdtype(y.dtype, np.number):
        raise TrainwiseError(f"{raw.name}: target '{raw.target_name}' holds text values like {y[:3].tolist()} but the task is regression",
                             hint="use --task classification, or a numeric target")
    if task == "classification":
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0):
            raise TrainwiseError(f"{raw.name}: target '{raw.target_name}' has non-integer values like {y[np.mod(y, 1) != 0][:3].tolist()} "
                                 "but the task is classification", hint="use --task regression, or integer/text class labels")
        if len(pd.unique(y)) < 2:
            raise TrainwiseError(f"{raw.name}: target '{raw.target_name}' has a single class {pd.unique(y).tolist()}",
                                 hint="classification needs at least two classes")
        y = y.astype(np.int64) if np.issubdtype(y.dtype, np.floating) else y

    if raw.given_splits is not None:
        idx = {k: raw.given_splits.get(k, np.arange(0)) for k in ("train", "val", "test")}
    else:
        idx = split_indices(len(y), split, seed=seed, stratify=y if task == "classification" else None,
                            regression_target=y if task == "regression" else None)

    take = (lambda a, i: a.iloc[i].reset_index(drop=True)) if isinstance(raw.X, pd.DataFrame) else (lambda a, i: a[i])
    pre = Preprocessor(standardize=standardize, impute=impute).fit(take(raw.X, idx["train"]))
    target = TargetEncoder.fit(task, y, idx["train"], standardize=standardize)
    arrays = {}
    for name, rows in idx.items():
        if len(rows) == 0:
            continue
        arrays[name] = (pre.transform(take(raw.X, rows)), target.encode(y[rows], what=f"{name} split of {raw.name}"))
    if task == "classification":
        seen = set(np.unique(arrays["train"][1]).tolist())
        absent = [target.classes[i] for i in range(len(target.classes)) if i not in seen]
        if absent:
            raise TrainwiseError(f"{raw.name}: labels {absent} appear outside the training split but never in it",
                                 hint="put examples of every class in the training data")
    names = raw.class_names or ([str(c) for c in target.classes] if task == "classification" else None)
    return PreparedData(arrays, task, pre, target, raw.name, raw.target_name, names, idx, list(raw.notes))
