"""trainwise defaults vs scikit-learn's MLPClassifier/MLPRegressor on the same splits and preprocessing.

Run: .venv/bin/python benchmarks/vs_sklearn.py [--seeds 0 1 2]
Both models see identical standardized train/val/test arrays (trainwise's split, seed s). sklearn's MLP
(its own defaults) is fit twice: on the same training split as trainwise ("sk-train"), and on train+val
("sk-train+val": more rows than trainwise trains on, since trainwise spends val on early stopping).
Test metrics are printed per data set and seed.
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
    print(f"{'data':<14}{'seed':>5}{'metric':>10}{'trainwise':>11}{'sk-train':>10}{'sk-train+val':>14}")
    for name in args.data:
        for seed in args.seeds:
            prep = prepare(load_source(name, seed=seed), seed=seed)
            (Xtr, ytr), (Xva, yva), (Xte, yte) = (prep.arrays[k] for k in ("train", "val", "test"))
            with tempfile.TemporaryDirectory() as d:
                res = trainwise.fit(name, seed=seed, quiet=True, run_dir=d + "/run")
            X, y = np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva])
            # (regression: y standardized like ours, sklearn's best case)
            Model, score, metric = ((MLPClassifier, accuracy_score, "accuracy") if prep.task == "classification"
                                    else (MLPRegressor, r2_score, "r2"))
            same = score(yte, Model(random_state=seed).fit(Xtr, ytr).predict(Xte))
            more = score(yte, Model(random_state=seed).fit(X, y).predict(Xte))
            ours = res.test[f"test/{metric}"]
            print(f"{name:<14}{seed:>5}{metric:>10}{ours:>11.4f}{same:>10.4f}{more:>14.4f}")


if __name__ == "__main__":
    main()
