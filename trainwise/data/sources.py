"""Data sources: built-in sets, .npz and .csv files, and in-memory arrays. Each yields a `RawData`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import TrainwiseError, check_choice
from .images import load_idx_set, load_image_folder
from .raw import RawData

__all__ = ["RawData", "BUILTINS", "load_source", "from_arrays"]

# name -> (sklearn loader, task)
_SKLEARN = {
    "digits": ("load_digits", "classification"),
    "breast-cancer": ("load_breast_cancer", "classification"),
    "wine": ("load_wine", "classification"),
    "iris": ("load_iris", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}
BUILTINS = (*_SKLEARN, "toy-regression", "fashion-mnist", "mnist")


def load_source(data: str, *, target: str | None = None, missing: str = "error", seed: int = 0,
                data_dir: str | None = None, image_size=None, channels: str = "auto") -> RawData:
    """Load a built-in data set by name, a .csv / .npz file, or a folder of images (one subfolder per class)."""
    if data in _SKLEARN:
        return _sklearn(data)
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
        return _csv(path, target, missing) if path.suffix.lower() == ".csv" else _npz(path)
    check_choice("data set", data, BUILTINS)  # raises with a suggestion
    raise AssertionError("unreachable")


def _sklearn(name: str) -> RawData:
    import sklearn.datasets  # scikit-learn's loaders are slow to import: only for a built-in set

    loader, task = _SKLEARN[name]
    bunch = getattr(sklearn.datasets, loader)()
    names = [str(n) for n in bunch.target_names] if task == "classification" else None
    return RawData(bunch.data.astype(np.float32), bunch.target, name, task, class_names=names)


def toy_regression(seed: int = 0) -> RawData:
    """The lecture's toy regression: x = -3, -2.85, ..., 2.85 (40 points), y = x^2 + x * N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(-3, 3, 0.15)
    y = x**2 + x * torch.normal(0.0, 1.0, (len(x),), generator=g)
    return RawData(x[:, None].numpy(), y.numpy(), "toy-regression", "regression")


def _npz(path: Path) -> RawData:
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise TrainwiseError(f"cannot read '{path}' as .npz: {e}", hint="save it with numpy.savez(path, X=..., y=...)") from None
    keys = set(npz.files)
    if {"X", "y"} <= keys:
        return from_arrays(npz["X"], npz["y"], name=str(path))
    split_keys = [s for s in ("train", "val", "test") if {f"X_{s}", f"y_{s}"} <= keys]
    if "train" not in split_keys or "val" not in split_keys:
        raise TrainwiseError(
            f"'{path}' has keys {sorted(keys)}; expected X and y, or pre-split X_train, y_train, X_val, y_val [, X_test, y_test]",
            hint="save it with numpy.savez(path, X=features, y=targets)")
    Xs = [npz[f"X_{s}"] for s in split_keys]
    ys = [npz[f"y_{s}"] for s in split_keys]
    for s, X, y in zip(split_keys, Xs, ys):
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


def from_arrays(X, y, *, name: str = "arrays") -> RawData:
    """Wrap numpy arrays or tensors (features first axis = rows) as RawData, checking they fit together."""
    X = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
    y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    if X.ndim < 2:
        X = X[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if len(X) != len(y):
        raise TrainwiseError(f"{name}: X has {len(X)} rows but y has {len(y)}", hint="give one target per row of X")
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise TrainwiseError(f"{name}: X has non-numeric dtype {X.dtype}",
                             hint="encode features as numbers, or use a .csv file, which one-hot encodes text columns")
    bad = ~np.isfinite(X.astype(np.float64, copy=False)).reshape(len(X), -1).all(axis=1)
    if bad.any():
        raise TrainwiseError(f"{name}: {int(bad.sum())} rows of X hold NaN or infinite values",
                             hint="clean the array, or save it as .csv and use --missing drop|median")
    return RawData(X.astype(np.float32, copy=False), y, name)


def _csv(path: Path, target: str | None, missing: str) -> RawData:
    try:
        df = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001
        raise TrainwiseError(f"cannot read '{path}' as CSV: {e}", hint="check the file is comma-separated with a header row") from None
    if target is None:
        raise TrainwiseError(f"'{path}' is a CSV file but no target column was given; columns: {', '.join(map(str, df.columns))}",
                             hint="pass --target COLUMN (target: COLUMN in a config file)")
    if target not in df.columns:
        check_choice(f"target column in '{path}'", target, [str(c) for c in df.columns])
    if len(df.columns) < 2:
        raise TrainwiseError(f"'{path}' has no feature columns besides the target '{target}'", hint="add feature columns")
    raw = RawData(df.drop(columns=[target]), df[target].to_numpy(), str(path), target_name=target)
    counts = df.isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        listing = ", ".join(f"'{c}' ({n})" for c, n in counts.items())
        if missing == "error":
            raise TrainwiseError(f"'{path}' has missing values in columns {listing}",
                                 hint="pass --missing drop to drop those rows, or --missing median to fill features with train-split medians "
                                      "(most frequent value for text)")
        # rows without a target can never be used; with 'drop' rows missing any feature go too
        keep = df[target].notna() if missing == "median" else df.notna().all(axis=1)
        raw.X, raw.y = raw.X[keep.to_numpy()].reset_index(drop=True), raw.y[keep.to_numpy()]
        raw.dropped_rows = int((~keep).sum())
        raw.notes.append(f"missing values in {listing}: " + (f"dropped {raw.dropped_rows} rows" if missing == "drop" else
                                                               f"filled with train-split medians ({raw.dropped_rows} rows without a target dropped)"))
        if len(raw.y) == 0:
            raise TrainwiseError(f"'{path}': no rows left after dropping rows with missing values", hint="use --missing median")
    return raw
