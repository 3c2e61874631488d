"""The training loop: batch -> forward -> loss -> backward -> step -> hooks. Everything optional is a callback."""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .components import make_loss, make_optimizer, target_kind
from .metrics import MetricAccumulator

__all__ = ["Trainer", "Callback", "HOOKS"]

HOOKS = ("on_fit_start", "on_epoch_start", "on_after_backward", "on_batch_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class of no-op hooks. A hook gets the trainer and named arguments; state ends in ``_``.

    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, trainer, *, epoch, logs):
    ...         print(epoch, round(logs["train/loss"], 3))
    """

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None: ...
    def on_after_backward(self, trainer: Trainer, *, loss: torch.Tensor) -> None: ...
    def on_batch_end(self, trainer: Trainer, *, step: int, loss: torch.Tensor) -> None: ...
    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Trainer:
    """Trains ``model`` with validation every epoch.

    ``loss`` and ``optimizer`` are names or ready objects; ``kind`` says how outputs are scored
    ('multiclass', 'binary', 'regression'; inferred from a loss name when not given).

    >>> import torch
    >>> _ = torch.manual_seed(0); X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> from trainwise.data import TensorBatches
    >>> t = Trainer(torch.nn.Linear(3, 2), loss="cross_entropy", lr=0.1)
    >>> len(t.fit(TensorBatches(X, y, batch_size=16), TensorBatches(X, y, batch_size=64), epochs=2))
    2
    """

    def __init__(self, model: nn.Module, *, loss: str | nn.Module = "cross_entropy",
                 optimizer: str | torch.optim.Optimizer = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 nesterov: bool = False, weight_decay: float = 0.0, kind: str | None = None,
                 callbacks: Sequence[Callback] = (), device: str | torch.device = "cpu", target_std: float = 1.0):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_fn = make_loss(loss) if isinstance(loss, str) else loss
        self.kind = kind or (target_kind(loss) if isinstance(loss, str) else "multiclass")
        self.optimizer = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
            optimizer, self.model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, device=self.device)
        self.callbacks = list(callbacks)
        self.target_std = target_std
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.history: list[dict[str, float]] = []
        self.status, self.stop_reason = "not_started", None
        self.train_time_s, self.train_samples = 0.0, 0
        self._stop = False
        # only callbacks that override a hook are called for it: an unused hook costs nothing per step
        self._hooks = {h: [getattr(c, h) for c in self.callbacks if getattr(type(c), h) is not getattr(Callback, h)]
                       for h in HOOKS}

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch; ``reason`` goes into the run summary."""
        self._stop, self.stop_reason = True, reason

    def _emit(self, hook: str, **kwargs: Any) -> None:
        for fn in self._hooks[hook]:
            fn(self, **kwargs)

    def fit(self, train: Iterable, val: Iterable | None = None, *, epochs: int) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are done or a callback requests a stop. Returns the history."""
        self.status, self._stop = "running", False
        self._emit("on_fit_start")
        try:
            while self.epoch < epochs and not self._stop:
                self._emit("on_epoch_start", epoch=self.epoch + 1)
                t0 = time.perf_counter()
                logs = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **self.train_epoch(train)}
                self.train_time_s += time.perf_counter() - t0
                if val is not None:
                    logs |= self.evaluate(val, prefix="val")
                logs["time/epoch_s"] = time.perf_counter() - t0
                self.epoch += 1
                self.history.append(logs)
                self._emit("on_epoch_end", epoch=self.epoch, logs=logs)
            self.status = "early_stopped" if self._stop else "completed"
            self.stop_reason = self.stop_reason or f"reached the maximum of {epochs} epochs"
        except KeyboardInterrupt:
            self.status, self.stop_reason = "interrupted", f"interrupted by the user during epoch {self.epoch + 1}"
        except Exception as e:
            self.status, self.stop_reason = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            self._emit("on_fit_end")
        return self.history

    def train_epoch(self, batches: Iterable) -> dict[str, float]:
        """One pass over ``batches``; metrics are summed on the device and read once at the end."""
        self.model.train()
        acc = MetricAccumulator(self.kind, self.device, target_std=self.target_std)
        for x, y in batches:
            out = self.model(x)
            loss = self.loss_fn(out, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._emit("on_after_backward", loss=loss)
            self.optimizer.step()
            self.step += 1
            acc.update(out.detach(), y, loss.detach())
            self._emit("on_batch_end", step=self.step, loss=loss)
        self.train_samples += acc.count
        return acc.compute("train")

    @torch.inference_mode()
    def evaluate(self, batches: Iterable, *, prefix: str = "val") -> dict[str, float]:
        """Loss and metrics over ``batches`` in eval mode (dropout off, batch-norm running stats frozen)."""
        was_training = self.model.training
        self.model.eval()
        acc = MetricAccumulator(self.kind, self.device, target_std=self.target_std)
        for x, y in batches:
            out = self.model(x)
            acc.update(out, y, self.loss_fn(out, y))
        self.model.train(was_training)
        return acc.compute(prefix)

    @torch.inference_mode()
    def predict(self, X: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
        """Raw model outputs for ``X`` in eval mode."""
        self.model.eval()
        return torch.cat([self.model(X[i:i + batch_size].to(self.device)) for i in range(0, len(X), batch_size)])
