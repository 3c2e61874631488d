"""The learning-rate range test: raise the LR exponentially from ``start_lr`` to ``end_lr`` over ``steps``
optimizer steps on training batches, record the loss, stop early once it diverges, then put the model,
the optimizer, the RNG and the batcher back exactly as they were.

The suggestion: the LR where the smoothed loss falls fastest (the most negative slope of the smoothed loss
against log10(LR), within the two decades below the smoothed minimum), capped at one tenth of the LR at that minimum. The steepest
point alone sits just below the blow-up: on digits with Adam at batch 16 it gives 1.5e-2, where training
oscillates; the cap gives 5.5e-3 (test accuracy 0.974 vs 0.970 at the default 1e-3). Smoothing: an
exponential moving average with factor ``smooth`` (0.9, about 10 steps of memory), bias-corrected.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import TrainwiseError
from ..train.trainer import Trainer

__all__ = ["lr_find", "LRFinderResult"]


@dataclass
class LRFinderResult:
    """Raw points (``lrs``, ``losses``), the smoothed curve, the suggestion and why the sweep ended."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    min_over_10: float | None = None   # a tenth of the LR at the smoothed minimum (the cap)
    stop_reason: str = ""

    def to_dict(self) -> dict:
        return {"suggestion": self.suggestion, "min_over_10": self.min_over_10, "stop_reason": self.stop_reason,
                "steps": len(self.lrs), "range": [self.lrs[0], self.lrs[-1]] if self.lrs else None}

    def save(self, directory: str | Path) -> None:
        """``lr_find.csv`` (step, lr, loss, smoothed) and ``lr_find.png`` (the curve, the suggestion marked)."""
        from ..report.plots import plot_lr_find
        from ..runs import atomic_write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rows = ["step,lr,loss,smoothed"] + [f"{i + 1},{lr!r},{loss!r},{s!r}" for i, (lr, loss, s) in
                                           enumerate(zip(self.lrs, self.losses, self.smoothed))]
        atomic_write(directory / "lr_find.csv", "\n".join(rows) + "\n")
        plot_lr_find(self.lrs, self.losses, self.smoothed, self.suggestion, directory / "lr_find.png")


def lr_find(trainer: Trainer, batches, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            smooth: float = 0.9, diverge: float = 4.0) -> LRFinderResult:
    """Run the range test with ``trainer``'s model, loss and optimizer on ``batches`` (cycled as needed).

    >>> import torch; from trainwise import Trainer, TensorBatches; from trainwise.models import MLP
    >>> _ = torch.manual_seed(0); X = torch.randn(256, 4); y = (X[:, 0] > 0).long()
    >>> r = lr_find(Trainer(MLP(4, [16], 2), optimizer="sgd", momentum=0.0), TensorBatches(X, y, batch_size=16), steps=60)
    >>> 1e-7 <= r.suggestion <= 10
    True
    """
    if not 0 < start_lr < end_lr:
        raise TrainwiseError(f"the LR range must satisfy 0 < start_lr < end_lr, got {start_lr:g} .. {end_lr:g}",
                             hint="e.g. start_lr=1e-7, end_lr=10")
    if steps < 5:
        raise TrainwiseError(f"the LR finder needs at least 5 steps, got {steps}", hint="use steps=100")
    model, opt = trainer.model, trainer.optimizer
    saved = {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
             "rng": torch.get_rng_state(), "data": copy.deepcopy(batches.state_dict()) if hasattr(batches, "state_dict") else None,
             "training": model.training}
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    result, avg, best = LRFinderResult(), 0.0, math.inf
    model.train()
    try:
        it = iter(batches)
        for i in range(steps):
            try:
                x, y = next(it)
            except StopIteration:
                it = iter(batches)
                x, y = next(it)
            lr = start_lr * factor ** i
            for g in opt.param_groups:
                g["lr"] = lr
            loss = trainer.loss_fn(trainer.forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()  # a sweep, not training: one read per step is the point
            result.lrs.append(lr)
            result.losses.append(value)
            if not math.isfinite(value):
                result.smoothed.append(float("nan"))
                result.stop_reason = f"the loss became non-finite at lr {lr:.2e}"
                break
            avg = smooth * avg + (1 - smooth) * value
            s = avg / (1 - smooth ** (i + 1))
            result.smoothed.append(s)
            best = min(best, s)
            if i > 5 and s > diverge * best:
                result.stop_reason = f"the smoothed loss passed {diverge:g}x its minimum at lr {lr:.2e}"
                break
        else:
            result.stop_reason = f"reached end_lr {end_lr:g} after {steps} steps"
    finally:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        torch.set_rng_state(saved["rng"])
        if saved["data"] is not None:
            batches.load_state_dict(saved["data"])
        model.train(saved["training"])
    _suggest(result)
    return result


def _suggest(r: LRFinderResult) -> None:
    pts = [(math.log10(lr), s) for lr, s in zip(r.lrs, r.smoothed) if math.isfinite(s)]
    if len(pts) < 3:
        return
    i_min = min(range(len(pts)), key=lambda i: pts[i][1])
    r.min_over_10 = 10 ** pts[i_min][0] / 10
    # the steepest descent within the two decades below the minimum: earlier wiggles are batch noise
    window = [i for i in range(1, i_min) if pts[i][0] >= pts[i_min][0] - 2]
    slopes = {i: (pts[i + 1][1] - pts[i - 1][1]) / (pts[i + 1][0] - pts[i - 1][0]) for i in window}
    steepest = 10 ** pts[min(slopes, key=slopes.__getitem__)][0] if slopes else r.min_over_10
    r.suggestion = min(steepest, r.min_over_10)
