"""The training doctor: cheap health tracking during training, and a diagnosis in plain words afterwards.

`HealthTracker` (a callback) samples the first optimizer step of every epoch: per-layer gradient norms
(weights only, input layer first), and through temporary forward hooks the ReLU units that fired and the
saturated sigmoid/tanh units. Everything stays on the device until one read at the end of the epoch. It
stops the run at the first epoch whose training loss is not finite, keeping the last good weights.

`diagnose` turns the history, those statistics and the data into ``{"code", "severity", "evidence",
"advice"}`` entries. Severities: ``info`` (worth knowing), ``warning`` (the run is likely worse than it
could be), ``error`` (the run is broken).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ..train.trainer import Callback, Trainer

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
            out = out.detach().flatten(1)
            if isinstance(module, nn.ReLU):
                fired = (out > 0).any(0)
                prev = self.relu_fired_.get(name)
                self.relu_fired_[name] = fired if prev is None or prev.shape != fired.shape else prev | fired
            else:
                edge = 0.99 if isinstance(module, nn.Tanh) else None
                sat = (out.abs() > edge) if edge else ((out < 0.01) | (out > 0.99))
                self._sat[name] = sat.float().mean()
        return hook

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
            if self._last_good is not None:
                trainer.model.load_state_dict(self._last_good)
            trainer.request_stop(f"the training loss became non-finite in epoch {epoch}; "
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


def _entry(code: str, severity: str, evidence: str, advice: str) -> dict[str, str]:
    return {"code": code, "severity": severity, "evidence": evidence, "advice": advice}


def diagnose(history: list[dict[str, float]], stats: dict[str, Any] | None = None, *, kind: str = "multiclass",
             baseline: dict[str, float] | None = None, early_stopped_at: int | None = None,
             restore_best: bool = True) -> list[dict[str, str]]:
    """Diagnoses from a run's history (and `HealthTracker.stats`). ``baseline``: the trivial model's train
    metric and loss (``{"metric": .., "loss": ..}``, e.g. majority class); ``early_stopped_at``: the best epoch
    when early stopping ended the run.

    >>> rows = [{"train/loss": 2.3 - 0.001 * e, "val/loss": 2.3, "train/accuracy": 0.11, "val/accuracy": 0.1} for e in range(8)]
    >>> sorted(d["code"] for d in diagnose(rows, baseline={"metric": 0.1, "loss": 2.3}))
    ['lr_too_low', 'underfitting']
    """
    out: list[dict[str, str]] = []
    stats = stats or {}
    if not history:
        return out
    metric = "r2" if kind == "regression" else "accuracy"
    train = np.array([h.get("train/loss", np.nan) for h in history], dtype=float)
    val = np.array([h.get("val/loss", np.nan) for h in history], dtype=float)
    n = len(history)

    bad = stats.get("non_finite_epoch") or next((i + 1 for i, v in enumerate(train) if not math.isfinite(v)), None)
    if bad:
        out.append(_entry("non_finite_loss", "error", f"the training loss became NaN/inf in epoch {bad}; training stopped "
                          "and the last good weights were kept",
                          "lower the learning rate (--lr), clip gradients (--clip-norm 1.0), check inputs for NaN/inf"))
    finite = train[np.isfinite(train)]

    # --- learning rate ---
    base_loss = (baseline or {}).get("loss")
    if bad or (len(finite) >= 3 and finite[-1] > finite[0] and finite.max() > 2 * finite.min()):
        evidence = (f"the loss became non-finite in epoch {bad}" if bad else
                    f"the training loss rose from {finite[0]:.3g} (epoch 1) to {finite[-1]:.3g} (epoch {len(finite)})")
        out.append(_entry("lr_too_high", "error" if bad else "warning", evidence + ": training diverges",
                          "lower the learning rate 3-10x, or run the LR finder; add --clip-norm 1.0"))
    elif len(finite) >= 3:
        scale = np.percentile(finite, 75) - finite.min()  # robust: one huge first epoch does not hide the rest
        # jumps count only when the curve has a real range (a flat, noisy loss is lr_too_low's business)
        ups = np.diff(finite) > 0.1 * scale if scale > 0.05 * np.median(finite) else np.zeros(len(finite) - 1, bool)
        worse = base_loss is not None and finite.min() > base_loss
        if worse or (len(finite) >= 6 and ups.mean() >= 0.3):
            evidence = (f"the training loss never got below {base_loss:.3g}, what a constant prediction scores "
                        f"(best {finite.min():.3g})" if worse else "")
            if len(finite) >= 6 and ups.mean() >= 0.3:
                evidence += ("; " if evidence else "") + (f"the training loss jumped up in {int(ups.sum())} of "
                                                          f"{len(ups)} epochs: it oscillates")
            out.append(_entry("lr_too_high", "warning", evidence,
                              "lower the learning rate 3-10x (or run the LR finder), or decay it (--schedule cosine)"))
    if len(finite) >= 5 and not bad:
        drop = (finite[0] - finite.min()) / abs(finite[0]) if finite[0] else 0.0
        high = base_loss is None or finite[-1] > 0.5 * base_loss
        if drop < 0.05 and high:
            out.append(_entry("lr_too_low", "warning", f"the training loss moved by {100 * drop:.1f}% in {len(finite)} "
                              f"epochs ({finite[0]:.4g} -> {finite.min():.4g})",
                              "raise the learning rate 3-10x (or run the LR finder); check that the optimizer gets the "
                              "model's parameters"))

    # --- under- and overfitting ---
    last = history[-1]
    train_metric = last.get(f"train/{metric}")
    base_metric = (baseline or {}).get("metric")
    if train_metric is not None and base_metric is not None and not bad:
        span = (1.0 if kind != "regression" else 1.0) - base_metric
        if train_metric < base_metric + 0.2 * span or (base_loss and finite.size and finite[-1] > 0.8 * base_loss):
            out.append(_entry("underfitting", "warning",
                              f"train {metric} {train_metric:.3f} is close to the trivial baseline's {base_metric:.3f} "
                              f"(train loss {finite[-1]:.3g}" + (f" vs the baseline's {base_loss:.3g})" if base_loss else ")"),
                              "make the model bigger (more/wider layers), raise the learning rate, train longer, "
                              "and reduce regularization (dropout, weight decay)"))
    learned = not any(d["code"] in ("underfitting", "lr_too_high", "non_finite_loss") for d in out)
    if np.isfinite(val).any() and learned:
        best = early_stopped_at - 1 if early_stopped_at else int(np.nanargmin(val))
        rising = val[-1] > 1.1 * val[best] and n - 1 - best >= 3 and train[-1] < train[best]
        kept = history[best] if early_stopped_at and restore_best else last  # the epoch whose weights the run keeps
        gap = kept.get(f"train/{metric}", np.nan) - kept.get(f"val/{metric}", np.nan)
        big_gap = math.isfinite(gap) and gap > (0.2 if kind == "regression" else 0.1)
        if rising or big_gap:
            why = (f"validation loss rose from {val[best]:.3g} (epoch {best + 1}) to {val[-1]:.3g} while the training "
                   f"loss kept falling" if rising else "")
            if big_gap:
                why += ("; " if why else "") + (f"train {metric} {kept[f'train/{metric}']:.3f} vs validation "
                                                f"{kept[f'val/{metric}']:.3f} at epoch {history.index(kept) + 1}")
            caught = early_stopped_at is not None and restore_best and not big_gap
            out.append(_entry("overfitting", "info" if caught else "warning",
                              why + (f"; early stopping kept epoch {early_stopped_at}'s weights" if caught else ""),
                              f"the best epoch was {best + 1}: keep early stopping on; add dropout (--dropout 0.3), "
                              "weight decay (--weight-decay 1e-4) or an L2 penalty, augmentation, or more data; "
                              "or use a smaller model"))

    # --- gradients and activations ---
    norms = np.array(stats.get("grad_norms") or [], dtype=float)
    names = stats.get("weight_names") or []
    if norms.size and norms.shape[1] >= 2:
        med = np.nanmedian(np.where(norms > 0, norms, np.nan), axis=0)
        if np.isfinite(med[0]) and np.isfinite(med[-1]) and med[-1] > 0 and med[0] / med[-1] < 1e-3:
            out.append(_entry("vanishing_gradients", "warning",
                              f"the first layer's gradient norm ({names[0]}: {med[0]:.2e}) is {med[-1] / med[0]:.0e}x "
                              f"smaller than the last layer's ({names[-1]}: {med[-1]:.2e})",
                              "use ReLU-family activations (--activation relu), He/Xavier initialization "
                              "(--init kaiming), batch norm (--batch-norm), fewer layers or skip connections"))
        worst = np.nanmax(norms) if np.isfinite(norms).any() else math.inf
        if not np.isfinite(norms).all() or worst > 1e3:
            out.append(_entry("exploding_gradients", "error" if not np.isfinite(norms).all() else "warning",
                              f"a layer's gradient norm reached {worst:.3g}" if math.isfinite(worst)
                              else "a gradient became NaN/inf",
                              "clip gradients (--clip-norm 1.0), lower the learning rate, use batch norm, "
                              "check the weight initialization (--init kaiming/xavier)"))
    sat = {k: v for k, v in (stats.get("saturation") or {}).items() if v > 0.5}
    if sat and not any(d["code"] == "vanishing_gradients" for d in out):
        layer, frac = max(sat.items(), key=lambda kv: kv[1])
        out.append(_entry("vanishing_gradients", "warning", f"{100 * frac:.0f}% of the outputs of activation layer "
                          f"'{layer}' are saturated (near the flat ends of the sigmoid/tanh)",
                          "use ReLU-family activations, standardize inputs, use batch norm or smaller initial weights"))
    dead = stats.get("dead_fraction") or {}
    if dead:
        layer, frac = max(dead.items(), key=lambda kv: kv[1])
        if frac >= 0.2:
            out.append(_entry("dead_units", "warning" if frac >= 0.5 else "info",
                              f"{100 * frac:.0f}% of the ReLU units of layer '{layer}' never fired on the sampled batches",
                              "lower the learning rate, use --activation leaky_relu or gelu, --init kaiming, or batch norm"))
    return out


def data_checks(arrays: dict[str, tuple[np.ndarray, np.ndarray]], task: str,
                class_names: list[str] | None = None) -> list[dict[str, str]]:
    """Diagnoses of the data itself: class imbalance, and identical rows shared between splits.

    >>> X = np.arange(20, dtype=np.float32).reshape(10, 2); y = np.array([0] * 9 + [1])
    >>> [d["code"] for d in data_checks({"train": (X, y), "test": (X[:3], y[:3])}, "classification")]
    ['class_imbalance', 'train_test_overlap']
    """
    out: list[dict[str, str]] = []
    if task == "classification" and "train" in arrays:
        counts = np.bincount(arrays["train"][1].astype(int))
        counts = counts[counts > 0] if counts.size else counts
        if counts.size >= 2 and counts.min() / counts.max() < 0.2:
            names = class_names or [str(i) for i in range(len(counts))]
            full = np.bincount(arrays["train"][1].astype(int))
            lo, hi = int(np.argmin(np.where(full > 0, full, np.iinfo(int).max))), int(np.argmax(full))
            out.append(_entry("class_imbalance", "warning" if counts.min() / counts.max() < 0.05 else "info",
                              f"class '{names[lo]}' has {full[lo]} training rows, class '{names[hi]}' {full[hi]} "
                              f"({counts.min() / counts.max():.2f}:1)",
                              "judge the model by per-class metrics, not accuracy alone; weight the loss by class or "
                              "resample; collect more rows of the rare class"))
    if "train" in arrays:
        seen = {r.tobytes() for r in np.ascontiguousarray(arrays["train"][0]).reshape(len(arrays["train"][0]), -1)}
        for split in ("val", "test"):
            if split not in arrays or not len(arrays[split][0]):
                continue
            rows = np.ascontiguousarray(arrays[split][0]).reshape(len(arrays[split][0]), -1)
            shared = sum(r.tobytes() in seen for r in rows)
            if shared:
                frac = shared / len(rows)
                out.append(_entry("train_test_overlap", "warning" if frac > 0.01 else "info",
                                  f"{shared} of {len(rows)} {split} rows ({100 * frac:.1f}%) are identical to training rows",
                                  f"{split} scores overstate performance on new data: drop duplicates before "
                                  "splitting (or split by group, e.g. per patient/user)"))
    return out
