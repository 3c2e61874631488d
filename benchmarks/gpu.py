"""The GPU path: trainwise's epoch time against a plain loop on the same GPU, and a vectorized population there.

Run: .venv/bin/python benchmarks/gpu.py [--repeats 3] [--batch-sizes 64 256 1024] [--device cuda] [--quick]
Without CUDA it says so and exits 0 (``--device cpu --quick`` runs the same code on the CPU, as a check).

1. Epoch time. MLP 784-256-128-10 on 60,000 synthetic rows (10 classes) that live on the GPU, Adam (fused), one
   shuffled pass per epoch; one warm-up epoch dropped, the median of the rest taken. All ratios are against
   `plain`, measured in this run; `plain`, `trainwise` and `bf16` alternate ``--repeats`` times and the ratio is
   the median of the per-repeat ratios [min-max]:
     plain        hand loop: randperm on the device, index, forward, loss, backward, fused Adam; never reads the loss
     trainwise    trainwise.Trainer on TensorBatches: metrics summed on the device, read once per epoch
     bf16         the same with --precision bf16 (autocast)
     compile      torch.compile'd forward (measured once per batch size: the first epoch's compile time is shown)
     cuda-graphs  torch.compile mode reduce-overhead (--compile --compile-mode reduce-overhead), measured once
2. Population. ``trainwise.fit`` of digits ``mlp:32``, 20 epochs, batch 32, --restarts 16 on the GPU: stacked
   (one model) against one by one, alternating ``--repeats`` times.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from trainwise import TensorBatches, Trainer

N, D, C = 60_000, 784, 10


def make_model(device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, C)).to(device)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_times(run_epoch, epochs: int, device) -> list[float]:
    times = []
    for _ in range(epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        run_epoch()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times  # times[0]: the warm-up (compilation, cuDNN/cuBLAS set-up)


def plain(X, y, B, epochs, device) -> list[float]:
    model = make_model(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    g = torch.Generator(device=device).manual_seed(0)

    def run():
        perm = torch.randperm(len(y), generator=g, device=device)
        for i in range(0, len(y), B):
            idx = perm[i:i + B]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epoch_times(run, epochs, device)


def library(X, y, B, epochs, device, **options) -> list[float]:
    trainer = Trainer(make_model(device), loss="cross_entropy", lr=1e-3, device=device, **options)
    batches = TensorBatches(X, y, batch_size=B, seed=0)
    trainer.begin(batches, epochs + 1)
    return epoch_times(lambda: trainer.train_epoch(batches), epochs, device)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}× [{min(values):.2f}–{max(values):.2f}]"


def epoch_case(device, batch_sizes: list[int], repeats: int, epochs: int, n: int) -> None:
    torch.manual_seed(0)
    X, y = torch.randn(n, D, device=device), torch.randint(0, C, (n,), device=device)
    print(f"epoch time, {n} x {D} rows on {device}, MLP 784-256-128-10, {epochs} timed epochs, {repeats} repeats")
    print(f"{'batch':>6}  {'plain s':>8}  {'trainwise':>22}  {'bf16':>22}  {'compile':>26}  {'cuda-graphs':>26}")
    for B in batch_sizes:
        ratios: dict[str, list[float]] = {"trainwise": [], "bf16": []}
        plains = []
        for _ in range(repeats):
            p = statistics.median(plain(X, y, B, epochs, device)[1:])
            plains.append(p)
            ratios["trainwise"].append(statistics.median(library(X, y, B, epochs, device)[1:]) / p)
            ratios["bf16"].append(statistics.median(library(X, y, B, epochs, device, precision="bf16")[1:]) / p)
        p = statistics.median(plains)
        once = {}
        for name, mode in (("compile", True), ("cuda-graphs", "reduce-overhead")):
            if device.type != "cuda" and mode == "reduce-overhead":
                once[name] = "(CUDA only)"
                continue
            t = library(X, y, B, epochs, device, compile=mode)
            once[name] = f"{statistics.median(t[1:]) / p:.2f}× (1st {t[0]:.1f}s)"
        print(f"{B:>6}  {p:>8.3f}  {spread(ratios['trainwise']):>22}  {spread(ratios['bf16']):>22}  "
              f"{once['compile']:>26}  {once['cuda-graphs']:>26}", flush=True)


def population_case(device, repeats: int, k: int) -> None:
    import trainwise

    options = dict(data="digits", model="mlp:32", epochs=20, batch_size=32, quiet=True, checkpoint=False,
                   restarts=k, device=str(device))
    walls: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for vectorize in (True, False):
            t0 = time.perf_counter()
            trainwise.fit(**options, vectorize=vectorize)
            walls[vectorize].append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(walls[True], walls[False])]
    print(f"population on {device}: digits mlp:32, 20 epochs, batch 32, --restarts {k}: one by one "
          f"{statistics.median(walls[False]):.1f} s, stacked {statistics.median(walls[True]):.1f} s, "
          f"speed-up {spread(ratios)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--restarts", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="a small check of the script itself (6,000 rows, 1 repeat)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: the GPU path was not measured (run this on a machine with a GPU)")
        return
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    n, repeats = (6_000, 1) if args.quick else (N, args.repeats)
    epoch_case(device, args.batch_sizes, repeats, 1 if args.quick else args.epochs, n)
    population_case(device, repeats, 4 if args.quick else args.restarts)


if __name__ == "__main__":
    main()
