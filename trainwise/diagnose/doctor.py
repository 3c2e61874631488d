"""The training doctor: cheap health tracking during training, and a diagnosis in plain words afterwards.

`HealthTracker` (a callback) samples the first optimizer step of every epoch: per-layer gradient norms
(weights only, input layer first), and through temporary forward hooks the ReLU units that fired and the
saturated sigmoid/tanh units. Everything stays on the device until one read at the end of the epoch. It
stops the run at the first epoch whose training loss is not finite, keeping the last good weights.

`diagnose` turns the history, those statistics and the data into ``{"code", "severity", "evidence",
"advice"}`` entries, through the named rules of `trainwise.diagnose.rules`. Severities: ``info`` (worth
knowing), ``warning`` (the run is likely worse than it could be), ``error`` (the run is broken).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..train.trainer import Callback, Trainer
from .rules import DATA_RULES, RULES, DataEvidence, Evidence, resolve, run_rules

__all__ = ["HealthTracker", "diagnose", "data_checks", "SEVERITIES"]

SEVERITIES = ("info", "warning", "error")
_SATURATING = (nn.Sigmoid, nn.Tanh)


class HealthTracker(Callback):
    """Per sampled step: gradient norm of every weight tensor; ReLU firing and sigmoid/tanh saturation."""

    def __init__(self, explode_at: float = 1e3):
        self.explode_at = explode_at
        self.grad_norms_: list[list[float]] = []     # per sampled epoch, per weight tensor (input layer first)
        self.weight_names_: list[str] = []
        self.relu_fired_: dict[str, torch.Tensor] = {}  # layer -> units that were ever > 0 on a sampled batch
        self.saturation_: dict[str, list[float]] = {}   # layer -> fraction of saturated outputs per sampled batch
        self.activation_types_: dict[str, str] = {}
        self.non_finite_epoch_: int | None = None
        self._hooks: list = []
        self._sample, self._step_stats = False, None
        self._last_good: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self.weight_names_ = [n for n, p in trainer.model.named_parameters() if p.requires_grad and p.ndim > 1]

    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None:
        self._sample, self._sat = True, {}
        if trainer.forward is not trainer.model:
            return  # a compiled forward: adding hooks would force a recompile; gradients are still tracked
        for name, module in trainer.model.named_modules():
            if isinstance(module, nn.ReLU) or isinstance(module, _SATURATING):
                self.activation_types_[name] = type(module).__name__
                self._hooks.append(module.register_forward_hook(self._activation_hook(name)))

    def _activation_hook(self, name: str):
        def hook(module, _inputs, out):
            self.observe(name, module, out)
        return hook

    def observe(self, name: str, module: nn.Module, out: torch.Tensor) -> None:
        """One sampled batch's outputs ``out`` of the activation layer ``name``: which ReLU units fired, how
        many sigmoid/tanh outputs are saturated (a stacked population passes each member its own rows)."""
        out = out.detach().flatten(1)
        if isinstance(module, nn.ReLU):
            fired = (out > 0).any(0)
            prev = self.relu_fired_.get(name)
            self.relu_fired_[name] = fired if prev is None or prev.shape != fired.shape else prev | fired
        else:
            edge = 0.99 if isinstance(module, nn.Tanh) else None
            sat = (out.abs() > edge) if edge else ((out < 0.01) | (out > 0.99))
            self._sat[name] = sat.float().mean()

    def on_after_backward(self, trainer: Trainer, *, loss: torch.Tensor) -> None:
        if not self._sample:
            return
        self._sample = False
        for h in self._hooks:  # one sampled forward per epoch: the hooks go away until the next epoch
            h.remove()
        self._hooks = []
        params = dict(trainer.model.named_parameters())
        norms = [params[n].grad.norm() if params[n].grad is not None else torch.zeros((), device=trainer.device)
                 for n in self.weight_names_]
        self._step_stats = torch.stack(norms).float() if norms else None

    def record_grad_norms(self, norms: torch.Tensor) -> None:
        """This epoch's sampled gradient norms (one per weight tensor, in ``weight_names_`` order), measured
        elsewhere: a stacked population measures every member's at once."""
        self._sample, self._step_stats = False, norms.float()

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._step_stats is not None:
            sat_names = list(self._sat)
            values = torch.cat([self._step_stats, torch.stack([self._sat[n] for n in sat_names]).float()
                                if sat_names else self._step_stats.new_zeros(0)]).tolist()  # the one read
            self.grad_norms_.append(values[:len(self.weight_names_)])
            for n, v in zip(sat_names, values[len(self.weight_names_):]):
                self.saturation_.setdefault(n, []).append(v)
            self._step_stats = None
        if not math.isfinite(logs.get("train/loss", 0.0)):
            self.non_finite_epoch_ = epoch
            where = _where(trainer, epoch)
            if self._last_good is None:  # no finite epoch: there are no weights worth keeping
                lr = trainer.optimizer.param_groups[0]["lr"]
                trainer.fail(f"training diverged: the loss became non-finite {where}, before any epoch finished "
                             f"with a finite loss; no weights were kept. Try: a lower learning rate "
                             f"(--lr {lr / 10:.3g}), gradient clipping (--clip-norm 1.0), or check the inputs for NaN/inf")
            else:
                trainer.model.load_state_dict(self._last_good)
                trainer.request_stop(f"the training loss became non-finite {where}; "
                                     f"weights rolled back to the end of epoch {epoch - 1}")
        else:
            self._last_good = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    def on_fit_end(self, trainer: Trainer) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def stats(self) -> dict[str, Any]:
        """What was measured, JSON-ready."""
        dead = {n: 1.0 - v.float().mean().item() for n, v in self.relu_fired_.items()}
        return {"weight_names": self.weight_names_, "grad_norms": self.grad_norms_, "dead_fraction": dead,
                "saturation": {n: float(np.mean(v)) for n, v in self.saturation_.items()},
                "non_finite_epoch": self.non_finite_epoch_}


def _where(trainer: Trainer, epoch: int) -> str:
    """'at step S (epoch E, batch B of N)': where the training loss first became non-finite."""
    at = trainer.non_finite_at
    if at is None or at[0] != epoch:
        return f"in epoch {epoch}"
    batch = at[1]
    n = len(trainer.train_data) if hasattr(trainer.train_data, "__len__") else None
    step = (epoch - 1) * trainer.steps_per_epoch + -(-batch // trainer.accumulate) if trainer.steps_per_epoch else None
    return (f"at step {step} " if step else "") + f"(epoch {epoch}, batch {batch}" + (f" of {n})" if n else ")")


def diagnose(history: list[dict[str, float]], stats: dict[str, Any] | None = None, *, kind: str = "multiclass",
             baseline: dict[str, float] | None = None, early_stopped_at: int | None = None,
             restore_best: bool = True) -> list[dict[str, str]]:
    """Diagnoses from a run's history (and `HealthTracker.stats`). ``baseline``: the trivial model's train
    metric and loss (``{"metric": .., "loss": ..}``, e.g. majority class); ``early_stopped_at``: the best epoch
    when early stopping ended the run.

    Builds the run's `Evidence` once, runs every rule of `RULES` on it, then settles the conflicts between
    the findings in one step, `resolve` (e.g. vanishing gradients explain a stalled loss: no learning-rate
    verdict then; ``lr_too_high`` and ``lr_too_low`` never both).

    >>> rows = [{"train/loss": 2.3 - 0.001 * e, "val/loss": 2.3, "train/accuracy": 0.11, "val/accuracy": 0.1} for e in range(8)]
    >>> sorted(d["code"] for d in diagnose(rows, baseline={"metric": 0.1, "loss": 2.3}))
    ['lr_too_low', 'underfitting']
    """
    if not history:
        return []
    ev = Evidence.from_run(history, stats, kind=kind, baseline=baseline, early_stopped_at=early_stopped_at,
                           restore_best=restore_best)
    return resolve(ev, run_rules(ev, RULES))


def trivial_baseline(y: np.ndarray, kind: str, *, known_loss: bool = False) -> dict[str, float | None]:
    """The trivial model's train metric and loss, which the doctor compares a run with: the majority class and
    the class priors' cross-entropy; per label column the same, averaged (multilabel); for regression R² 0 and,
    with ``known_loss`` (MSE on a standardized target), the loss 1.

    >>> trivial_baseline(np.array([0, 0, 0, 1]), "multiclass")["metric"], trivial_baseline(np.array([[1.0, 0.0], [0.0, 0.0]]), "multilabel")["metric"]
    (0.75, 0.75)
    """
    if kind == "regression":
        return {"metric": 0.0, "loss": 1.0 if known_loss else None}
    if kind == "multilabel":
        p = np.asarray(y, dtype=np.float64).mean(0)  # each label's share of 1s
        q = np.clip(p, 1e-12, 1 - 1e-12)
        return {"metric": float(np.maximum(p, 1 - p).mean()), "loss": float(-(q * np.log(q) + (1 - q) * np.log(1 - q)).mean())}
    p = np.bincount(np.asarray(y).astype(int)) / len(y)
    p = p[p > 0]
    return {"metric": float(p.max()), "loss": float(-(p * np.log(p)).sum())}


def data_checks(arrays: dict[str, tuple[np.ndarray, np.ndarray]], task: str,
                class_names: list[str] | None = None) -> list[dict[str, str]]:
    """Diagnoses of the data itself: class imbalance, and validation/test rows that are copies of training
    rows (same input and same target; none reported when the training inputs themselves repeat
    `REPEATED_INPUTS` or more times on average: see `train_test_overlap`). The rules are `DATA_RULES`; they
    do not conflict, so their findings come back as they are.

    >>> X = np.arange(20, dtype=np.float32).reshape(10, 2); y = np.array([0] * 9 + [1])
    >>> [d["code"] for d in data_checks({"train": (X, y), "test": (X[:3], y[:3])}, "classification")]
    ['class_imbalance', 'train_test_overlap']
    >>> grid = np.repeat(np.arange(10, dtype=np.float32), 20)[:, None]  # 10 inputs, 20 noisy targets each
    >>> noisy = np.random.default_rng(0).normal(size=200)
    >>> data_checks({"train": (grid[::2], noisy[::2]), "test": (grid[1::2], noisy[1::2])}, "regression")
    []
    """
    return [f for _, f in run_rules(DataEvidence.from_arrays(arrays, task, class_names), DATA_RULES)]
