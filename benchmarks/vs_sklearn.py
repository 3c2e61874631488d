"""trainwise defaults vs scikit-learn's MLPClassifier/MLPRegressor on the same splits and preprocessing.

Run: .venv/bin/python benchmarks/vs_sklearn.py [--seeds 0 1 2]
Both models see identical standardized train/val/test arrays (trainwise's split, seed s); sklearn's MLP is
fit on train+val with its own defaults (it has no separate validation input), trainwise on train with
validation for early stopping. Test metrics are printed per data set and seed.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor

import trainwise
from trainwise.data import load_source, prepare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", nargs="+", default=["digits", "breast-cancer", "wine", "iris", "diabetes"])
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    print(f"{'data':<14}{'seed':>5}{'metric':>10}{'trainwise':>11}{'sklearn':>9}")
    for name in args.data:
        for seed in args.seeds:
            prep = prepare(load_source(name, seed=seed), seed=seed)
            (Xtr, ytr), (Xva, yva), (Xte, yte) = (prep.arrays[k] for k in ("train", "val", "test"))
            with tempfile.TemporaryDirectory() as d:
                res = trainwise.fit(name, seed=seed, quiet=True, run_dir=d + "/run")
            X, y = np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva])
            if prep.task == "classification":
                sk = MLPClassifier(random_state=seed).fit(X, y)
                ours, theirs, metric = res.test["test/accuracy"], accuracy_score(yte, sk.predict(Xte)), "accuracy"
            else:
                sk = MLPRegressor(random_state=seed).fit(X, y)  # y standardized like ours: sklearn's best case
                ours, theirs, metric = res.test["test/r2"], r2_score(yte, sk.predict(Xte)), "r2"
            print(f"{name:<14}{seed:>5}{metric:>10}{ours:>11.4f}{theirs:>9.4f}")


if __name__ == "__main__":
    main()
