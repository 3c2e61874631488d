"""scikit-learn's built-in data sets, read from the files scikit-learn ships.

Digits, iris, wine and breast cancer are read straight from the CSV files inside the installed scikit-learn
package, with scikit-learn's own layout (a header row of counts and class names, the class in the last column):
importing ``sklearn.datasets`` costs about 1 s of start-up (scipy with it), more than the digits main job spends
training. The arrays equal scikit-learn's loaders' (tests/data/test_sources.py). Diabetes (scaled by its
loader) and a scikit-learn whose files moved go through the loaders themselves.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from .raw import RawData

__all__ = ["SKLEARN_SETS", "load_builtin"]

# name -> (scikit-learn loader, task, file in sklearn/datasets/data)
SKLEARN_SETS = {
    "digits": ("load_digits", "classification", "digits.csv.gz"),
    "breast-cancer": ("load_breast_cancer", "classification", "breast_cancer.csv"),
    "wine": ("load_wine", "classification", "wine_data.csv"),
    "iris": ("load_iris", "classification", "iris.csv"),
    "diabetes": ("load_diabetes", "regression", None),
}


def load_builtin(name: str) -> RawData:
    loader, task, file = SKLEARN_SETS[name]
    path = _data_file(file) if file else None
    if path is None:
        import sklearn.datasets  # slow to import: only where the shipped file cannot be read directly

        bunch = getattr(sklearn.datasets, loader)()
        X, y, names = bunch.data, bunch.target, getattr(bunch, "target_names", None)
    elif file.endswith(".gz"):  # digits: 64 pixel columns, then the digit
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",")
        X, y, names = data[:, :-1], data[:, -1].astype(int), np.arange(10)
    else:
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            head = next(rows)
            names = head[2:]
            body = np.array([r for r in rows if r], dtype=np.float64)
        X, y = body[:, :-1], body[:, -1].astype(int)
        assert X.shape == (int(head[0]), int(head[1])), f"{path}: header {head[:2]} but {X.shape}"
    class_names = [str(n) for n in names] if task == "classification" else None
    return RawData(X.astype(np.float32), y, name, task, class_names=class_names)


def _data_file(file: str) -> Path | None:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / file
        if path.is_file():
            return path
    return None
