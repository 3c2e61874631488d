"""Parallel search: `trainwise tune --workers 2` (two worker processes on one Optuna study in a journal file) against
one process running every trial, measured in the same run.

Run: .venv/bin/python benchmarks/workers.py [--trials 16] [--repeats 2] [--epochs 60] [--pruners median none]
         [--model mlp:64]
Workload: digits, ``mlp:64`` (or ``--model``), batch 32 (a small model: one process uses about one core), Optuna TPE (with the
median pruner, and with ``--pruner none``: every trial trains until early stopping) over lr (1e-4..1e-1) x weight decay
(1e-6..1e-2), ``--trials`` trials, no retraining of the best (the search only). Each way runs as the command
line does (a fresh process, start-up included); the two alternate ``--repeats`` times. Printed: the median
wall time of each, the ratio (median of the per-repeat ratios, [min-max]), and for the workers' study how
many trials it holds, how many distinct parameter sets, and how many ended failed or still running (lost);
and the epochs each way trained in all (the median pruner, comparing each trial with those finished before
it, cuts more trials short when they run one after another than when two run at once).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

SPACE = "lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}\nweight_decay: {type: loguniform, low: 1.0e-6, high: 1.0e-2}\n"


def run(tmp: str, name: str, trials: int, epochs: int, workers: int, pruner: str, model: str = "mlp:64") -> float:
    space = os.path.join(tmp, "space.yaml")
    with open(space, "w") as f:
        f.write(SPACE)
    cmd = [sys.executable, "-m", "trainwise", "tune", "--space", space, "--method", "optuna", "--trials", str(trials),
           "--data", "digits", "--model", model, "--epochs", str(epochs), "--batch-size", "32", "--no-retrain",
           "--run-dir", os.path.join(tmp, name)]
    cmd += ["--pruner", pruner] + (["--workers", str(workers)] if workers > 1 else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def epochs_trained(out: str) -> int:
    import csv

    with open(os.path.join(out, "results.csv")) as f:
        return sum(int(float(r["epochs"] or 0)) for r in csv.DictReader(f))


def study_counts(path: str) -> tuple[int, int, int]:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="search", storage=optuna.storages.JournalStorage(JournalFileBackend(path)))
    distinct = len({tuple(sorted(t.params.items())) for t in study.trials})
    return len(study.trials), distinct, sum(t.state.name in ("FAIL", "RUNNING") for t in study.trials)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--pruners", nargs="+", default=["median", "none"], choices=["median", "none"])
    ap.add_argument("--model", default="mlp:64", help="the trials' model (mlp:256,128: trials ~4x as long)")
    args = ap.parse_args()
    for pruner in args.pruners:
        one, two = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.repeats):
                one.append(run(tmp, f"one-{i}", args.trials, args.epochs, 1, pruner, args.model))
                two.append(run(tmp, f"two-{i}", args.trials, args.epochs, 2, pruner, args.model))
                n, distinct, lost = study_counts(os.path.join(tmp, f"two-{i}", "study.journal"))
                e1, e2 = epochs_trained(os.path.join(tmp, f"one-{i}")), epochs_trained(os.path.join(tmp, f"two-{i}"))
                print(f"--pruner {pruner}, repeat {i + 1}: one process {one[-1]:.1f}s ({e1} epochs trained), 2 workers "
                      f"{two[-1]:.1f}s ({e2} epochs); the workers' study: {n} trials, {distinct} distinct, {lost} failed or running",
                      flush=True)
        ratios = [t / o for t, o in zip(two, one)]
        print(f"{args.model}, --pruner {pruner}, {args.trials} trials: one process {statistics.median(one):.1f}s, --workers 2 "
              f"{statistics.median(two):.1f}s: {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
              "of one process's time (goal <= 0.6x)")


if __name__ == "__main__":
    main()
