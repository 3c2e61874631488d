"""Restarts vectorized (one stacked model) vs one by one, measured in the same run.

Run: .venv/bin/python benchmarks/restarts.py [--ks 4 16 64] [--repeats 3] [--cli] [--memory] [--search]
Workload (the populations issue's): digits, MLP 64-32-10 (``mlp:32``), 20 epochs, batch 32, Adam, the default
dropout (none since issue 14's defaults; it was 0.1) and early stopping; in memory (no run directory), quiet. For each K the two ways alternate
``--repeats`` times; the table gives the median wall time of each, the speed-up (median of the per-repeat
ratios, with their min-max) and the time per member. Both ways give the same results (tests/test_vectorized.py).

``--cli`` adds the command-line case: wall time of ``trainwise fit --data digits --model mlp:32 --epochs 20
--batch-size 32 --restarts 16`` (run directory, every restart's files) against the same without --restarts.
``--search`` adds the search case: `trainwise tune` with 16 random trials over lr (1e-4..1e-1) and weight decay
(1e-6..1e-2) on the same workload, trials stacked (they differ only in per-member values) vs one by one, each
writing its trial folders, no retraining of the best.
``--memory`` adds the peak resident memory of K = 64 stacked vs K = 1 (each in a fresh process).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

OPTIONS = dict(data="digits", model="mlp:32", epochs=20, batch_size=32, quiet=True, checkpoint=False)


def timed_fit(k: int, vectorize: bool, **extra) -> float:
    import trainwise

    t0 = time.perf_counter()
    trainwise.fit(**OPTIONS, restarts=k, vectorize=vectorize, **extra)
    return time.perf_counter() - t0


_FRESH = """
import json, sys, time, trainwise
options, k, vectorize, extra = json.loads(sys.argv[1])
trainwise.fit(**{**options, "epochs": 2}, restarts=2, vectorize=vectorize)  # warm-up, the same way: imports, first calls
t0 = time.perf_counter()
trainwise.fit(**options, restarts=k, vectorize=vectorize, **extra)
print(time.perf_counter() - t0)
"""


def timed_fresh(k: int, vectorize: bool, **extra) -> float:
    """`timed_fit` in a process of its own, after a warm-up fit the same way (2 members, 2 epochs: each way's kernels
    and code paths have run once, as the one-process table's first repeat had them): neither way runs in a process the
    other has used (sixteen runs one by one left the process in a state, the allocator's heap we suspect, that slowed
    the stacked run after them by up to a fifth when both shared one process)."""
    out = subprocess.run([sys.executable, "-c", _FRESH, json.dumps([OPTIONS, k, vectorize, extra])], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def table(ks: list[int], repeats: int, timer=timed_fresh, **extra) -> None:
    print(f"{'K':>4}  {'one by one':>11}  {'vectorized':>11}  {'speed-up':>18}  {'per member (vec)':>16}"
          + (f"   ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else ""))
    for k in ks:
        seq, vec = [], []
        for _ in range(repeats):
            seq.append(timer(k, False, **extra))
            vec.append(timer(k, True, **extra))
        ratios = [s / v for s, v in zip(seq, vec)]
        print(f"{k:>4}  {statistics.median(seq):>10.2f}s  {statistics.median(vec):>10.2f}s  "
              f"{statistics.median(ratios):>6.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]  "
              f"{statistics.median(vec) / k:>15.3f}s", flush=True)


def cli_case(repeats: int) -> None:
    base = [sys.executable, "-m", "trainwise", "fit", "--data", "digits", "--model", "mlp:32", "--epochs", "20",
            "--batch-size", "32", "--quiet"]
    one, many = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for args, out in ((base, one), (base + ["--restarts", "16"], many)):
                t0 = time.perf_counter()
                subprocess.run(args + ["--run-dir", os.path.join(tmp, f"{len(args)}-{i}")], check=True, capture_output=True)
                out.append(time.perf_counter() - t0)
    ratios = [m / o for m, o in zip(many, one)]
    print(f"CLI: trainwise fit {statistics.median(one):.2f}s, with --restarts 16 {statistics.median(many):.2f}s: "
          f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] (goal <= 2x)")


def search_case(repeats: int, trials: int = 16) -> None:
    """16 random-search trials over lr and weight decay (the issue's search case), stacked vs one by one."""
    from trainwise.tune.search import tune

    space = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
             "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-2}}
    options = {k: v for k, v in OPTIONS.items() if k not in ("quiet", "checkpoint")}
    seq, vec = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for vectorize, out in ((False, seq), (True, vec)):
                t0 = time.perf_counter()
                tune(space, method="random", trials=trials, out=os.path.join(tmp, f"{vectorize}-{i}"), retrain=False,
                     vectorize=vectorize, **options)
                out.append(time.perf_counter() - t0)
    ratios = [s / v for s, v in zip(seq, vec)]
    print(f"search: {trials} random trials over lr x weight decay (run folders written): one by one "
          f"{statistics.median(seq):.2f}s, stacked {statistics.median(vec):.2f}s: {statistics.median(ratios):.2f}x "
          f"[{min(ratios):.2f}-{max(ratios):.2f}]", flush=True)


def memory_case() -> None:
    code = ("import resource, trainwise; trainwise.fit(data='digits', model='mlp:32', epochs=3, batch_size=32, quiet=True, "
            "checkpoint=False, restarts={k}); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {k: int(subprocess.run([sys.executable, "-c", code.format(k=k)], check=True, capture_output=True,
                                   text=True).stdout.split()[-1]) / 1024 for k in (1, 64)}
    print(f"peak resident memory: K=1 {peaks[1]:.0f} MiB, K=64 stacked {peaks[64]:.0f} MiB "
          f"(+{peaks[64] - peaks[1]:.0f} MiB for 63 more members)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--same-process", action="store_true",
                    help="time both ways in this one process (each way's runs after the other's), not each in its own")
    ap.add_argument("--cli", action="store_true")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--search", action="store_true", help="add the search case: 16 random trials over lr x weight decay")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"digits mlp:32, 20 epochs, batch 32, Adam; {args.repeats} alternating repeats, "
          + ("both ways in this process" if args.same_process else "each timed fit in a fresh process after a warm-up fit the same way"))
    if args.same_process:
        timed_fit(2, True)  # warm-up: imports, data set cache
    table(args.ks, args.repeats, timer=timed_fit if args.same_process else timed_fresh)
    if args.search:
        search_case(args.repeats)
    if args.cli:
        cli_case(args.repeats)
    if args.memory:
        memory_case()


if __name__ == "__main__":
    main()
