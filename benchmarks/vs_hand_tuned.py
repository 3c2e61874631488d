"""trainwise's default path vs a careful practitioner's hand-tuned PyTorch grid, on data trainwise was not tuned on.

What it measures: the test metric (accuracy; R² for regression) and wall time of three ways to train the same
fixed model for the same epoch budget, on the same rows:

  (a) fit    `trainwise fit --data SPLIT.npz --model SPEC --epochs N --seed S --quiet --run-dir DIR`, a subprocess given
             only the data, the model and the epoch budget (every other setting is trainwise's default, see the
             README's "Defaults"); summary.json's test metric. `--fit-args "..."` adds options: the defaults were chosen
             by running (a) with candidate settings against the recorded (c) (README: Results on data nobody tuned for).
  (b) auto   `trainwise auto ... --model SPEC --epochs N --seed S --budget-minutes M`: the same model (auto's search may
             also try its roomier variants, see `capacity_choices`) and the same epoch budget *per trial*; auto spends
             M minutes (per problem, below) on as many trials as fit, so it trains far more epochs than (a) or (c) in
             total: "the same budget" is the per-run epoch cap, and the time is its own. Test metric of its final model
             (by default an ensemble of its 5 best trials). After its first trial auto tries (c)'s three learning
             rates, with dropout and weight decay 0, at its own batch size, schedule and early stopping.
  (c) hand   the best of a hand-written grid, written plainly below (`hand_grid`): Adam with lr in {1e-3, 3e-3, 1e-2} x
             batch size in {32, 128}, each run for all N epochs from the same seeded init (torch.manual_seed(seed)) with
             shuffled batches from a torch.Generator seeded by the seed; features standardized with train-split
             statistics (images: one mean and std over all training pixels), a regression target standardized too
             (R² in original units); CrossEntropy / BCEWithLogits (one logit) / MSE; no dropout; validation metric every
             epoch, the best epoch's weights kept (ties broken by the lower validation loss); the grid point with the
             best validation metric (same tie-break) is tested once. Its wall time is the whole grid (6 runs).

Data: the built-in sets digits, breast-cancer, wine, iris, diabetes (scikit-learn's loaders, as trainwise loads them) and
four sets this script generates with fixed generator seeds (the rows are the same on every run; only splits and inits
change with --seeds):

  noisy20     make_classification: 4,000 rows, 40 features (30 informative, 5 redundant), 20 classes, 10% labels flipped
  shapes      16x16 single-channel images, 6 classes (ring, square outline, plus, X, horizontal / vertical stripes), drawn
              at random positions and sizes with random contrast and pixel noise; 3,000 rows; trained as mlp:128,64 and
              as cnn:16,32 (trainwise's built-in CNN; the hand loop builds the same recipe with trainwise.models)
  imbalanced  make_classification: 5,000 rows, 20 features, binary with ~7% positives, 2% labels flipped
  friedman    make_friedman1: 3,000 rows, 10 features (5 irrelevant), noise sd 1.5 (best possible R² ~0.91)

Splits: for each problem and seed, one 70/15/15 split made here with that seed (stratified by class; regression by target
decile), saved as a pre-split .npz (X_train, y_train, X_val, y_val, X_test, y_test) in a temporary folder, so every
method sees exactly the same rows. Epoch budgets per problem are in PROBLEMS (scaled by --epochs-scale).

Threads: torch.set_num_threads(--threads) in this process for (c) and OMP_NUM_THREADS / MKL_NUM_THREADS=--threads for the
trainwise subprocesses (trainwise itself leaves torch's thread count alone), so all methods compute on the same number of
threads (default 1). Wall times of (a) and (b) are whole processes: they include ~3-5 s of start-up (imports) and the
run directory (plots, report, checkpoints every epoch); "(a) fit s" is the time trainwise reports for the fit itself.
On a shared machine the wall times are noisy: compare them within one run, as ratios.

Goal: (a) within 1 accuracy point (0.01 R²) of (c) on every problem, and (b) at least (c). Where both reach the data's
ceiling (breast-cancer, wine, iris: a seed turns on one or two test rows) 3 seeds cannot tell the methods apart: run
those rows on more, fresh seeds (e.g. --seeds $(seq 10 29) --methods b c); from 4 seeds on the table gives the
paired gap's standard error and on how many seeds the method is ahead / behind.

Run (full, on 2 shared CPU cores: 17 min for (a)+(c), then 26 min for (b), merged into one table):
  .venv/bin/python benchmarks/vs_hand_tuned.py --methods a c
  .venv/bin/python benchmarks/vs_hand_tuned.py --methods b --merge
Quick (30-60 s; written elsewhere, so the full results stay):
  .venv/bin/python benchmarks/vs_hand_tuned.py --seeds 0 --epochs-scale 0.1 --problems iris wine shapes --methods a c --json /tmp/q.json
To measure one fixed version while the tree changes, put a copy of it first on the path (the subprocesses inherit it):
  git archive HEAD trainwise | tar -x -C /tmp/tw-head && PYTHONPATH=/tmp/tw-head .venv/bin/python benchmarks/vs_hand_tuned.py
Raw per-seed results (with each (a) run's stop reason and best epoch and each grid point's best epoch) go to --json;
--runs-dir keeps the (a)/(b) run directories for inspection (default: a temporary folder, removed at the end).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainwise.models import build_model, resolve_model

GEN_SEED = 20_241_121  # generates the synthetic sets: fixed, so every run sees the same rows
LRS = (1e-3, 3e-3, 1e-2)
BATCH_SIZES = (32, 128)
SPLIT = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Problem:
    name: str            # row name; --problems takes it or the data name
    data: str            # data set (several rows may share one: shapes)
    model: str           # trainwise model spec, the same for every method
    epochs: int          # the epoch budget (trainwise's --epochs; every grid run's length)
    auto_minutes: float  # (b)'s --budget-minutes


PROBLEMS = [
    Problem("digits", "digits", "mlp:128,64", 100, 1.0),
    Problem("breast-cancer", "breast-cancer", "mlp:128,64", 100, 0.5),
    Problem("wine", "wine", "mlp:128,64", 200, 0.5),
    Problem("iris", "iris", "mlp:128,64", 200, 0.5),
    Problem("diabetes", "diabetes", "mlp:128,64", 200, 0.5),
    Problem("noisy20", "noisy20", "mlp:128,64", 100, 1.5),
    Problem("shapes-mlp", "shapes", "mlp:128,64", 50, 1.5),
    Problem("shapes-cnn", "shapes", "cnn:16,32", 40, 2.5),
    Problem("imbalanced", "imbalanced", "mlp:128,64", 60, 1.5),
    Problem("friedman", "friedman", "mlp:128,64", 150, 1.5),
]
REGRESSION = {"diabetes", "friedman"}


# --- data -------------------------------------------------------------------------------------------------------
def load(data: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32; images (N, 1, H, W)) and targets (int64 labels, or float32 values)."""
    import sklearn.datasets as sk

    loaders = {"digits": sk.load_digits, "breast-cancer": sk.load_breast_cancer, "wine": sk.load_wine, "iris": sk.load_iris,
               "diabetes": sk.load_diabetes}
    if data in loaders:
        X, y = loaders[data](return_X_y=True)
    elif data == "noisy20":
        X, y = sk.make_classification(n_samples=4000, n_features=40, n_informative=30, n_redundant=5, n_classes=20,
                                      n_clusters_per_class=1, class_sep=1.5, flip_y=0.10, random_state=np.random.RandomState(GEN_SEED))
    elif data == "imbalanced":
        X, y = sk.make_classification(n_samples=5000, n_features=20, n_informative=6, n_redundant=4, n_classes=2,
                                      n_clusters_per_class=3, weights=[0.93], class_sep=0.8, flip_y=0.02,
                                      random_state=np.random.RandomState(GEN_SEED + 1))
    elif data == "friedman":
        X, y = sk.make_friedman1(n_samples=3000, n_features=10, noise=1.5, random_state=np.random.RandomState(GEN_SEED + 2))
    elif data == "shapes":
        X, y = shapes(3000, np.random.default_rng(GEN_SEED + 3))
    else:
        raise ValueError(f"unknown data set {data!r}")
    return X.astype(np.float32), (y.astype(np.float32) if data in REGRESSION else y.astype(np.int64))


def shapes(n: int, rng: np.random.Generator, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Images of 6 classes (ring, square outline, plus, X, horizontal stripes, vertical stripes) at a random position
    and size, with random contrast, a random background level and Gaussian pixel noise: what a pattern is matters,
    not where it is, which a CNN's shared filters capture and an MLP has to learn at every position."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    X = np.empty((n, 1, size, size), np.float32)
    y = rng.integers(0, 6, n)
    for i, label in enumerate(y):
        r = rng.uniform(2.5, 5.5)  # half-size in pixels
        cy, cx = rng.uniform(r - 0.5, size - 0.5 - r, 2)
        dy, dx = yy - cy, xx - cx
        box = np.maximum(np.abs(dy), np.abs(dx))
        if label == 0:
            mask = np.abs(np.hypot(dy, dx) - 0.8 * r) < 0.8
        elif label == 1:
            mask = (box <= r) & (box > r - 1.2)
        elif label == 2:
            mask = ((np.abs(dy) < 0.8) & (np.abs(dx) <= r)) | ((np.abs(dx) < 0.8) & (np.abs(dy) <= r))
        elif label == 3:
            mask = (np.abs(np.abs(dy) - np.abs(dx)) < 0.9) & (box <= r)
        else:  # stripes of period 2 inside the box, phase random
            coord = yy if label == 4 else xx
            mask = (box <= r) & ((np.floor(coord) + rng.integers(0, 2)) % 2 == 0)
        image = rng.uniform(0.0, 0.3) + rng.uniform(0.5, 0.9) * mask + rng.normal(0.0, 0.25, (size, size))
        X[i, 0] = image
    return X, y


def make_split(X: np.ndarray, y: np.ndarray, seed: int, regression: bool) -> dict[str, np.ndarray]:
    """70/15/15, stratified by class (regression: by target decile), shuffled with ``seed``."""
    from sklearn.model_selection import train_test_split

    strata = np.digitize(y, np.quantile(y, np.linspace(0.1, 0.9, 9))) if regression else y
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, train_size=SPLIT[0], random_state=seed, stratify=strata)
    val, test = train_test_split(rest, train_size=SPLIT[1] / (SPLIT[1] + SPLIT[2]), random_state=seed, stratify=strata[rest])
    return {f"{a}_{s}": arr[rows] for s, rows in (("train", train), ("val", val), ("test", test)) for a, arr in (("X", X), ("y", y))}


# --- (c) the hand-written grid ------------------------------------------------------------------------------------
def hand_grid(split: dict[str, np.ndarray], spec: str, epochs: int, seed: int, regression: bool) -> dict:
    """Adam over LRS x BATCH_SIZES, each for ``epochs`` epochs keeping its best-validation weights; the best grid point
    is tested once. Returns the test metric, the chosen point and every point's validation result."""
    Xtr, ytr = split["X_train"], split["y_train"]
    axes = (0, 2, 3) if Xtr.ndim == 4 else 0  # images: one statistic over all training pixels; tables: per feature
    mean, std = Xtr.mean(axis=axes, keepdims=True), Xtr.std(axis=axes, keepdims=True)
    std[std < 1e-12] = 1.0
    y_mean, y_std = (float(ytr.mean()), float(ytr.std())) if regression else (0.0, 1.0)
    X = {s: torch.from_numpy((split[f"X_{s}"] - mean) / std).float() for s in ("train", "val", "test")}
    n_classes = int(ytr.max()) + 1
    binary = not regression and n_classes == 2
    if regression or binary:
        y = {s: torch.from_numpy((split[f"y_{s}"] - y_mean) / y_std).float() for s in ("train", "val", "test")}
        loss_fn = nn.MSELoss() if regression else nn.BCEWithLogitsLoss()
        out_size = 1
    else:
        y = {s: torch.from_numpy(split[f"y_{s}"]).long() for s in ("train", "val", "test")}
        loss_fn, out_size = nn.CrossEntropyLoss(), n_classes
    recipe = resolve_model(spec, tuple(Xtr.shape[1:]), out_size, dropout=0.0)

    def forward(model, x):
        out = model(x)
        return out[:, 0] if out_size == 1 else out

    @torch.no_grad()
    def evaluate(model, s: str) -> tuple[float, float]:
        """(metric, loss) on split s: accuracy, or R² (the same in standardized and original units)."""
        model.eval()
        out = forward(model, X[s])
        loss = loss_fn(out, y[s]).item()
        if regression:
            metric = 1.0 - ((out - y[s]) ** 2).sum().item() / ((y[s] - y[s].mean()) ** 2).sum().item()
        else:
            metric = ((out > 0).float() == y[s]).float().mean().item() if binary else (out.argmax(1) == y[s]).float().mean().item()
        model.train()
        return metric, loss

    n = len(X["train"])
    points = []
    for lr in LRS:
        for batch_size in BATCH_SIZES:
            torch.manual_seed(seed)
            model = build_model(recipe)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            g = torch.Generator().manual_seed(seed)
            best = (-float("inf"), float("inf"))  # (val metric, val loss)
            best_state, best_epoch, curve = None, 0, []
            model.train()
            for epoch in range(1, epochs + 1):
                for rows in torch.randperm(n, generator=g).split(batch_size):
                    loss = loss_fn(forward(model, X["train"][rows]), y["train"][rows])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                metric, val_loss = evaluate(model, "val")
                curve.append(round(metric, 5))
                if metric > best[0] or (metric == best[0] and val_loss < best[1]):
                    best, best_state, best_epoch = (metric, val_loss), copy.deepcopy(model.state_dict()), epoch
            model.load_state_dict(best_state)
            points.append({"lr": lr, "batch_size": batch_size, "best_epoch": best_epoch, "val": best[0], "val_loss": best[1],
                           "val_curve": curve, "model": model})
    winner = max(points, key=lambda p: (p["val"], -p["val_loss"]))
    test, _ = evaluate(winner["model"], "test")
    for p in points:
        del p["model"]
    return {"test": test, "lr": winner["lr"], "batch_size": winner["batch_size"], "best_epoch": winner["best_epoch"],
            "val": winner["val"], "grid": points}


# --- (a) and (b): trainwise as a subprocess -------------------------------------------------------------------------
def trainwise_cmd() -> list[str]:
    script = Path(sys.executable).with_name("trainwise")
    return [str(script)] if script.exists() else [sys.executable, "-m", "trainwise"]


def run_trainwise(args: list[str], threads: int, summary: Path) -> tuple[dict, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(trainwise_cmd() + args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"trainwise {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(summary.read_text()), wall


def method_fit(npz: Path, p: Problem, epochs: int, seed: int, threads: int, run_dir: Path, key: str,
               fit_args: tuple[str, ...] = ()) -> dict:
    summary, wall = run_trainwise(["fit", "--data", str(npz), "--model", p.model, "--epochs", str(epochs), "--seed", str(seed),
                                   "--quiet", "--run-dir", str(run_dir), *fit_args], threads, run_dir / "summary.json")
    return {"test": summary["test"][f"test/{key}"], "wall_s": wall, "fit_s": summary["wall_time_s"], "run_dir": str(run_dir),
            "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"], "stop_reason": summary["stop_reason"],
            "best": summary["best"]}


def method_auto(npz: Path, p: Problem, epochs: int, seed: int, threads: int, out: Path, key: str, minutes: float,
                auto_args: tuple[str, ...] = ()) -> dict:
    summary, wall = run_trainwise(["auto", "--data", str(npz), "--model", p.model, "--epochs", str(epochs), "--seed", str(seed),
                                   "--budget-minutes", f"{minutes:g}", "--run-dir", str(out), *auto_args], threads,
                                  out / "summary.json")
    if summary.get("status") != "done":
        return {"test": None, "wall_s": wall, "run_dir": str(out), "status": summary.get("status"), "reason": summary.get("reason")}
    search = next(s for s in summary["stages"] if s["stage"] == "search")
    return {"test": summary["test"][f"test/{key}"], "wall_s": wall, "run_dir": str(out), "budget_minutes": minutes,
            "best": summary["best"], "trials": search["trials"], "best_val": search["best_value"]}


# --- the table ----------------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def gap(rows: list[dict], rows_c: list[dict]) -> str:
    """Mean over seeds of (method - hand grid), paired by seed; from 4 seeds on also its standard error (the
    seeds' spread / sqrt(seeds)) and on how many seeds the method is ahead / behind: at the ceiling (a few test rows
    decide) a gap within about two standard errors is a tie. (c) computes in float32: differences under 1e-6 are ties."""
    by_seed = {r["seed"]: r["test"] for r in rows}
    diffs = [by_seed[r["seed"]] - r["test"] for r in rows_c if r["seed"] in by_seed]
    if not diffs:
        return "-"
    text = f"{round(statistics.mean(diffs), 4) + 0.0:+.4f}"  # (+ 0.0: no "-0.0000")
    if len(diffs) >= 4:
        se = statistics.stdev(diffs) / len(diffs) ** 0.5
        text += f" ± {se:.4f} ({sum(d > 1e-6 for d in diffs)}/{sum(d < -1e-6 for d in diffs)})"
    return text


def seconds(rows: list[dict], field: str = "wall_s") -> str:
    return f"{statistics.mean(r[field] for r in rows):.1f}" if rows else "-"


def table(results: list[dict]) -> str:
    head = ("| problem | model | epochs | metric | seeds | (a) fit | (b) auto | (c) hand grid | gap (a)-(c) | (b)-(c) [± se (ahead/behind)] "
            "| (a) s | (a) fit s | (b) s | (c) s | (c) winners: lr/batch/best epoch (first 3 seeds) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in PROBLEMS:
        rows = [r for r in results if r["problem"] == p.name]
        if not rows:
            continue
        by = {m: sorted((r for r in rows if r["method"] == m and r["test"] is not None), key=lambda r: r["seed"]) for m in "abc"}
        tests = {m: [r["test"] for r in by[m]] for m in "abc"}
        winners = ", ".join(f"{r['lr']:g}/{r['batch_size']}/{r['best_epoch']}" for r in by["c"][:3]) + (", ..." if len(by["c"]) > 3 else "")
        lines.append(f"| {p.name} | {p.model} | {rows[0]['epochs']} | {rows[0]['metric']} | {len({r['seed'] for r in rows})} "
                     f"| {mean_std(tests['a'])} | {mean_std(tests['b'])} | {mean_std(tests['c'])} | {gap(by['a'], by['c'])} "
                     f"| {gap(by['b'], by['c'])} | {seconds(by['a'])} | {seconds(by['a'], 'fit_s')} | {seconds(by['b'])} "
                     f"| {seconds(by['c'])} | {winners or '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", nargs="+", default=None, help="row or data names (default: all): " + " ".join(p.name for p in PROBLEMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiplies every epoch budget and (b)'s minutes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every method (default 1)")
    ap.add_argument("--json", default="benchmarks/results/vs_hand_tuned.json", help="raw per-seed results")
    ap.add_argument("--merge", action="store_true", help="keep the results already in --json that this run does not redo")
    ap.add_argument("--runs-dir", default=None, help="keep the (a)/(b) run directories here (default: a temporary folder)")
    ap.add_argument("--fit-args", default="", help="extra options for (a), e.g. \"--lr 1e-3 --batch-size 16\": how the "
                                                  "defaults were chosen (README: Results on data nobody tuned for)")
    ap.add_argument("--auto-args", default="", help="extra options for (b), e.g. \"--ensemble 1\"")
    args = ap.parse_args()
    fit_args, auto_args = tuple(shlex.split(args.fit_args)), tuple(shlex.split(args.auto_args))  # quoted values stay whole
    problems = [p for p in PROBLEMS if args.problems is None or p.name in args.problems or p.data in args.problems]
    unknown = set(args.problems or ()) - {p.name for p in PROBLEMS} - {p.data for p in PROBLEMS}
    if unknown:
        ap.error(f"unknown problem(s) {sorted(unknown)}; choose from {[p.name for p in PROBLEMS]}")
    torch.set_num_threads(args.threads)

    json_path = Path(args.json)
    results: list[dict] = []
    earlier_meta: list[dict] = []
    if args.merge and json_path.exists():
        earlier = json.loads(json_path.read_text())
        redo = {(p.name, s, m) for p in problems for s in args.seeds for m in args.methods}
        results = [r for r in earlier["results"] if (r["problem"], r["seed"], r["method"]) not in redo]
        earlier_meta = earlier["meta"] if isinstance(earlier["meta"], list) else [earlier["meta"]]
    with tempfile.TemporaryDirectory(prefix="vs_hand_tuned-") as tmp:
        runs = Path(args.runs_dir) if args.runs_dir else Path(tmp) / "runs"
        data_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for p in problems:
            regression = p.data in REGRESSION
            key = "r2" if regression else "accuracy"
            epochs = max(1, round(p.epochs * args.epochs_scale))
            if p.data not in data_cache:
                data_cache[p.data] = load(p.data)
            X, y = data_cache[p.data]
            for seed in args.seeds:
                split = make_split(X, y, seed, regression)
                npz = Path(tmp) / f"{p.data}-seed{seed}.npz"
                if not npz.exists():
                    np.savez(npz, **split)
                base = {"problem": p.name, "data": p.data, "model": p.model, "epochs": epochs, "seed": seed, "metric": key}
                for m in args.methods:
                    run_dir = runs / f"{p.name}-seed{seed}-{m}"
                    t0 = time.perf_counter()
                    try:
                        if m == "a":
                            out = method_fit(npz, p, epochs, seed, args.threads, run_dir, key, fit_args)
                        elif m == "b":
                            out = method_auto(npz, p, epochs, seed, args.threads, run_dir, key, p.auto_minutes * args.epochs_scale,
                                              auto_args)
                        else:
                            out = hand_grid(split, p.model, epochs, seed, regression)
                            out["wall_s"] = time.perf_counter() - t0
                    except Exception as e:  # noqa: BLE001 - one failed run is reported, the others still count
                        out = {"test": None, "wall_s": time.perf_counter() - t0, "error": f"{type(e).__name__}: {e}"}
                    results.append({**base, "method": m, **out})
                    extra = (out["error"].replace("\n", " ")[-300:] if "error" in out else
                             f"stopped at {out['epochs_run']} (best {out['best_epoch']})" if m == "a" else
                             f"lr {out['lr']:g} batch {out['batch_size']} best epoch {out['best_epoch']}" if m == "c" else
                             f"{out.get('trials')} trials, best {out.get('best')}")
                    test = "failed" if out["test"] is None else f"{out['test']:.4f}"
                    print(f"{p.name:<14} seed {seed} ({m}) test {key} {test}  {out['wall_s']:6.1f}s  {extra}", flush=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    import trainwise

    meta = {"command": " ".join(sys.argv[1:]), "fit_args": args.fit_args, "auto_args": args.auto_args, "threads": args.threads,
            "trainwise": f"{trainwise.__version__} from {Path(trainwise.__file__).parent}", "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    runs_meta = earlier_meta + [meta]  # with --merge: every invocation whose results are in the file
    json_path.write_text(json.dumps({"meta": runs_meta, "results": results}, indent=1))
    print()
    print(table(results))
    print(f"\nraw results: {json_path}; goal: (a) within 0.01 of (c) on every row, (b) >= (c)")


if __name__ == "__main__":
    main()
