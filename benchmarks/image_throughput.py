"""Training images per second on a Fashion-MNIST-shaped set: trainwise vs the lecture's DataLoader loop.

Run: .venv/bin/python benchmarks/image_throughput.py [--samples 12000] [--batch-sizes 16 128] [--repeats 3]
Workload: 60,000 synthetic 28x28 grayscale uint8 images, 10 classes, Adam lr 1e-3, cross-entropy. Each row
trains on the first --samples images of a shuffled pass (a full epoch scales linearly); one warm-up pass is
dropped and the median of --repeats is reported, the columns timed in alternation (round-robin) so that drift
in the machine's speed affects them alike. Ratios are against `dataloader` in the same run and row.

  trainwise       Trainer on TensorBatches: images decoded once, normalized ((x-0.5)/0.5) and kept as one tensor
  trainwise+aug   the same with --augment flip,rotate=10,crop=0.8,jitter=0.2 (one fused affine resample per batch)
  dataloader      the lecture's loop: a Dataset that turns each uint8 image into a normalized tensor (what
                  ToTensor + Normalize((0.5,), (0.5,)) do), DataLoader(batch_size=B, shuffle=True)
  dataloader+aug  the same with per-sample PIL augmentation as torchvision's RandomRotation(10),
                  RandomHorizontalFlip, RandomResizedCrop(28, scale=(0.8, 1)) and ColorJitter(brightness=0.2) do it
  kornia+aug      trainwise's batches with kornia.augmentation's equivalent pipeline (only if kornia is installed)

Models: mlp:256,128 and cnn:16,32 (conv3x3-relu-maxpool x2, linear head), built by trainwise for every loop.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from trainwise import TensorBatches, Trainer
from trainwise.data.augment import Augment, AugmentedBatches
from trainwise.models import build_model
from trainwise.models.builders import resolve_model

N, SIZE, C = 60_000, 28, 10
AUG = "flip,rotate=10,crop=0.8,jitter=0.2"


def make_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, C, N)
    X = rng.integers(0, 256, (N, SIZE, SIZE), dtype=np.uint8)
    return X, y


def model(spec: str):
    torch.manual_seed(0)
    return build_model(resolve_model(spec, (1, SIZE, SIZE), C))


class Limited:
    """The first ``n`` samples' worth of batches of an iterable of batches."""

    def __init__(self, batches, n):
        self.batches, self.n = batches, n

    def __iter__(self):
        seen = 0
        for x, y in self.batches:
            if seen >= self.n:
                return
            seen += len(y)
            yield x, y


def run_trainwise(X, y, spec, B, samples, augment):
    Xt = (torch.from_numpy(X).float().div_(255).sub_(0.5).div_(0.5))[:, None]
    batches = TensorBatches(Xt, torch.from_numpy(y), batch_size=B, seed=0)
    if augment == "trainwise":
        batches = AugmentedBatches(batches, Augment(AUG, mean=[0.5], std=[0.5], seed=0))
    elif augment == "kornia":
        batches = KorniaBatches(batches)
    trainer = Trainer(model(spec), loss="cross_entropy", optimizer="adam", lr=1e-3, kind="multiclass")
    return lambda: trainer.fit(Limited(batches, samples), epochs=trainer.epoch + 1)  # one more pass each call


class KorniaBatches:
    def __init__(self, batches):
        import kornia.augmentation as K

        self.batches = batches
        self.aug = K.AugmentationSequential(K.RandomHorizontalFlip(), K.RandomRotation(10.0),
                                            K.RandomResizedCrop((SIZE, SIZE), scale=(0.8, 1.0)), K.ColorJitter(brightness=0.2))

    def __iter__(self):
        for x, y in self.batches:
            yield (self.aug(x * 0.5 + 0.5) - 0.5) / 0.5, y


class LectureDataset(Dataset):
    """Per-sample transforms, as torchvision's FashionMNIST + transforms.Compose would run them."""

    def __init__(self, X, y, augment: bool):
        self.X, self.y, self.augment = X, y, augment

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image, ImageEnhance

        img = Image.fromarray(self.X[i], mode="L")
        if self.augment:
            img = img.rotate(random.uniform(-10, 10), resample=Image.NEAREST)
            if random.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            area = random.uniform(0.8, 1.0) * SIZE * SIZE
            ratio = np.exp(random.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = min(SIZE, round((area * ratio) ** 0.5)), min(SIZE, round((area / ratio) ** 0.5))
            left, top = random.randint(0, SIZE - w), random.randint(0, SIZE - h)
            img = img.resize((SIZE, SIZE), Image.BILINEAR, box=(left, top, left + w, top + h))
            img = ImageEnhance.Brightness(img).enhance(random.uniform(0.8, 1.2))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32)).div_(255)[None]  # ToTensor
        return (x - 0.5) / 0.5, int(self.y[i])  # Normalize((0.5,), (0.5,))


def run_dataloader(X, y, spec, B, samples, augment):
    m = model(spec)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loader = DataLoader(LectureDataset(X, y, augment), batch_size=B, shuffle=True)

    def epoch():
        m.train()
        for xb, yb in Limited(loader, samples):
            loss = F.cross_entropy(m(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epoch


def measure(makers: dict, repeats: int) -> dict[str, float]:
    """Median seconds per pass for each runner, timed in alternation (one pass of each per round), so that
    drift in the machine's speed hits every column alike; one warm-up pass each is dropped."""
    runs = {name: make() for name, make in makers.items()}
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=12_000)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["mlp:256,128", "cnn:16,32"])
    args = ap.parse_args()
    X, y = make_data()
    try:
        import kornia  # noqa: F401
        has_kornia = True
    except ImportError:
        has_kornia = False
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.samples} of {N} images per pass, median of {args.repeats}; images/s (ratio to dataloader)")
    for spec in args.models:
        for B in args.batch_sizes:
            makers = {
                "dataloader": lambda spec=spec, B=B: run_dataloader(X, y, spec, B, args.samples, False),
                "dataloader+aug": lambda spec=spec, B=B: run_dataloader(X, y, spec, B, args.samples, True),
                "trainwise": lambda spec=spec, B=B: run_trainwise(X, y, spec, B, args.samples, None),
                "trainwise+aug": lambda spec=spec, B=B: run_trainwise(X, y, spec, B, args.samples, "trainwise"),
            }
            if has_kornia:
                makers["kornia+aug"] = lambda spec=spec, B=B: run_trainwise(X, y, spec, B, args.samples, "kornia")
            rows = measure(makers, args.repeats)
            base, base_aug = rows["dataloader"], rows["dataloader+aug"]
            cells = []
            for name, t in rows.items():
                ref = base_aug if name.endswith("aug") else base
                cells.append(f"{name} {args.samples / t:,.0f}/s ({ref / t:.2f}x)")
            print(f"{spec:12s} B={B:<4d} " + " | ".join(cells) +
                  f" | aug cost: trainwise {rows['trainwise+aug'] / rows['trainwise']:.2f}x, "
                  f"dataloader {rows['dataloader+aug'] / rows['dataloader']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
