"""Seconds per training epoch: trainwise vs a plain PyTorch loop vs the lecture's DataLoader loop vs Lightning.

Run: .venv/bin/python benchmarks/epoch_time.py [--epochs 3] [--batch-sizes 16 64 256] [--cli [--repeats 3]]
Workload (the core issue's): MLP 784-256-128-10, 60,000 synthetic samples (10 classes), Adam lr 1e-3,
cross-entropy, one shuffled pass per epoch, CPU threads as torch sets them. Every loop trains the same
initial weights; one warm-up epoch is dropped and the median of the rest is reported. All ratios are
against `plain` measured in this same run:

  plain          hand-written loop on in-memory tensors: randperm, index, forward, backward, Adam.step
  plain-fused    the same loop with torch.optim.Adam(fused=True), which trainwise uses by default
  trainwise      trainwise.Trainer on TensorBatches (device-side metrics, callback hooks, early-stop tracking)
  +doctor        the same with the training doctor's HealthTracker (as `trainwise fit` runs it)
  dataloader     the lecture's DataLoader(TensorDataset(X, y), batch_size=B, shuffle=True) loop
  lightning      lightning.Trainer with the same model (only when `lightning` is installed)
  compiled-*     with --compiled: plain-fused with torch.compile'd forward, or torch.compile'd optimizer step

``--cli`` measures the command-line path instead (the populations issue's case): 20,000 x 784 synthetic rows
in an .npz, the `trainwise.fit` that ``trainwise fit --model mlp:256,128`` runs (Adam, validation, the doctor,
metrics.csv and both checkpoints every epoch, early stopping off) against a plain loop that also validates
every epoch, at batch 64 and 256. An epoch is timed from one epoch's end to the next, after every callback
(so checkpoint writes count, start-up and the final report do not: timing whole processes for N and 2N epochs
left start-up noise of +-1 s in the difference); the two sides alternate ``--repeats`` times and the ratio is
given per repeat (median [min-max]).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainwise import Callback, EarlyStopping, TensorBatches, Trainer
from trainwise.diagnose.doctor import HealthTracker

N, D, C = 60_000, 784, 10


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, C))


def timed_epochs(run_epoch, epochs: int, *, show_first: str | None = None) -> float:
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    if show_first:  # (what the warm-up epoch paid: a compilation, say)
        print(f"    ({show_first}: first epoch {times[0]:.2f}s)", flush=True)
    return statistics.median(times[1:])  # first epoch is warm-up


def plain_pass(model, opt, X, y, B, g, *, step=None) -> None:
    """One shuffled pass of the hand-written loop: randperm, index, forward, backward, step (``model`` and
    ``step`` may be compiled versions)."""
    step = step or opt.step
    perm = torch.randperm(len(y), generator=g)
    for i in range(0, len(y), B):
        idx = perm[i:i + B]
        loss = F.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        step()


def plain(X, y, B, epochs, fused=False):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    g = torch.Generator().manual_seed(0)
    return timed_epochs(lambda: plain_pass(model, opt, X, y, B, g), epochs)


def compiled(X, y, B, epochs, what="forward"):
    """The plain-fused loop with torch.compile'd forward (``forward``) or optimizer step (``step``); the first
    (warm-up) epoch, which pays the compilation, is printed separately."""
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    forward = torch.compile(model) if what == "forward" else model
    step = torch.compile(opt.step) if what == "step" else opt.step
    g = torch.Generator().manual_seed(0)
    return timed_epochs(lambda: plain_pass(forward, opt, X, y, B, g, step=step), epochs,
                        show_first=f"compiled {what}, batch {B}")


def trainwise_(X, y, B, epochs, doctor=False):
    callbacks = [EarlyStopping(monitor="train/loss", patience=None)] + ([HealthTracker()] if doctor else [])
    trainer = Trainer(make_model(), loss="cross_entropy", optimizer="adam", lr=1e-3, callbacks=callbacks)
    batches = TensorBatches(X, y, batch_size=B, seed=0)
    trainer.fit(batches, epochs=epochs + 1)
    return statistics.median(h["time/epoch_s"] for h in trainer.history[1:])


def dataloader(X, y, B, epochs):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(X, y), batch_size=B, shuffle=True)

    def epoch():
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return timed_epochs(epoch, epochs)


def lightning_(X, y, B, epochs):
    try:
        import lightning as L
    except ImportError:
        return None
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_model()

        def training_step(self, batch, _):
            xb, yb = batch
            return F.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    times: list[float] = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, *_):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, *_):
            times.append(time.perf_counter() - self.t0)

    loader = DataLoader(TensorDataset(X, y), batch_size=B, shuffle=True)
    trainer = L.Trainer(max_epochs=epochs + 1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()])
    trainer.fit(Module(), loader)
    return statistics.median(times[1:])


class _Stamp(Callback):
    """The time at each epoch's end, after every other callback of that epoch (it is added last)."""

    def __init__(self):
        self.times: list[float] = []

    def on_epoch_end(self, trainer, *, epoch, logs):
        self.times.append(time.perf_counter())


def _cycle(stamps: list[float]) -> float:
    """Median seconds from one epoch's end to the next: the whole epoch, its callbacks and writes included."""
    return statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:]))  # the first epoch is warm-up


def cli_case(batch_sizes: list[int], repeats: int, epochs: int = 8) -> None:
    import tempfile

    import numpy as np

    import trainwise

    rows, feats = 20_000, 784
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(rows, feats)).astype(np.float32), rng.integers(0, C, rows)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "synthetic.npz")
        np.savez(data, X=X, y=y)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        n_train, n_val = int(rows * 0.7), int(rows * 0.15)

        def cli(B: int, i: int) -> float:  # what `trainwise fit` runs (the command line calls this same fit)
            stamp = _Stamp()
            trainwise.fit(data=data, model="mlp:256,128", batch_size=B, epochs=epochs, early_stopping=False,
                          quiet=True, run_dir=os.path.join(tmp, f"r{B}-{i}"), callbacks=[stamp])
            return _cycle(stamp.times)

        def plain_loop(B: int) -> float:
            torch.manual_seed(0)
            model = nn.Sequential(nn.Flatten(), nn.Linear(feats, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 128),
                                  nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, C))
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            g = torch.Generator().manual_seed(0)
            Xtr, ytr, Xva, yva = Xt[:n_train], yt[:n_train], Xt[n_train:n_train + n_val], yt[n_train:n_train + n_val]
            stamps = []
            for _ in range(epochs):
                model.train()
                plain_pass(model, opt, Xtr, ytr, B, g)
                model.eval()
                with torch.no_grad():
                    F.cross_entropy(model(Xva), yva).item()
                stamps.append(time.perf_counter())
            return _cycle(stamps)

        print(f"CLI path: {rows:,} x {feats} rows, mlp:256,128, Adam, validation, doctor, metrics.csv and checkpoints "
              f"every epoch; epoch = one epoch end to the next (median of {epochs - 2}); {repeats} alternating repeats")
        for B in batch_sizes:
            ratios, cli_s, plain_s = [], [], []
            for i in range(repeats):
                c, p = cli(B, i), plain_loop(B)
                ratios.append(c / p)
                cli_s.append(c)
                plain_s.append(p)
            print(f"batch {B:>4}: trainwise fit {statistics.median(cli_s):.3f}s/epoch, plain loop "
                  f"{statistics.median(plain_s):.3f}s/epoch: {statistics.median(ratios):.2f}x "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}]", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per method (after one warm-up epoch)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--cli", action="store_true", help="the command-line path (see above) instead")
    ap.add_argument("--repeats", type=int, default=3, help="with --cli: alternating repeats")
    ap.add_argument("--compiled", action="store_true",
                    help="add the plain-fused loop with torch.compile'd forward / optimizer step (the populations issue's point 4)")
    args = ap.parse_args()
    if args.cli:
        return cli_case([b for b in args.batch_sizes if b >= 64] or [64, 256], args.repeats)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"MLP {D}-256-128-{C}, {N:,} samples, Adam; median of {args.epochs} epochs after 1 warm-up")
    methods = {"plain": plain, "plain-fused": lambda *a: plain(*a, fused=True), "trainwise": trainwise_,
               "+doctor": lambda *a: trainwise_(*a, doctor=True),
               "dataloader": dataloader, "lightning": lightning_}
    if args.compiled:
        methods |= {"compiled-forward": lambda *a: compiled(*a, what="forward"),
                    "compiled-step": lambda *a: compiled(*a, what="step")}
    print(f"{'batch':>5}  " + "  ".join(f"{m:>18}" for m in methods))
    for B in args.batch_sizes:
        secs = {m: f(X, y, B, args.epochs) for m, f in methods.items()}
        cells = ["not installed" if s is None else f"{s:.2f}s ({s / secs['plain']:.2f}x)" for s in secs.values()]
        print(f"{B:>5}  " + "  ".join(f"{c:>18}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
