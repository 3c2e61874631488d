"""Preprocessing fit on the training split only; its state is plain JSON saved with the run."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import TrainwiseError
from ..frames import is_frame, pandas
from .columns import as_categories

if TYPE_CHECKING:  # annotations only: pandas loads on first use (frames.pandas)
    import pandas as pd

__all__ = ["probability_rows", "Preprocessor", "TargetEncoder", "soft_clip"]


# a text column with more than MANY_LEVELS levels would become as many one-hot inputs that each see a handful of rows.
# many_levels="target" (the default) encodes it as numbers: each level's mean of the target in the training split,
# shrunk towards the overall mean by how few rows the level has (scikit-learn's TargetEncoder, empirical-Bayes
# smoothing), and cross-fitted on the training rows (5 folds) so that a row's own label never feeds its encoding;
# one number per column (binary, regression) or one per class. many_levels="pool" keeps at most MAX_LEVELS levels
# one-hot, those seen at least RARE times in the training split; the rest (and levels new at predict time) share one
# "(other)" column
MANY_LEVELS, MAX_LEVELS, RARE, OTHER = 30, 30, 5, "(other)"
# a numeric table column whose farthest value lies more than HEAVY_TAIL interquartile ranges from its median (a
# normal sample of 100,000 rows: about 3.2) is robust-scaled: a few outliers would otherwise set its standard
# deviation and squash every ordinary value towards 0
HEAVY_TAIL = 6.0


def soft_clip(z):
    """Values beyond about ±3 pulled smoothly towards ±3 (z / sqrt(1 + (z/3)²), RealMLP's smooth clipping); works on
    numpy arrays and torch tensors alike.

    >>> [round(float(v), 3) for v in soft_clip(np.array([0.0, 1.0, 3.0, 100.0]))]
    [0.0, 0.949, 2.121, 2.999]
    """
    return z / (1 + (z / 3) ** 2) ** 0.5


class Preprocessor:
    """Turns raw features into float32 arrays: median fill, one-hot text columns, standardize.

    Learned state ends in ``_`` and round-trips through ``state_dict()`` (JSON-safe, no pickle).

    >>> p = Preprocessor(standardize=True).fit(np.array([[0.0], [2.0]]))
    >>> p.transform(np.array([[1.0]])).tolist()
    [[0.0]]
    """

    def __init__(self, *, standardize: bool = True, impute: bool = False, image_norm: str = "half", categorical=(),
                 many_levels: str = "target", robust: bool = True):
        self.standardize = standardize
        self.robust = robust  # table columns with heavy tails: median and IQR, then a soft clip (see HEAVY_TAIL)
        self.many_levels = many_levels  # text columns of many levels: target-encoded | pooled (see MANY_LEVELS)
        self.categorical = list(categorical)  # --categorical: numeric columns one-hot encoded as labels
        self.impute = impute
        self.image_norm = image_norm  # images (N, C, H, W): half | train | imagenet | none, per channel
        self.columns_: list[str] | None = None       # DataFrame input: the expected columns
        self.categories_: dict[str, list] = {}        # text column -> its one-hot categories
        self.fill_: dict[str, Any] = {}               # column -> median (numbers) or most frequent value (text)
        self.mean_: list[float] | None = None
        self.std_: list[float] | None = None
        self.feature_names_: list[str] = []
        self.robust_: list[str] = []  # numeric columns with heavy tails: scaled by median and IQR, then soft-clipped
        self.pooled_: list[str] = []  # text columns of many levels: their rare (and new) levels go to one "(other)" column
        # text columns of many levels, target-encoded: column -> {"names": its inputs, "levels": [...], "values": one list
        # of numbers per level, "default": the numbers of a level the training split never had (the target's mean)}
        self.encoded_: dict[str, dict[str, list]] = {}

    # --- fitting -------------------------------------------------------------------------------
    def fit_transform(self, X: np.ndarray | pd.DataFrame, y: np.ndarray | None = None, *, task: str | None = None,
                      seed: int = 0) -> np.ndarray:
        """Fit on the training rows and transform them; their target encodings are the cross-fitted ones."""
        return self._transform(X, encoded=self._fit(X, y, task=task, seed=seed))

    def fit(self, X: np.ndarray | pd.DataFrame, y: np.ndarray | None = None, *, task: str | None = None,
            seed: int = 0) -> Preprocessor:
        """Learn the preprocessing from the training rows ``X``; their target ``y`` (and ``task``) lets text columns
        of many levels be target-encoded (without it they are pooled)."""
        self._fit(X, y, task=task, seed=seed)
        return self

    def _fit(self, X, y, *, task: str | None, seed: int) -> np.ndarray | None:
        """`fit`, returning the training rows' cross-fitted target encodings (None without such columns)."""
        cross_fitted = None
        encodable = self.many_levels == "target" and y is not None and task is not None and np.asarray(y).ndim == 1
        many: list[str] = []
        if is_frame(X):
            pd = pandas()
            self.columns_ = [str(c) for c in X.columns]
            X = self._labels(X.set_axis(self.columns_, axis=1))
            for col in self.columns_:
                s = X[col]
                numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
                if self.impute:  # every column, so new data with gaps elsewhere is filled the same way
                    self.fill_[col] = float(s.median()) if numeric else s.mode(dropna=True).iloc[0]
                if not numeric:
                    levels = s.dropna().value_counts()
                    if len(levels) > MANY_LEVELS and encodable:  # numbers learned from the target, below
                        many.append(col)
                        continue
                    if len(levels) > MANY_LEVELS:  # rare levels share one "(other)" column, as new levels will
                        levels = levels[levels >= RARE][:MAX_LEVELS]
                        self.pooled_.append(col)
                    self.categories_[col] = sorted(levels.index.tolist(), key=str)
            if many:
                cross_fitted = self._fit_encoding(X, many, np.asarray(y), task, seed)
        numeric_block = self._numeric(X, fitting=True, encoded=cross_fitted)
        if numeric_block.ndim == 4:
            self.mean_, self.std_ = _image_stats(numeric_block, self.image_norm if self.standardize else "none")
        elif self.standardize and numeric_block.size:
            flat = numeric_block.reshape(len(numeric_block), -1) if numeric_block.ndim == 2 else numeric_block.reshape(-1, 1)
            mean, std = flat.mean(axis=0, dtype=np.float64), flat.std(axis=0, dtype=np.float64)
            if self.columns_ is not None and self.robust:  # table columns with heavy tails or outliers: median and IQR, soft clip
                cols = self._block_names()
                q1, med, q3 = np.nanquantile(flat, [0.25, 0.5, 0.75], axis=0)
                iqr = q3 - q1
                tail = np.nanmax(np.abs(flat - med), axis=0) / np.where(iqr > 0, iqr, np.inf)
                for j in np.flatnonzero(tail > HEAVY_TAIL):
                    mean[j], std[j] = med[j], iqr[j] / 1.349  # the IQR of a normal distribution is 1.349 sigma
                    self.robust_.append(cols[j])
            self.mean_, self.std_ = mean.tolist(), np.where(std > 1e-12, std, 1.0).tolist()
        return cross_fitted

    # --- applying ------------------------------------------------------------------------------
    def _labels(self, X):
        """``X`` with the --categorical columns as category labels (numbers in a new file read as in training)."""
        if not self.categorical or not is_frame(X):
            return X
        X = X.set_axis([str(c) for c in X.columns], axis=1).copy()
        for col in self.categorical:
            if col in X.columns:
                X[col] = as_categories(X[col])
        return X

    def _fit_encoding(self, X: pd.DataFrame, columns: list[str], y: np.ndarray, task: str, seed: int) -> np.ndarray:
        """Target-encode ``columns`` (scikit-learn's TargetEncoder); return the training rows' cross-fitted encodings."""
        pd = pandas()
        from sklearn.model_selection import KFold, StratifiedKFold  # scikit-learn is slow to import: only for such columns
        from sklearn.preprocessing import TargetEncoder as SkTargetEncoder  # same reason

        classification = task == "classification"
        classes = pd.unique(y) if classification else None
        target_type = "continuous" if not classification else "binary" if len(classes) == 2 else "multiclass"
        folds = (StratifiedKFold if classification else KFold)(5, shuffle=True, random_state=seed)
        filled = {c: X[c].where(X[c].notna(), self.fill_[c]) if c in self.fill_ else X[c] for c in columns}
        values = pd.DataFrame({c: self._level_text(v) for c, v in filled.items()}).to_numpy(dtype=object)
        enc = SkTargetEncoder(target_type=target_type, cv=folds)
        with warnings.catch_warnings():  # a class with fewer than 5 training rows: folds without it, which is fine here
            warnings.simplefilter("ignore", UserWarning)
            cross_fitted = enc.fit_transform(values, y if classification else y.astype(np.float64))
        width = len(enc.classes_) if target_type == "multiclass" else 1
        default = np.atleast_1d(enc.target_mean_).astype(float).tolist()
        for i, col in enumerate(columns):
            table = np.stack(enc.encodings_[i * width:(i + 1) * width], axis=1)  # (levels, width)
            levels = [None if pd.isna(v) else str(v) for v in enc.categories_[i]]
            names = [f"{col}~{k}" for k in enc.classes_] if width > 1 else [f"{col}~target"]
            self.encoded_[col] = {"names": names, "levels": levels, "values": table.astype(float).tolist(), "default": default}
        return cross_fitted

    @staticmethod
    def _level_text(s: pd.Series) -> pd.Series:
        """A text column's values as the strings its target encoding is keyed by (missing stays missing)."""
        pd = pandas()
        return s.map(lambda v: v if pd.isna(v) else str(v)).astype(object)

    def _encode(self, X: pd.DataFrame) -> np.ndarray:
        """The target encodings of the many-level columns of ``X``; a level training never had gets the default."""
        pd = pandas()
        blocks = []
        for col, e in self.encoded_.items():
            values = X[col].where(X[col].notna(), self.fill_.get(col)) if col in self.fill_ else X[col]
            index = {v: i for i, v in enumerate(e["levels"])}
            table = np.asarray([*e["values"], e["default"]], dtype=np.float64)
            rows = np.fromiter((index.get(None if pd.isna(v) else v, len(e["levels"])) for v in self._level_text(values)),
                               dtype=np.int64, count=len(values))
            blocks.append(table[rows])
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(X), 0))

    def _block_names(self) -> list[str]:
        """The names of the numeric block's inputs: the numeric columns, then the target encodings."""
        return [c for c in self.columns_ if c not in self.categories_ and c not in self.encoded_] + \
            [n for e in self.encoded_.values() for n in e["names"]]

    @property
    def n_numeric_inputs(self) -> int | None:
        """How many leading inputs are numbers (numeric columns, target encodings); None: not a table."""
        return None if self.columns_ is None else len(self._block_names())

    def transform(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        return self._transform(X)

    def _transform(self, X, *, encoded: np.ndarray | None = None) -> np.ndarray:
        """`transform`; ``encoded``: the rows' target encodings as given (the training rows' cross-fitted ones)."""
        X = self._labels(X)
        numeric = self._numeric(X, fitting=False, encoded=encoded)
        if self.mean_ is not None:
            mean, std = np.asarray(self.mean_), np.asarray(self.std_)
            if numeric.ndim == 4:  # images: one statistic per channel
                mean, std = mean.reshape(1, -1, 1, 1).astype(np.float32), std.reshape(1, -1, 1, 1).astype(np.float32)
            elif numeric.ndim > 2:  # other tensors: one scalar statistic
                mean, std = mean[0], std[0]
            numeric = (numeric - mean) / std
            if self.robust_:
                cols = self._block_names()
                j = [cols.index(c) for c in self.robust_]
                numeric[:, j] = soft_clip(numeric[:, j])
        blocks = [numeric.astype(np.float32)]
        if self.columns_ is not None:
            for col, cats in self.categories_.items():
                values = X[col].where(X[col].notna(), self.fill_.get(col)) if col in self.fill_ else X[col]
                onehot = (values.to_numpy()[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float32)
                if col in self.pooled_:
                    other = (values.notna().to_numpy() & (onehot.sum(1) == 0)).astype(np.float32)[:, None]
                    onehot = np.concatenate([onehot, other], axis=1)
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]

    def _numeric(self, X, *, fitting: bool, encoded: np.ndarray | None = None) -> np.ndarray:
        if self.columns_ is None:
            if is_frame(X):
                raise TrainwiseError("expected a numeric array, got a table", hint="use the same kind of input as in training")
            X = np.asarray(X)
            return X.astype(np.float32 if X.ndim > 2 else np.float64, copy=False)  # images stay float32: memory
        if not is_frame(X):
            raise TrainwiseError("expected a table with columns " + ", ".join(self.columns_), hint="pass a .csv file with those columns")
        pd = pandas()
        X = X.set_axis([str(c) for c in X.columns], axis=1)
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise TrainwiseError(f"input is missing feature columns: {', '.join(missing)}",
                                 hint=f"give all training columns: {', '.join(self.columns_)}")
        cols = [c for c in self.columns_ if c not in self.categories_ and c not in self.encoded_]
        block = (X[cols] if fitting else pd.DataFrame({c: _numbers(X[c], c) for c in cols}, index=X.index)).astype(np.float64)
        if self.fill_:
            block = block.fillna({c: v for c, v in self.fill_.items() if c in cols})
        if fitting:
            self.feature_names_ = self._block_names() + [f"{c}={v}" for c, cats in self.categories_.items()
                                                         for v in [*cats, *[OTHER] * (c in self.pooled_)]]
        if not fitting:
            text = [c for c in [*self.categories_, *self.encoded_] if c not in self.fill_]
            bad = pd.concat([block.isna().sum(), X[text].isna().sum()])
            if bad.any():
                raise TrainwiseError("input has missing values in " + ", ".join(f"'{c}' ({n})" for c, n in bad[bad > 0].items()),
                                     hint="fill them, or train with --missing median so they are filled the same way")
        if not self.encoded_:
            return block.to_numpy()
        return np.concatenate([block.to_numpy(), self._encode(X) if encoded is None else encoded], axis=1)

    def unseen_categories(self, X: np.ndarray | pd.DataFrame) -> dict[str, dict[str, int]]:
        """Per one-hot column, the values in ``X`` that the training split never had, with their counts:
        `transform` encodes such a value as all zeros (no category), which `predict` warns about.

        >>> import pandas as pd
        >>> p = Preprocessor().fit(pd.DataFrame({"color": ["red", "blue"]}))
        >>> p.unseen_categories(pd.DataFrame({"color": ["red", "pink", "pink"]}))
        {'color': {'pink': 2}}
        """
        if self.columns_ is None or not is_frame(X):
            return {}
        X = self._labels(X.set_axis([str(c) for c in X.columns], axis=1))
        out = {}
        for col, cats in self.categories_.items():
            if col in X.columns and col not in self.pooled_:  # a pooled column takes new levels as "(other)"
                values = X[col].dropna()
                new = values[~values.isin(cats)]
                if len(new):
                    out[col] = {str(k): int(n) for k, n in new.value_counts().items()}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"standardize": self.standardize, "impute": self.impute, "image_norm": self.image_norm, "columns": self.columns_,
                "categories": self.categories_, "fill": self.fill_, "mean": self.mean_, "std": self.std_,
                "feature_names": self.feature_names_, "categorical": self.categorical, "pooled": self.pooled_,
                "robust": self.robust_, "many_levels": self.many_levels, "robust_scale": self.robust, "encoded": self.encoded_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preprocessor:
        p = cls(standardize=state["standardize"], impute=state["impute"], image_norm=state.get("image_norm", "half"),
                categorical=state.get("categorical") or (), many_levels=state.get("many_levels", "pool"), robust=state.get("robust_scale", True))
        p.columns_, p.categories_, p.fill_ = state["columns"], state["categories"], state["fill"]
        p.mean_, p.std_, p.feature_names_ = state["mean"], state["std"], state["feature_names"]
        p.pooled_, p.robust_ = list(state.get("pooled") or []), list(state.get("robust") or [])
        p.encoded_ = dict(state.get("encoded") or {})
        return p


def _numbers(s: pd.Series, col: str) -> pd.Series:
    """A column that was numeric in training, as numbers; text in it is an error naming the rows."""
    pd = pandas()
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s
    numbers = pd.to_numeric(s.astype(str).str.strip().where(s.notna()), errors="coerce")
    rows = np.flatnonzero((s.notna() & numbers.isna()).to_numpy())
    if len(rows):
        listing = ", ".join(f"{s.iloc[i]!r} (row {i + 1})" for i in rows[:5])
        raise TrainwiseError(f"input column '{col}' was numeric in training but holds text in {len(rows)} row(s): {listing}"
                             + (", ..." if len(rows) > 5 else "") + " (rows count from 1 after the header)",
                             hint=f"give numbers in '{col}' (leave a cell empty if the value is missing)")
    return numbers


_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def _image_stats(X: np.ndarray, norm: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std for pixels in [0, 1]: fixed (half: the lecture's 0.5/0.5; imagenet), fit on the
    training split (train), or identity (none)."""
    C = X.shape[1]
    if norm == "half":
        return [0.5] * C, [0.5] * C
    if norm == "imagenet":
        return (_IMAGENET[0], _IMAGENET[1]) if C == 3 else ([float(np.mean(_IMAGENET[0]))] * C, [float(np.mean(_IMAGENET[1]))] * C)
    if norm == "train":
        mean = X.mean(axis=(0, 2, 3), dtype=np.float64)
        std = X.std(axis=(0, 2, 3), dtype=np.float64)
        return mean.tolist(), np.where(std > 1e-12, std, 1.0).tolist()
    return [0.0] * C, [1.0] * C


def probability_rows(y: np.ndarray) -> np.ndarray | None:
    """``y`` (rows x classes) as float32 class probabilities, each row scaled to sum to exactly 1, when its rows are
    numbers ≥ 0 that sum to 1 (within 0.02: probabilities written as text with two decimals) and not all 0/1
    (one-hot rows are labels); None otherwise.

    >>> probability_rows(np.array([[0.25, 0.75]])).tolist(), probability_rows(np.array([[0, 1]])), probability_rows(np.array([[0.5, 0.6]]))
    ([[0.25, 0.75]], None, None)
    """
    try:
        v = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if v.ndim != 2 or not np.isfinite(v).all() or np.isin(v, (0.0, 1.0)).all() or (v < 0).any():
        return None
    sums = v.sum(axis=1)
    return (v / sums[:, None]).astype(np.float32) if np.allclose(sums, 1.0, atol=0.02) else None


class TargetEncoder:
    """Class labels <-> indices for classification; standardization for a regression target. ``multilabel``:
    several 0/1 label columns (``classes``: their names), encoded as a float 0/1 per label."""

    def __init__(self, task: str, classes: list | None = None, mean: float = 0.0, std: float = 1.0, multilabel: bool = False):
        self.task, self.classes, self.mean, self.std, self.multilabel = task, classes, mean, std, multilabel

    @classmethod
    def fit(cls, task: str, y: np.ndarray, train_idx: np.ndarray, *, standardize: bool, labels: list[str] | None = None) -> TargetEncoder:
        if labels is not None:  # several label columns
            return cls(task, classes=list(labels), multilabel=True)
        if task == "classification":  # numbers without pandas (start-up); text labels keep None and NaN apart
            values = np.unique(y) if np.issubdtype(np.asarray(y).dtype, np.number) else pandas().unique(y)
            return cls(task, classes=sorted(values.tolist(), key=_sort_key))
        yt = y[train_idx].astype(np.float64)
        if yt.ndim == 2 and yt.shape[1] > 1:  # several targets: one mean and std each
            std = yt.std(axis=0)
            return cls(task, mean=yt.mean(axis=0).tolist(), std=np.where(std > 1e-12, std, 1.0).tolist()) if standardize else \
                cls(task, mean=[0.0] * yt.shape[1], std=[1.0] * yt.shape[1])
        std = float(yt.std())
        return cls(task, mean=float(yt.mean()), std=std if std > 1e-12 else 1.0) if standardize else cls(task)

    def encode(self, y: np.ndarray, *, what: str = "target") -> np.ndarray:
        if self.multilabel:
            values = label_matrix(y, self.classes, what)
            return values.astype(np.float32)
        if self.task == "classification":
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] > 1:  # rows of class probabilities: each row's most probable class
                probs = probability_rows(y)
                if probs is None or probs.shape[1] != len(self.classes):
                    raise TrainwiseError(f"{what} has {y.shape[1]} values per row, which are not class probabilities for the model's "
                                         f"{len(self.classes)} classes", hint="give one label per row, or rows of class probabilities "
                                         "(numbers >= 0 summing to 1), one column per class in the model's order")
                return probs.argmax(axis=1).astype(np.int64)
            index = {c: i for i, c in enumerate(self.classes)}
            unknown = sorted({v for v in y.tolist() if v not in index}, key=str)
            if unknown:
                raise TrainwiseError(f"{what} has labels {unknown[:5]} that the model was not trained on; known: {self.classes[:20]}",
                                     hint="use data with the training labels only")
            return np.fromiter((index[v] for v in y.tolist()), dtype=np.int64, count=len(y))
        return ((y.astype(np.float64) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    @property
    def n_targets(self) -> int:
        """How many numbers the model predicts per row for a regression (one per target column)."""
        return len(self.mean) if isinstance(self.mean, list) else 1

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.task, "classes": self.classes, "mean": self.mean, "std": self.std} | \
            ({"multilabel": True} if self.multilabel else {})

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> TargetEncoder:
        return cls(s["task"], s["classes"], s["mean"], s["std"], multilabel=bool(s.get("multilabel", False)))


_TRUE, _FALSE = ("1", "1.0", "true", "yes"), ("0", "0.0", "false", "no")


def label_matrix(y: np.ndarray, labels: list[str], what: str = "target") -> np.ndarray:
    """Several label columns as a 0/1 matrix: numbers 0/1, booleans, or the words true/false, yes/no (any case);
    anything else (a gap included) is an error naming the column and the value.

    >>> label_matrix(np.array([[1, "no"], [0, "YES"]], dtype=object), ["spam", "urgent"]).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    pd = pandas()
    y = np.asarray(y).reshape(len(y), -1)
    out = np.zeros(y.shape, dtype=np.float64)
    for j, name in enumerate(labels):
        text = pd.Series(y[:, j]).map(lambda v: str(v).strip().lower() if not pd.isna(v) else "")
        ones, zeros = text.isin(_TRUE), text.isin(_FALSE)
        bad = text[~(ones | zeros)]
        if len(bad):
            raise TrainwiseError(f"{what}: label column '{name}' holds {y[bad.index[0], j]!r} (row {bad.index[0] + 1}); "
                                 f"a label column holds 0/1, true/false or yes/no", hint=f"give every row a 0 or 1 in '{name}'")
        out[:, j] = ones.to_numpy()
    return out


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float, np.integer, np.floating)) else (1, 0, str(v))
