"""Data sources: built-in sets, .npz and .csv files, and in-memory arrays. Each yields a `RawData`."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import TrainwiseError, check_choice
from ..frames import is_frame, pandas
from ..options import BUILTIN_DATA, NA_VALUES, parse_na_values
from .builtin import SKLEARN_SETS, load_builtin
from .columns import ColumnRoles, apply_roles, check_weights
from .images import load_idx_set, load_image_folder
from .preprocess import probability_rows
from .raw import RawData

if TYPE_CHECKING:  # annotations only: pandas loads on first use (frames.pandas)
    import pandas as pd

__all__ = ["RawData", "BUILTINS", "load_source", "from_arrays", "weigh_rows", "from_table", "check_table",
           "read_table", "open_npz", "read_npz_array"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)  # models compute in float32: a larger number would become inf

BUILTINS = BUILTIN_DATA  # declared in options (config needs the names too)
assert set(SKLEARN_SETS) <= set(BUILTINS)


def load_source(data: str, *, target: str | None = None, missing: str = "error", seed: int = 0,
                data_dir: str | None = None, image_size=None, channels: str = "auto", na_values: str = NA_VALUES,
                roles: ColumnRoles | None = None) -> RawData:
    """Load a built-in data set by name, a .csv / .npz file, or a folder of images (one subfolder per class).
    ``na_values``: the CSV cells read as missing (see `read_table`); ``roles``: what some CSV columns are for."""
    if roles and not str(data).lower().endswith(".csv"):
        raise TrainwiseError(f"--exclude, --id-column, --categorical, --group-column, --time-column and --weight-column name CSV columns; "
                             f"'{data}' is not a CSV file", hint="drop those options, or give the data as a .csv file")
    if data in SKLEARN_SETS:
        return load_builtin(data)
    if data == "toy-regression":
        return toy_regression(seed)
    if data in ("fashion-mnist", "mnist"):
        return load_idx_set(data, data_dir)
    path = Path(data)
    if path.is_dir():
        return load_image_folder(path, image_size=image_size, channels=channels)
    if path.suffix.lower() in (".csv", ".npz"):
        if not path.is_file():
            raise TrainwiseError(f"data file '{path}' does not exist",
                                 hint="check the path, or use a built-in data set: " + ", ".join(BUILTINS) + ", or an image folder")
        return _csv(path, target, missing, na_values, roles) if path.suffix.lower() == ".csv" else _npz(path)
    check_choice("data set", data, BUILTINS)  # raises with a suggestion
    raise AssertionError("unreachable")


def toy_regression(seed: int = 0) -> RawData:
    """The lecture's toy regression: x = -3, -2.85, ..., 2.85 (40 points), y = x^2 + x * N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(-3, 3, 0.15)
    y = x**2 + x * torch.normal(0.0, 1.0, (len(x),), generator=g)
    return RawData(x[:, None].numpy(), y.numpy(), "toy-regression", "regression")


def open_npz(path: Path):
    """An .npz file opened without pickle; a file that is not one is an error naming it."""
    if not zipfile.is_zipfile(path):
        raise TrainwiseError(f"'{path}' is not a .npz file (a zip archive of arrays)", hint="save it with numpy.savez(path, X=..., y=...)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise TrainwiseError(f"cannot read '{path}' as .npz: {e}", hint="save it with numpy.savez(path, X=..., y=...)") from None


def _npz(path: Path) -> RawData:
    npz = open_npz(path)
    keys = set(npz.files)
    if {"X", "y"} <= keys:
        return from_arrays(read_npz_array(npz, "X", path), read_npz_array(npz, "y", path), name=str(path))
    split_keys = [s for s in ("train", "val", "test") if {f"X_{s}", f"y_{s}"} <= keys]
    if "train" not in split_keys or "val" not in split_keys:
        raise TrainwiseError(
            f"'{path}' has keys {sorted(keys)}; expected X and y, or pre-split X_train, y_train, X_val, y_val [, X_test, y_test]",
            hint="save it with numpy.savez(path, X=features, y=targets)")
    Xs = [read_npz_array(npz, f"X_{s}", path) for s in split_keys]
    ys = [read_npz_array(npz, f"y_{s}", path) for s in split_keys]
    for s, X, y in zip(split_keys, Xs, ys):
        if X.ndim == 0 or y.ndim == 0:
            raise TrainwiseError(f"'{path}': X_{s} or y_{s} is a single number, not rows", hint="save one row per sample")
        if len(X) != len(y):
            raise TrainwiseError(f"'{path}': X_{s} has {len(X)} rows but y_{s} has {len(y)}", hint=f"give X_{s} and y_{s} the same number of rows")
        if X.shape[1:] != Xs[0].shape[1:]:
            raise TrainwiseError(f"'{path}': X_{s} rows have shape {X.shape[1:]} but X_train rows have {Xs[0].shape[1:]}",
                                 hint="all splits need the same features")
    bounds = np.cumsum([0] + [len(y) for y in ys])
    splits = {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(split_keys)}
    raw = from_arrays(np.concatenate(Xs), np.concatenate(ys), name=str(path))
    raw.given_splits = splits
    return raw


def read_npz_array(npz, key: str, path: Path) -> np.ndarray:
    """One array of an open .npz file; object arrays (which only pickle can read) and unreadable members are
    errors naming the file and the key."""
    try:
        return npz[key]
    except ValueError as e:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise TrainwiseError(f"'{path}': array '{key}' holds Python objects ({e}), which trainwise does not unpickle",
                             hint="save numbers (or strings for labels): numpy.savez(path, X=X.astype('float32'), y=y)") from None
    except Exception as e:  # noqa: BLE001 - a damaged zip member can raise many kinds of errors
        raise TrainwiseError(f"'{path}': cannot read array '{key}': {type(e).__name__}: {e}",
                             hint="save it again with numpy.savez(path, X=..., y=...)") from None


def from_arrays(X, y, *, name: str = "arrays") -> RawData:
    """Wrap numpy arrays or tensors (features first axis = rows) as RawData, checking they fit together."""
    if y is None:
        raise TrainwiseError(f"{name}: features X were given without targets y",
                             hint="pass the targets too: fit(X, y), one per row of X")
    X, y = (_array(v, what, name) for v, what in ((X, "X"), (y, "y")))
    if X.ndim == 0 or y.ndim == 0:
        raise TrainwiseError(f"{name}: {'X' if X.ndim == 0 else 'y'} is a single value, not one row per sample",
                             hint="give X as rows of features and y as one target per row")
    if X.ndim < 2:
        X = X[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    notes, labels, soft = [], None, None
    if y.ndim == 2 and y.shape[1] > 1 and len(y):
        if _multi_hot(y):  # several 0/1 labels per row: a multi-label classification, one label per column
            labels = [f"label_{j}" for j in range(y.shape[1])]
            notes.append(f"y has {y.shape[1]} columns of 0/1 with rows of several (or no) 1s: a multi-label classification, "
                         f"one sigmoid per column ({', '.join(labels[:3])}{', ...' if len(labels) > 3 else ''})")
        else:
            y, note, soft = _class_targets(y, name)
            notes.append(note)
    if y.ndim != 1 and labels is None:
        raise TrainwiseError(f"{name}: y has shape {y.shape}, but trainwise trains one target per row",
                             hint="give y as a 1-D array (class labels or values), e.g. y[:, 0], or one model per target column")
    if len(X) != len(y):
        raise TrainwiseError(f"{name}: X has {len(X)} rows but y has {len(y)}", hint="give one target per row of X")
    if len(X) == 0 or X[0].size == 0:
        raise TrainwiseError(f"{name}: X has shape {X.shape}: no {'rows' if len(X) == 0 else 'features'}",
                             hint="give at least a few rows with at least one feature each")
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise TrainwiseError(f"{name}: X has non-numeric dtype {X.dtype}",
                             hint="encode features as numbers, or use a .csv file, which one-hot encodes text columns")
    if np.iscomplexobj(X):
        raise TrainwiseError(f"{name}: X holds complex numbers", hint="give real numbers (e.g. split real and imaginary parts into columns)")
    values = X.astype(np.float64, copy=False).reshape(len(X), -1)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(values) & (np.abs(values) <= _FLOAT32_MAX)).all(axis=1)
    if bad.any():
        raise TrainwiseError(f"{name}: {int(bad.sum())} rows of X hold NaN, infinite or too large values (beyond ±3.4e38, "
                             f"float32's range), e.g. row {int(np.flatnonzero(bad)[0])}",
                             hint="clean the array, or save it as .csv and use --missing drop|median")
    if np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(y.astype(np.float64)) & (np.abs(y.astype(np.float64)) <= _FLOAT32_MAX))
        if bad.any():
            raise TrainwiseError(f"{name}: {int(bad.sum())} values of y are NaN, infinite or too large, e.g. row {int(np.flatnonzero(bad)[0])}",
                                 hint="drop those rows, or give finite targets")
    return RawData(X.astype(np.float32, copy=False), y, name, notes=notes, soft=soft,
                   **({"target_name": ",".join(labels)} if labels else {}))


def _multi_hot(y: np.ndarray) -> bool:
    """0/1 rows of which some hold several 1s or none: label columns, not one-hot classes.

    >>> _multi_hot(np.array([[1, 1, 0], [0, 0, 0]])), _multi_hot(np.array([[1, 0], [0, 1]]))
    (True, False)
    """
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        return False
    v = y.astype(np.float64)
    return bool(np.isin(v, (0.0, 1.0)).all() and ((v == 1).sum(axis=1) != 1).any())


def _class_targets(y: np.ndarray, name: str) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Class indices from rows of one target per class, a note saying how they were read, and the rows of class
    probabilities (soft targets) where they are not one-hot. One-hot rows (Keras' ``to_categorical`` form: one 1
    per row, the rest 0) are class labels; rows of probabilities (≥ 0, summing to 1) are trained on as they are
    (cross-entropy with soft targets), their most probable class standing for the label (stratified splits, accuracy,
    confusion matrix, validation and test). Rows of several or no 1s are label columns: `from_arrays` reads them as a
    multi-label classification.

    >>> _class_targets(np.array([[0, 1, 0], [1, 0, 0]]), "arrays")[0].tolist()
    [1, 0]
    >>> y, _, soft = _class_targets(np.array([[0.2, 0.8], [0.7, 0.3]]), "arrays"); y.tolist(), soft.tolist()
    ([1, 0], [[0.20000000298023224, 0.800000011920929], [0.699999988079071, 0.30000001192092896]])
    """
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise TrainwiseError(f"{name}: y has shape {y.shape} and non-numeric values, but trainwise trains one target per row",
                             hint="give y as a 1-D array of class labels or values")
    v = y.astype(np.float64)
    binary = np.isin(v, (0.0, 1.0)).all()
    ones = (v == 1).sum(axis=1)
    if binary and (ones == 1).all():
        return v.argmax(axis=1).astype(np.int64), f"y is one-hot encoded ({y.shape[1]} columns): trained on the class index of each row's 1", None
    soft = probability_rows(v)
    if soft is not None:
        return (soft.argmax(axis=1).astype(np.int64),
                f"y holds class probabilities ({y.shape[1]} classes, rows summing to 1): trained on them as soft targets "
                "(cross-entropy); metrics, splits and the validation and test losses use each row's most probable class", soft)
    if (v >= 0).all() and (v <= 1).all() and not binary:
        sums = v.sum(axis=1)
        row = int(np.flatnonzero(~np.isclose(sums, 1.0, atol=0.02))[0])
        raise TrainwiseError(f"{name}: y has shape {y.shape} and values between 0 and 1 whose rows do not sum to 1 (row "
                             f"{row} sums to {float(sums[row]):.4g}), so they are neither class probabilities nor 0/1 labels",
                             hint="give rows of class probabilities that sum to 1 (e.g. a softmax), one-hot rows, or 0/1 label columns")
    raise TrainwiseError(f"{name}: y has shape {y.shape}, but trainwise trains one target per row",
                         hint="give y as a 1-D array (class labels or values), e.g. y[:, 0], or one model per target column")


def weigh_rows(raw: RawData | None, sample_weight, given, cfg) -> RawData:
    """``raw`` (loaded from the arrays or DataFrame ``given``; None: ``cfg.data`` was a file or a built-in set) with
    ``sample_weight`` as its rows' weights, checked (`check_weights`) against the rows that remain."""
    if raw is None or cfg.weight_column:
        raise TrainwiseError("sample_weight weighs the rows of arrays or a DataFrame passed to fit"
                             + (f", and weight_column '{cfg.weight_column}' weighs them already" if cfg.weight_column else
                                f"; '{cfg.data}' is read from a file or a built-in set"),
                             hint="give one of the two" if cfg.weight_column else "name the CSV file's weight column with --weight-column")
    if len(raw.y) != len(given):
        raise TrainwiseError(f"sample_weight has a weight for each of the {len(given)} rows given, but {len(given) - len(raw.y)} "
                             f"were dropped (missing={cfg.missing!r})", hint="drop those rows (and their weights) before fit")
    raw.weights = check_weights(sample_weight, len(raw.y))
    return raw


def _array(v, what: str, name: str) -> np.ndarray:
    try:
        return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise TrainwiseError(f"{name}: {what} is not an array ({type(e).__name__}: {e})",
                             hint=f"give {what} as a numpy array, a tensor or a list of equal-length rows") from None


def read_table(path: Path, na_values: str = NA_VALUES) -> pd.DataFrame:
    """A CSV file as a DataFrame, with the checks every table gets (in training and at predict time): an empty
    cell or one of the comma-separated ``na_values`` markers is missing; a column of numbers with a few stray words
    is refused naming their rows (rather than one-hot encoded as if it were text); infinite numbers and numbers
    beyond float32's range are refused naming their rows."""
    pd = pandas()
    markers = parse_na_values(na_values)
    try:
        df = pd.read_csv(path, na_values=markers, keep_default_na=False, low_memory=False)
    except UnicodeDecodeError as e:
        raise TrainwiseError(f"cannot read '{path}' as CSV: it is not UTF-8 text (byte {e.start}: {e.reason})",
                             hint="save the file as UTF-8 text (comma-separated, with a header row)") from None
    except Exception as e:  # noqa: BLE001 - pandas raises many kinds of errors for a file that is not a CSV
        raise TrainwiseError(f"cannot read '{path}' as CSV: {type(e).__name__}: {str(e).strip()[:300]}",
                             hint="check the file is comma-separated text with a header row") from None
    return check_table(df.set_axis([str(c) for c in df.columns], axis=1), f"'{path}'", markers=markers)


def check_table(df: pd.DataFrame, source: str, *, markers: list[str] | None = None) -> pd.DataFrame:
    """The checks every table gets (`read_table`; a DataFrame given to fit): numbers in text form become numbers,
    a column of numbers with a few stray words is refused naming their rows, infinite or too large numbers too.
    Rows are named by their line in a CSV file (``markers``: its missing-value markers) or a DataFrame's index."""
    pd = pandas()
    csv = markers is not None
    where = (lambda i: f"row {i + 1}") if csv else (lambda i: f"index {df.index[i]!r}")  # noqa: E731
    after = " (rows count from 1 after the header)" if csv else ""
    fix = (f"add the marker to --na-values (now {', '.join(repr(m) for m in markers)}) and choose --missing drop or median"
           if csv else "make them NaN and choose missing='drop' or 'median'")
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            present = s.dropna()
            numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
            if len(present) and numbers.notna().all():
                s = df[col] = pd.to_numeric(s.astype(str).str.strip().where(s.notna()), errors="coerce")
            elif numbers.notna().sum() * 2 > len(present):
                rows = np.flatnonzero((s.notna() & pd.to_numeric(s.astype(str).str.strip(), errors="coerce").isna()).to_numpy())
                listing = ", ".join(f"{s.iloc[i]!r} ({where(i)})" for i in rows[:5])
                raise TrainwiseError(
                    f"{source}: column '{col}' holds numbers except in {len(rows)} row(s): {listing}"
                    + (", ..." if len(rows) > 5 else "") + after,
                    hint=f"fix those cells; if they mark missing values, {fix}")
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            if pd.api.types.is_complex_dtype(s):
                raise TrainwiseError(f"{source}: column '{col}' holds complex numbers", hint="give real numbers")
            v = s.to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(~np.isnan(v) & ~(np.abs(v) <= _FLOAT32_MAX))
            if len(bad):
                listing = ", ".join(f"{v[i]:g} ({where(i)})" for i in bad[:5])
                raise TrainwiseError(
                    f"{source}: column '{col}' holds {len(bad)} infinite or too large number(s) (beyond ±3.4e38, float32's "
                    f"range): {listing}" + (", ..." if len(bad) > 5 else "") + after,
                    hint="replace them with finite numbers, or " + ("empty those cells and choose --missing drop or median"
                                                                   if csv else "NaN and choose missing='drop' or 'median'"))
    return df


def _csv(path: Path, target: str | None, missing: str, na_values: str = NA_VALUES, roles: ColumnRoles | None = None) -> RawData:
    df = read_table(path, na_values)
    if target is None:
        raise TrainwiseError(f"'{path}' is a CSV file but no target column was given; columns: {', '.join(map(str, df.columns))}",
                             hint="pass --target COLUMN (target: COLUMN in a config file)")
    return _table(df, str(path), target, missing, roles)


def from_table(df: pd.DataFrame, y=None, *, target: str | None = None, missing: str = "error",
               roles: ColumnRoles | None = None, name: str = "DataFrame") -> RawData:
    """A DataFrame as a table, as if read from a CSV file (text columns encoded, the column rules applied, a
    tabular model by default): its ``target`` column, or the features with their targets ``y`` (a Series keeps
    its name)."""
    pd = pandas()
    names = [str(c) for c in df.columns]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise TrainwiseError(f"{name}: column name(s) {', '.join(map(repr, twice))} appear more than once",
                             hint="give every column its own name (df.columns = [...])")
    df = check_table(df.set_axis(names, axis=1), name)  # rows named by the DataFrame's own index
    soft, note = None, None
    if y is not None and not is_frame(y) and getattr(y, "ndim", 1) == 2 and y.shape[1] > 1 and len(y) == len(df):
        values = _array(y, "y", name)  # rows of one target per class, or several 0/1 label columns (as from_arrays reads them)
        if _multi_hot(values):
            y = pd.DataFrame(values, columns=[f"label_{j}" for j in range(values.shape[1])])
        else:
            y, note, soft = _class_targets(values, name)
    if is_frame(y) and y.shape[1] > 1:  # several target columns (labels, or values)
        if len(y) != len(df):
            raise TrainwiseError(f"{name}: y has {len(y)} rows but the DataFrame has {len(df)}", hint="give one target row per row")
        clash = [str(c) for c in y.columns if str(c) in df.columns]
        if clash or target is not None:
            raise TrainwiseError(f"{name}: the target columns {clash or list(y.columns)} are also given as features or as target=",
                                 hint="give the targets once: as y, or as columns named by target='a,b'")
        target, df = ",".join(str(c) for c in y.columns), pd.concat([df, y.set_axis(df.index).rename(columns=str)], axis=1)
        y = None
    if y is not None:
        if target is not None:
            raise TrainwiseError(f"fit(DataFrame, y, target='{target}'): the target is given twice",
                                 hint="give y, or name the target column of the DataFrame with target=, not both")
        values = _array(y, "y", name)
        if values.ndim != 1 or len(values) != len(df):
            raise TrainwiseError(f"{name}: y has shape {values.shape} but the DataFrame has {len(df)} rows",
                                 hint="give one target per row of the DataFrame (a 1-D array or a Series)")
        target = str(getattr(y, "name", None) or "y")
        if target in df.columns:
            raise TrainwiseError(f"{name}: y is named '{target}', which is also a column of the DataFrame",
                                 hint=f"rename y, or drop column '{target}' from the features")
        df = df.assign(**{target: values})  # by position: y's own index, if any, is not aligned
    if target is None:
        raise TrainwiseError(f"fit(DataFrame) without a target; columns: {', '.join(df.columns)}",
                             hint="name the target column, fit(df, target='COLUMN'), or give it: fit(features, y)")
    raw = _table(df.reset_index(drop=True), name, target, missing, roles, soft=soft)
    raw.notes[:0] = [note] if note else []
    return raw


def _table(df: pd.DataFrame, path: str, target: str, missing: str, roles: ColumnRoles | None, *,
           soft: np.ndarray | None = None) -> RawData:
    """A table with its target column(s): the features after the column rules, the targets, gaps handled."""
    pd = pandas()
    # several comma-separated target columns: multi-output regression (a column whose name has a comma is one target)
    targets = [target] if target in df.columns else [t.strip() for t in target.split(",") if t.strip()]
    for t in targets:
        if t not in df.columns:
            check_choice(f"target column in '{path}'", t, [str(c) for c in df.columns])
    if len(set(targets)) != len(targets):
        raise TrainwiseError(f"--target {target} names a column twice", hint="name each target column once")
    if len(df.columns) < len(targets) + 1:
        raise TrainwiseError(f"'{path}' has no feature columns besides the target '{target}'", hint="add feature columns")
    if len(df) == 0:
        raise TrainwiseError(f"'{path}' has a header but no data rows", hint="give a file with rows of data")
    features, extra = apply_roles(df.drop(columns=targets), roles or ColumnRoles(), source=path, target=targets)
    y = df[targets[0]].to_numpy() if len(targets) == 1 else df[targets].to_numpy()
    raw = RawData(features, y, path, target_name=",".join(targets), categorical=tuple((roles or ColumnRoles()).categorical),
                  soft=soft, **extra)
    df = pd.concat([features, df[targets]], axis=1)  # what is checked for gaps below: features and targets only
    counts = df.isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        listing = ", ".join(f"'{c}' ({n})" for c, n in counts.items())
        if missing == "error":
            raise TrainwiseError(f"'{path}' has missing values in columns {listing} (empty cells or --na-values markers)",
                                 hint="pass --missing drop to drop those rows, or --missing median to fill features with train-split medians "
                                      "(most frequent value for text)")
        # rows without a target can never be used; with 'drop' rows missing any feature go too
        keep = df[targets].notna().all(axis=1) if missing == "median" else df.notna().all(axis=1)
        raw.X, raw.y = raw.X[keep.to_numpy()].reset_index(drop=True), raw.y[keep.to_numpy()]
        raw.groups = raw.groups[keep.to_numpy()] if raw.groups is not None else None
        raw.times = raw.times[keep.to_numpy()] if raw.times is not None else None
        raw.weights = raw.weights[keep.to_numpy()] if raw.weights is not None else None
        raw.soft = raw.soft[keep.to_numpy()] if raw.soft is not None else None
        raw.dropped_rows = int((~keep).sum())
        raw.notes.append(f"missing values in {listing}: " + (f"dropped {raw.dropped_rows} rows" if missing == "drop" else
                                                               f"filled with train-split medians ({raw.dropped_rows} rows without a target dropped)"))
        if len(raw.y) == 0:
            raise TrainwiseError(f"'{path}': no rows left after dropping rows with missing values", hint="use --missing median")
        empty = [c for c in raw.X.columns if raw.X[c].isna().all()]
        if empty:
            raise TrainwiseError(f"'{path}': column(s) {', '.join(map(repr, empty))} hold no values at all",
                                 hint="drop those columns from the file")
    return raw


def _split_probabilities(parts: dict[str, RawData]) -> np.ndarray | None:
    """The class probabilities of split files, one row per row of them all (None: no file holds probabilities); a
    file of labels among them has its labels as one-hot rows (only the training rows' are trained on)."""
    first = next((r.soft for r in parts.values() if r.soft is not None), None)
    if first is None:
        return None
    k, rows = first.shape[1], []
    for name, r in parts.items():
        flag = "--data" if name == "train" else f"--{name}-data"
        if r.soft is not None and r.soft.shape[1] != k:
            raise TrainwiseError(f"{flag} '{r.name}' holds probabilities of {r.soft.shape[1]} classes, another split file of {k}",
                                 hint="give every split file the same class columns")
        if r.soft is None:
            labels = np.asarray(r.y)
            if not np.issubdtype(labels.dtype, np.integer) or len(labels) and (labels.min() < 0 or labels.max() >= k):
                raise TrainwiseError(f"{flag} '{r.name}' holds labels that are not class indices 0..{k - 1}, while another split "
                                     f"file holds class probabilities of {k} classes",
                                     hint="give every split file probabilities, or class indices 0..K-1")
        rows.append(r.soft if r.soft is not None else np.eye(k, dtype=np.float32)[np.asarray(r.y)])
    return np.concatenate(rows)


def load_split_files(data: str, val_data: str | None, test_data: str | None, **options) -> RawData:
    """``data`` with separate validation and/or test files (``--val-data``, ``--test-data``): one `RawData` whose
    given splits are the files. The files must have the same columns (tables) or feature shape (arrays); without
    a test file, `prepare` carves the test split out of ``data``'s rows (without a validation file, the
    validation split), by the configured fractions."""
    pd = pandas()
    parts = {"train": load_source(data, **options)}
    for name, path in (("val", val_data), ("test", test_data)):
        if path is not None:
            parts[name] = load_source(path, **options)
    first = parts["train"]
    for name, raw in parts.items():
        if name == "train":
            continue
        if is_frame(first.X) != is_frame(raw.X) or (
                is_frame(first.X) and list(first.X.columns) != list(raw.X.columns)) or (
                not is_frame(first.X) and first.X.shape[1:] != raw.X.shape[1:]):
            have = list(raw.X.columns) if is_frame(raw.X) else raw.X.shape[1:]
            want = list(first.X.columns) if is_frame(first.X) else first.X.shape[1:]
            raise TrainwiseError(f"--{name}-data '{raw.name}' has features {have}, the data file '{first.name}' has {want}",
                                 hint=f"give a {name} file with the same columns as the training file")
    bounds = np.cumsum([0] + [len(r) for r in parts.values()])
    X = pd.concat([r.X for r in parts.values()], ignore_index=True) if is_frame(first.X) else \
        np.concatenate([r.X for r in parts.values()])
    y = np.concatenate([np.asarray(r.y, dtype=object) if r.y.dtype == object else r.y for r in parts.values()])
    raw = RawData(X, y, first.name, task=first.task, class_names=first.class_names, target_name=first.target_name,
                  notes=[n for r in parts.values() for n in r.notes], categorical=first.categorical,
                  dropped_rows=sum(r.dropped_rows for r in parts.values()),
                  weights=np.concatenate([r.weights for r in parts.values()]) if first.weights is not None else None,
                  soft=_split_probabilities(parts))
    raw.given_splits = {name: np.arange(bounds[i], bounds[i + 1]) for i, name in enumerate(parts)}
    raw.carve_test = "test" not in parts
    raw.notes.append("splits from files: " + ", ".join(f"{k} {r.name} ({len(r)} rows)" for k, r in parts.items()))
    return raw
