"""Per-epoch metrics accumulated on the device: a handful of tensor ops per step, one host sync per epoch.

(torchmetrics' ``Metric.update`` costs tens of microseconds of Python per call and per metric; at the
step times of small models that alone would exceed the benchmark's 10% budget, so the three sums are
kept here directly.) The ``--metrics`` beyond those (F1, AUROC, ...) need every output: an accumulator asked
for them (validation and test) keeps the outputs on the device, one reference per step, and computes them once
at epoch end with torchmetrics' functional API, imported only then (it costs ~1.2 s of start-up).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import TrainwiseError
from ..models.tabular import combine_members
from ..options import BINARY_DEFAULT_METRICS, CLASSIFICATION_METRICS, MULTILABEL_DEFAULT_METRICS, MULTILABEL_METRICS, REGRESSION_METRICS

__all__ = ["MetricAccumulator", "MemberMetrics", "main_metric", "extra_metrics", "per_class_table", "per_label_table",
           "resolve_extra_metrics", "load_extra_metrics"]


def load_extra_metrics() -> None:
    """Import torchmetrics now (~1.2 s), before the first epoch, so its cost does not land in an epoch's time."""
    import torchmetrics.functional.classification  # noqa: F401 - lazy on purpose: this is the one place it loads early
    import torchmetrics.functional.regression  # noqa: F401 - lazy on purpose: as above


def main_metric(kind: str) -> str:
    return "r2" if kind == "regression" else "accuracy"


def resolve_extra_metrics(spec: str | tuple[str, ...], *, task: str, n_classes: int | None, multilabel: bool = False) -> tuple[str, ...]:
    """The ``--metrics`` a run computes on validation and test: ``auto`` gives `BINARY_DEFAULT_METRICS` for two
    classes, `MULTILABEL_DEFAULT_METRICS` for several label columns, and nothing else; names that do not fit the
    task are an error naming them.

    >>> resolve_extra_metrics("auto", task="classification", n_classes=2)[:3], resolve_extra_metrics("auto", task="regression", n_classes=None)
    (('balanced_accuracy', 'f1', 'precision'), ())
    """
    if spec == "auto":
        return MULTILABEL_DEFAULT_METRICS if multilabel else BINARY_DEFAULT_METRICS if task == "classification" and n_classes == 2 else ()
    names = tuple(spec)
    allowed = MULTILABEL_METRICS if multilabel else CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    wrong = [n for n in names if n not in allowed]
    if wrong:
        task = "multi-label" if multilabel else task
        raise TrainwiseError(f"--metrics {','.join(wrong)}: not a {task} metric (this run's task is {task})",
                             hint=f"use {', '.join(allowed[:6])}{', ...' if len(allowed) > 6 else ''} for {task}, or --metrics auto")
    too_wide = [n for n in names if n.startswith("top") and n_classes and int(n[3:].split("_")[0]) >= n_classes]
    if too_wide:
        raise TrainwiseError(f"--metrics {too_wide[0]}: the data has {n_classes} classes, so the true class is always among "
                             f"the top {too_wide[0][3:].split('_')[0]}", hint=f"use top-k with k < {n_classes}, or accuracy alone")
    return names


class MetricAccumulator:
    """Sums per-sample loss and correct predictions (classification) or errors (regression).

    ``target_std`` converts errors of a standardized regression target back to the original units; a list
    (one per target column: a multi-output regression) keeps the sums per column and reports MAE, RMSE and R²
    averaged over the columns (scikit-learn's ``uniform_average``).
    """

    def __init__(self, kind: str, device: torch.device, *, target_std: float = 1.0, target_mean: float = 0.0,
                 extra_metrics: tuple[str, ...] = (), n_classes: int | None = None):
        self.kind, self.target_std, self.count = kind, target_std, 0
        self.target_mean, self.extra_metrics, self.n_classes = target_mean, tuple(extra_metrics), n_classes
        self.outputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # kept only for extra_metrics
        self.extra: dict[str, list] = {}  # name -> [device sum, number of values]: per-step means (penalty, grad norm)
        self.device = device
        z = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_sum, self.correct = z.clone(), z.clone()
        self.finite_batches = torch.zeros((), dtype=torch.int64, device=device)  # batches before the loss sum broke
        if kind == "regression":  # sums per target column (one, or several: a multi-output regression)
            self.scales = list(target_std) if isinstance(target_std, (list, tuple)) else [target_std]
            z = torch.zeros(len(self.scales), dtype=torch.float64, device=device)
            self.abs_err, self.sq_err, self.y_sum, self.y_sq = z.clone(), z.clone(), z.clone(), z.clone()

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        if isinstance(y, tuple):  # a weighted training batch (y, w): the loss is weighted, the metrics count rows
            y = y[0]
        n = y.shape[0]
        self.count += n
        if self.extra_metrics:
            self.outputs.append((out, y))
        self.loss_sum.add_(loss, alpha=n)  # mean-reduced loss -> per-sample sum
        self.finite_batches.add_(torch.isfinite(self.loss_sum))  # NaN/inf stick: counts batches before divergence
        if self.kind == "multiclass":
            self.correct.add_((out.argmax(-1) == y).sum())
        elif self.kind == "binary":
            self.correct.add_(((out > 0) == (y > 0.5)).sum())
        elif self.kind == "multilabel":  # accuracy: the share of the labels right (1 - Hamming loss)
            self.correct.add_(((out > 0) == (y > 0.5)).sum() / y.shape[1])
        else:
            y = y.reshape(len(y), -1)
            err = out.reshape(y.shape) - y
            self.abs_err.add_(err.abs().sum(0))
            self.sq_err.add_(err.square().sum(0))
            self.y_sum.add_(y.sum(0))
            self.y_sq.add_(y.square().sum(0))

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
        if self.extra_metrics and self.outputs:
            out, y = (torch.cat(t) for t in zip(*self.outputs))
            logs |= {f"{prefix}/{k}": v for k, v in extra_metrics(self.extra_metrics, out, y, kind=self.kind, n_classes=self.n_classes,
                                                                   target_std=self.target_std, target_mean=self.target_mean).items()}
        if self.extra:
            sums = torch.stack([s for s, _ in self.extra.values()]).tolist()
            logs |= {f"{prefix}/{k}": v / max(c, 1) for (k, (_, c)), v in zip(self.extra.items(), sums)}
        return logs

    def _compute(self, prefix: str) -> dict[str, float]:
        n = max(self.count, 1)
        if self.kind == "regression":
            k = len(self.scales)
            flat = torch.cat([self.loss_sum[None], self.abs_err, self.sq_err, self.y_sum, self.y_sq]).tolist()  # the one host sync
            loss, (abs_err, sse, ys, ys2) = flat[0], [flat[1 + i * k:1 + (i + 1) * k] for i in range(4)]
            mean = lambda v: sum(v) / len(v)  # noqa: E731 - several targets: scikit-learn's uniform average
            r2 = [1.0 - e / (q - m * m / n) if q - m * m / n > 0 else float("nan") for e, m, q in zip(sse, ys, ys2)]
            return {f"{prefix}/loss": loss / n, f"{prefix}/mae": mean([a / n * sd for a, sd in zip(abs_err, self.scales)]),
                    f"{prefix}/rmse": mean([(e / n) ** 0.5 * sd for e, sd in zip(sse, self.scales)]), f"{prefix}/r2": mean(r2)}
        loss, correct = torch.stack([self.loss_sum, self.correct]).tolist()  # the one host sync
        return {f"{prefix}/loss": loss / n, f"{prefix}/accuracy": correct / n}


class MemberMetrics(MetricAccumulator):
    """`MetricAccumulator` for an efficient ensemble (`models.tabular.TabularNet`): its training outputs,
    ``(batch, k, d)``, are scored by the members' combined prediction, as evaluation scores them."""

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        super().update(combine_members(out, self.kind) if out.ndim == 3 else out, y, loss)


def extra_metrics(names: tuple[str, ...], out: torch.Tensor, y: torch.Tensor, *, kind: str, n_classes: int | None = None,
                  target_std: float = 1.0, target_mean: float = 0.0) -> dict[str, float]:
    """``names`` (from `trainwise.options.CLASSIFICATION_METRICS` / ``REGRESSION_METRICS``) for raw outputs ``out``
    and targets ``y``, with torchmetrics' functional API. ``kind``: how outputs are read ('multiclass' logits,
    'binary' one logit, 'regression' standardized values, undone with ``target_std``/``target_mean`` for MAPE).

    >>> out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]]); y = torch.tensor([0, 1, 1, 1])
    >>> {k: round(v, 3) for k, v in extra_metrics(("f1", "recall", "balanced_accuracy", "auroc"), out, y, kind="multiclass").items()}
    {'f1': 0.8, 'recall': 0.667, 'balanced_accuracy': 0.833, 'auroc': 1.0}
    """
    import torchmetrics.functional.classification as C  # lazy: ~1.2 s to import, paid only by runs that ask for these metrics

    out = out.float()
    if kind == "regression":
        from torchmetrics.functional.regression import mean_absolute_percentage_error  # lazy: as above
        std, mean = torch.as_tensor(target_std, dtype=out.dtype), torch.as_tensor(target_mean, dtype=out.dtype)  # per column
        pred = out.reshape(y.shape) * std + mean
        return {"mape": float(mean_absolute_percentage_error(pred, y * std + mean))}
    if kind == "multilabel":
        return _multilabel_metrics(names, out, y)
    y = y.reshape(-1).long()
    if kind == "binary":
        logit = out.reshape(-1)
        probs = torch.stack([torch.zeros_like(logit), logit], 1).softmax(-1)  # = [1 - sigmoid, sigmoid]
        n_classes = 2
    else:
        probs = out.softmax(-1)
        n_classes = out.shape[-1]
    pred, values = probs.argmax(-1), {}
    two = n_classes == 2
    for name in names:
        fn, avg = _averaged(name)
        if fn:
            if two and not avg:
                v = getattr(C, f"binary_{fn}")(pred, y)
            else:
                v = getattr(C, f"multiclass_{fn}")(pred, y, n_classes, average=avg or "macro")
        elif name == "balanced_accuracy":  # the mean recall over the classes present (scikit-learn's definition)
            recall, present = C.multiclass_recall(pred, y, n_classes, average=None), torch.bincount(y, minlength=n_classes) > 0
            v = recall[present].mean()
        elif name in ("auroc", "average_precision"):
            v = getattr(C, f"binary_{name}")(probs[:, 1], y) if two else \
                getattr(C, f"multiclass_{name}")(probs, y, n_classes, average="macro")
        elif name == "log_loss":
            v = F.nll_loss(probs.clamp_min(1e-15).log(), y)  # unweighted, whatever class weights the loss has
        else:  # topK_accuracy
            k = int(name[3:].split("_")[0])
            v = C.multiclass_accuracy(probs, y, n_classes, average="micro", top_k=min(k, n_classes))
        values[name] = float(v)
    return values


def _averaged(name: str) -> tuple[str | None, str]:
    """A metric name as torchmetrics' function and average: ``f1_micro`` -> (f1_score, micro); not F1, precision
    or recall -> (None, "").

    >>> _averaged("f1_micro"), _averaged("recall"), _averaged("auroc")
    (('f1_score', 'micro'), ('recall', ''), (None, ''))
    """
    base, _, avg = name.partition("_")
    fn = {"f1": "f1_score", "precision": "precision", "recall": "recall"}.get(base)
    return (fn, avg) if fn else (None, "")


def _multilabel_metrics(names: tuple[str, ...], out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """`extra_metrics` for several label columns: one logit per label; averages over the labels (f1 alone: macro).

    >>> out = torch.tensor([[2.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]); y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> {k: round(v, 3) for k, v in _multilabel_metrics(("exact_match", "f1_micro", "auroc"), out, y).items()}
    {'exact_match': 0.667, 'f1_micro': 0.857, 'auroc': 0.875}
    """
    import torchmetrics.functional.classification as C  # lazy: see extra_metrics

    probs, target, n = out.sigmoid(), y.long(), y.shape[1]
    values = {}
    for name in names:
        fn, avg = _averaged(name)
        if fn:
            v = getattr(C, f"multilabel_{fn}")(probs, target, n, average=avg or "macro")
        elif name == "exact_match":
            v = C.multilabel_exact_match(probs, target, n)
        elif name in ("auroc", "average_precision"):
            v = getattr(C, f"multilabel_{name}")(probs, target, n, average="macro")
        else:  # log_loss: the mean binary cross-entropy over the labels
            v = F.binary_cross_entropy(probs.clamp(1e-15, 1 - 1e-15), y.float())
        values[name] = float(v)
    return values


def per_label_table(pred: torch.Tensor, y: torch.Tensor, labels: list[str]) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1 and support (rows with a 1) of each label column from 0/1 predictions and targets.

    >>> per_label_table([[1, 0], [1, 1], [0, 1]], [[1, 0], [0, 1], [0, 1]], ["spam", "urgent"])[0]
    {'label': 'spam', 'precision': 0.5, 'recall': 1.0, 'f1': 0.6667, 'support': 1}
    """
    pred, y = np.asarray(pred) > 0.5, np.asarray(y) > 0.5
    return [{"label": name, **_scores(int((pred[:, j] & y[:, j]).sum()), int(pred[:, j].sum()), int(y[:, j].sum()))}
            for j, name in enumerate(labels)]


def _scores(tp: int, predicted: int, support: int) -> dict[str, float | int]:
    """Precision, recall, F1 (rounded to 4 places) and support from the counts of true positives, predicted
    positives and actual positives; 0 where a count is 0."""
    p, r = (tp / predicted if predicted else 0.0), (tp / support if support else 0.0)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "support": int(support)}


def per_class_table(confusion: list[list[int]], class_names: list[str]) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1 and support of each class from a confusion matrix (rows: true, columns: predicted).

    >>> per_class_table([[3, 1], [0, 4]], ["no", "yes"])[1]
    {'class': 'yes', 'precision': 0.8, 'recall': 1.0, 'f1': 0.8889, 'support': 4}
    """
    return [{"class": name, **_scores(confusion[i][i], sum(r[i] for r in confusion), sum(confusion[i]))}
            for i, name in enumerate(class_names)]
