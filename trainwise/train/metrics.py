"""Per-epoch metrics accumulated on the device: a handful of tensor ops per step, one host sync per epoch.

(torchmetrics' ``Metric.update`` costs tens of microseconds of Python per call and per metric; at the
step times of small models that alone would exceed the benchmark's 10% budget, so the three sums are
kept here directly.)
"""
from __future__ import annotations

import torch

__all__ = ["MetricAccumulator", "main_metric"]


def main_metric(kind: str) -> str:
    return "r2" if kind == "regression" else "accuracy"


class MetricAccumulator:
    """Sums per-sample loss and correct predictions (classification) or errors (regression).

    ``target_std`` converts errors of a standardized regression target back to the original units.
    """

    def __init__(self, kind: str, device: torch.device, *, target_std: float = 1.0):
        self.kind, self.target_std, self.count = kind, target_std, 0
        self.extra: dict[str, list] = {}  # name -> [device sum, number of values]: per-step means (penalty, grad norm)
        self.device = device
        z = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_sum, self.correct = z.clone(), z.clone()
        self.finite_batches = torch.zeros((), dtype=torch.int64, device=device)  # batches before the loss sum broke
        if kind == "regression":
            self.abs_err, self.sq_err, self.y_sum, self.y_sq = z.clone(), z.clone(), z.clone(), z.clone()

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        n = y.shape[0]
        self.count += n
        self.loss_sum.add_(loss, alpha=n)  # mean-reduced loss -> per-sample sum
        self.finite_batches.add_(torch.isfinite(self.loss_sum))  # NaN/inf stick: counts batches before divergence
        if self.kind == "multiclass":
            self.correct.add_((out.argmax(-1) == y).sum())
        elif self.kind == "binary":
            self.correct.add_(((out > 0) == (y > 0.5)).sum())
        else:
            err = out.reshape(y.shape) - y
            self.abs_err.add_(err.abs().sum())
            self.sq_err.add_(err.square().sum())
            self.y_sum.add_(y.sum())
            self.y_sq.add_(y.square().sum())

    @torch.no_grad()
    def add(self, name: str, value: torch.Tensor) -> None:
        """Add one value of an extra per-step quantity; `compute` reports its mean as ``<prefix>/<name>``."""
        slot = self.extra.get(name)
        if slot is None:
            slot = self.extra[name] = [torch.zeros((), dtype=torch.float64, device=self.device), 0]
        slot[0].add_(value)
        slot[1] += 1

    def compute(self, prefix: str) -> dict[str, float]:
        logs = self._compute(prefix)
        if self.extra:
            sums = torch.stack([s for s, _ in self.extra.values()]).tolist()
            logs |= {f"{prefix}/{k}": v / max(c, 1) for (k, (_, c)), v in zip(self.extra.items(), sums)}
        return logs

    def _compute(self, prefix: str) -> dict[str, float]:
        n = max(self.count, 1)
        if self.kind == "regression":
            loss, mae, sse, ys, ys2 = torch.stack([self.loss_sum, self.abs_err, self.sq_err, self.y_sum, self.y_sq]).tolist()
            sst = ys2 - ys * ys / n
            s = self.target_std
            return {f"{prefix}/loss": loss / n, f"{prefix}/mae": mae / n * s, f"{prefix}/rmse": (sse / n) ** 0.5 * s,
                    f"{prefix}/r2": 1.0 - sse / sst if sst > 0 else float("nan")}
        loss, correct = torch.stack([self.loss_sum, self.correct]).tolist()  # the one host sync
        return {f"{prefix}/loss": loss / n, f"{prefix}/accuracy": correct / n}
