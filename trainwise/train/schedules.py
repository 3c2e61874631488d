"""Learning-rate schedules as one callback over torch's schedulers.

==============  ==========================================================  ============
name            what it does                                                steps
==============  ==========================================================  ============
step            multiply by ``gamma`` (0.5) every ``step_size`` (10) epochs   per epoch
exponential     multiply by ``gamma`` (0.95) every epoch                    per epoch
cosine          linear warmup over ``warmup_epochs``, then cosine to 0      per step
onecycle        torch's one-cycle policy peaking at the configured LR        per step
plateau         multiply by ``gamma`` (0.5) when ``monitor`` has not         per epoch
                improved for ``patience`` (5) epochs
==============  ==========================================================  ============

The LR in effect during an epoch is logged as ``lr`` in every row of metrics.csv.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import TrainwiseError, check_choice
from ..options import SCHEDULES
from .callbacks import resolve_mode
from .trainer import Callback, Trainer

__all__ = ["LRSchedule", "SCHEDULES"]

_DEFAULT_GAMMA = {"step": 0.5, "exponential": 0.95, "plateau": 0.5}
_PER_STEP = ("cosine", "onecycle")


class LRSchedule(Callback):
    """Build the named scheduler when training starts and step it per epoch or per optimizer step.

    >>> s = LRSchedule("step")  # the lecture's StepLR(step_size=10, gamma=0.5)
    >>> (s.step_size, s.gamma)
    (10, 0.5)
    """

    def __init__(self, name: str, *, step_size: int = 10, gamma: float | None = None, warmup_epochs: float = 0,
                 monitor: str = "val/loss", mode: str = "auto", patience: int = 5):
        self.name = check_choice("schedule", name, SCHEDULES)
        if gamma is not None and not 0 < gamma <= 1:
            raise TrainwiseError(f"schedule gamma must be in (0, 1], got {gamma}", hint="e.g. --gamma 0.5 halves the LR")
        self.step_size, self.gamma = step_size, gamma if gamma is not None else _DEFAULT_GAMMA.get(name, 0.5)
        self.warmup_epochs, self.monitor, self.mode, self.patience = warmup_epochs, monitor, mode, patience
        self.scheduler_: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        opt, n = trainer.optimizer, self.name
        total_steps = max(trainer.max_epochs * trainer.steps_per_epoch, 1)
        if n in _PER_STEP and not trainer.steps_per_epoch:
            raise TrainwiseError(f"schedule '{n}' needs to know the number of batches per epoch, but the training "
                                 "batches have no len()", hint="use a per-epoch schedule (step, exponential, plateau)")
        if n == "step":
            self.scheduler_ = torch.optim.lr_scheduler.StepLR(opt, step_size=self.step_size, gamma=self.gamma)
        elif n == "exponential":
            self.scheduler_ = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.gamma)
        elif n == "plateau":
            self.scheduler_ = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=resolve_mode(self.monitor, self.mode), factor=self.gamma, patience=self.patience)
        elif n == "onecycle":
            self.scheduler_ = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps)
        elif n == "cosine":
            warmup = round(self.warmup_epochs * trainer.steps_per_epoch)
            self.scheduler_ = torch.optim.lr_scheduler.LambdaLR(opt, _WarmupCosine(warmup, total_steps))

    def on_batch_end(self, trainer: Trainer, *, step: int, loss: torch.Tensor) -> None:
        if self.name in _PER_STEP and step < trainer.max_epochs * trainer.steps_per_epoch:
            self.scheduler_.step()

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if self.name == "plateau":
            if self.monitor not in logs:
                raise TrainwiseError(f"the plateau schedule monitors '{self.monitor}', which is not logged "
                                     f"(logged: {', '.join(logs)})", hint="set --monitor to a logged metric")
            self.scheduler_.step(logs[self.monitor])
        elif self.name in ("step", "exponential"):
            self.scheduler_.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler_.state_dict() if self.scheduler_ is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scheduler_.load_state_dict(state)


class _WarmupCosine:
    """LR factor: linear from ~0 to 1 over ``warmup`` steps, then half a cosine down to 0 at ``total``.

    A class (not a lambda) so LambdaLR's state_dict stays plain data.
    """

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = (step - self.warmup) / max(self.total - self.warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
