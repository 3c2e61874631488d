"""Losses and optimizers by name, with the task/loss compatibility rules in one place."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import TrainwiseError, check_choice
from ..options import CLASSIFICATION_LOSSES, LOSSES, OPTIMIZERS

__all__ = ["LOSSES", "OPTIMIZERS", "SampleWeighted", "resolve_loss", "make_loss", "make_optimizer", "output_size", "target_kind", "class_weights",
           "resolve_device"]

_LOSS_CLASSES = {"cross_entropy": nn.CrossEntropyLoss, "bce_with_logits": nn.BCEWithLogitsLoss, "mse": nn.MSELoss,
                 "l1": nn.L1Loss, "huber": nn.HuberLoss, "multilabel_bce": nn.BCEWithLogitsLoss}
assert tuple(_LOSS_CLASSES) == LOSSES


def resolve_loss(loss: str, task: str, n_classes: int | None, *, multilabel: bool = False) -> str:
    """The loss name to use: ``auto`` picks cross_entropy / mse (multilabel_bce for several label columns: one
    sigmoid and binary cross-entropy per label); an unfit choice is an error."""
    if loss == "auto":
        return "multilabel_bce" if multilabel else "cross_entropy" if task == "classification" else "mse"
    check_choice("loss", loss, LOSSES)
    if multilabel != (loss == "multilabel_bce"):
        raise TrainwiseError(f"loss '{loss}' is for {'one target' if multilabel else 'several 0/1 label columns'}, but the data has "
                             f"{'several label columns' if multilabel else 'one target'}",
                             hint="leave --loss out (auto picks the loss that fits), or " +
                                  ("--loss multilabel_bce" if multilabel else "--loss cross_entropy"))
    if task == "classification" and loss not in CLASSIFICATION_LOSSES:
        raise TrainwiseError(f"loss '{loss}' is for regression but the task is classification",
                             hint="use --loss cross_entropy (or bce_with_logits for two classes), or --task regression")
    if task == "regression" and loss in CLASSIFICATION_LOSSES:
        raise TrainwiseError(f"loss '{loss}' is for classification but the task is regression",
                             hint="use --loss mse, l1 or huber, or --task classification")
    if loss == "bce_with_logits" and n_classes != 2:
        raise TrainwiseError(f"loss 'bce_with_logits' needs exactly 2 classes, the data has {n_classes}",
                             hint="use --loss cross_entropy")
    return loss


def target_kind(loss: str) -> str:
    """How outputs are read: 'multiclass' (argmax of logits), 'binary' (one logit), 'multilabel' (one logit per label
    column), 'regression'."""
    return {"cross_entropy": "multiclass", "bce_with_logits": "binary", "multilabel_bce": "multilabel"}.get(loss, "regression")


def output_size(loss: str, n_classes: int | None, n_targets: int = 1) -> int:
    """The model's outputs per row: a logit per class (multiclass) or per label (multilabel: ``n_classes`` labels),
    one logit (binary), one value per target (regression)."""
    return n_classes if loss in ("cross_entropy", "multilabel_bce") else 1 if loss == "bce_with_logits" else n_targets


def make_loss(loss: str, class_weight: torch.Tensor | None = None) -> nn.Module:
    """The loss module; ``class_weight`` (one weight per class) weights cross-entropy per class, and for
    bce_with_logits makes the positives count ``w[1] / w[0]`` times a negative."""
    cls = _LOSS_CLASSES[check_choice("loss", loss, LOSSES)]
    if class_weight is None:
        return cls()
    if loss == "cross_entropy":
        return cls(weight=class_weight)
    if loss == "bce_with_logits":
        return cls(pos_weight=class_weight[1:2] / class_weight[0])
    if loss == "multilabel_bce":
        raise TrainwiseError("--class-weight weighs the classes of one target; several label columns have no such weights yet",
                             hint="drop --class-weight (per-label positive weights are not supported yet)")
    raise TrainwiseError(f"class weights need a classification loss, not '{loss}'", hint="drop --class-weight for regression")


class SampleWeighted(nn.Module):
    """A loss whose training batches carry a weight per row (``--weight-column``, ``sample_weight``) and/or class
    probabilities per row (soft targets): with a target ``(y, w)`` the weighted mean of the rows' losses,
    sum(w · loss) / sum(w) (a row's loss: the mean over its outputs); with ``(y, w, p)`` the rows' losses against
    the probabilities ``p`` (``w`` None: every row weighs 1); with a plain target (validation, test) the ``base``
    loss as it is. Class weights count in the denominator as in torch's weighted mean (for soft targets, each
    row's expected class weight ``p · weight``), so one-hot ``p`` gives exactly the hard-label loss.

    >>> loss = SampleWeighted(nn.MSELoss())
    >>> out, y = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [0.0]])
    >>> float(loss(out, (y, torch.tensor([1.0, 0.0])))), float(loss(out, (y, torch.tensor([1.0, 1.0])))), float(loss(out, y))
    (1.0, 5.0, 5.0)
    """

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        self.rows = copy.copy(base)  # the same loss (class weights included), one value per output
        self.rows.reduction = "none"

    def forward(self, out: torch.Tensor, y, *, smoothing: float = 0.0) -> torch.Tensor:
        """``smoothing``: label smoothing of a classification loss (a `models.tabular.MemberLoss` asks for it)."""
        if not isinstance(y, tuple):
            return self.base(out, y)
        y, w, p = y if len(y) == 3 else (*y, None)
        target = y if p is None else p
        if smoothing and isinstance(self.base, nn.CrossEntropyLoss):
            per_row = F.cross_entropy(out, target, weight=self.base.weight, reduction="none", label_smoothing=smoothing)
        elif smoothing and isinstance(self.base, nn.BCEWithLogitsLoss):  # regression targets are never smoothed
            per_row = self.rows(out, target * (1 - smoothing) + smoothing / 2)
        else:
            per_row = self.rows(out, target)
        per_row = per_row.reshape(len(per_row), -1).mean(1)
        total = None
        if isinstance(self.base, nn.CrossEntropyLoss) and self.base.weight is not None:
            total = self.base.weight[y] if p is None else p @ self.base.weight  # as in torch's weighted mean
        if w is not None:
            per_row = per_row * w
            total = w if total is None else w * total
        if total is None:
            return per_row.mean()
        return per_row.sum() / total.sum().clamp_min(1e-12)  # a batch of weight-0 rows adds 0, not NaN


def class_weights(spec: str, y_train, class_names: list[str]) -> torch.Tensor:
    """``--class-weight``: ``balanced`` gives class c the weight n / (k · count_c) (scikit-learn's rule: every class
    weighs as much in total; for soft targets, ``y_train`` rows of class probabilities, count_c is class c's total
    probability); ``"1,5"`` gives the weights in class order, one per class.

    >>> class_weights("balanced", [0, 0, 0, 1, 1, 1, 1, 1], ["a", "b"]).tolist(), class_weights("1,5", [0, 1], ["a", "b"]).tolist()
    ([1.3333333730697632, 0.800000011920929], [1.0, 5.0])
    """
    k = len(class_names)
    if spec == "balanced":
        y_train = torch.as_tensor(y_train)
        counts = y_train.double().sum(0) if y_train.ndim == 2 else torch.bincount(y_train.reshape(-1).long(), minlength=k).double()
        if (counts == 0).any():
            missing = [class_names[i] for i in (counts == 0).nonzero().reshape(-1).tolist()]
            raise TrainwiseError(f"--class-weight balanced: class {', '.join(missing)} has no rows in the training split",
                                 hint="give explicit weights (e.g. --class-weight 1,5), or a split with every class in training")
        return (counts.sum() / (k * counts)).float()
    weights = [float(w) for w in spec.split(",")]
    if len(weights) != k:
        raise TrainwiseError(f"--class-weight {spec}: {len(weights)} weight(s) for {k} classes ({', '.join(class_names)})",
                             hint=f"give one weight per class in this order, e.g. {','.join(['1'] * k)}, or balanced")
    return torch.tensor(weights)


def make_optimizer(name: str, params, *, lr: float, momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 0.0, device: torch.device | str = "cpu") -> torch.optim.Optimizer:
    """Build an optimizer by name. Adam/AdamW/SGD use torch's fused kernels where the device supports
    them: same algorithm, ~30% less time per step on CPU for a small MLP."""
    check_choice("optimizer", name, OPTIMIZERS)
    params = list(params)
    fused = {"fused": True} if _fused_ok(params, device) else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _fused_ok(params, device) -> bool:
    kind = torch.device(device).type
    return kind in ("cpu", "cuda") and all(p.is_floating_point() and p.device.type == kind for p in params)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an unavailable or unknown device is an input error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TrainwiseError(f"unknown device '{device}'", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainwiseError(f"device '{device}' was asked for but CUDA is not available here", hint="use --device cpu (or auto)")
    return dev
