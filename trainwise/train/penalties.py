"""Explicit weight penalties added to the loss: L1 (lasso), L2 (sum of squares) and elastic net (both).

``loss = data_loss + l1 * sum|w| + l2 * sum w**2`` over the penalized parameters: by default every weight
matrix/kernel, not biases and not normalization parameters (penalizing those only fights the data).

How this differs from the optimizer's ``weight_decay`` (see the README's "Regularization" section):

- explicit ``l2=λ`` adds ``2λw`` to each gradient, through the loss, so it is visible in ``train/penalty``;
- ``weight_decay=λ`` with SGD or Adam adds ``λw`` to the gradient inside the optimizer ("coupled"): it is the
  same as ``l2=λ/2`` (the lecture's ``λ/2 ||w||²``), applied to every parameter including biases;
- AdamW's ``weight_decay=λ`` shrinks weights directly, ``w -= lr·λ·w``, outside Adam's adaptive scaling
  ("decoupled"): a weight with large past gradients is decayed as much as any other, which Adam+L2 does not do.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import TrainwiseError, check_choice

__all__ = ["l1_penalty", "l2_penalty", "elastic_net_penalty", "penalized_parameters", "Penalty", "PENALIZE"]

PENALIZE = ("weights", "all")
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def penalized_parameters(model: nn.Module, penalize: str = "weights") -> list[nn.Parameter]:
    """The parameters a penalty applies to: 'weights' (no biases, no normalization layers) or 'all'.

    >>> [tuple(p.shape) for p in penalized_parameters(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))]
    [(2, 3)]
    """
    check_choice("penalize", penalize, PENALIZE)
    if penalize == "all":
        return [p for p in model.parameters() if p.requires_grad]
    params = []
    for module in model.modules():
        if isinstance(module, _NORM_LAYERS):
            continue
        params += [p for name, p in module.named_parameters(recurse=False)
                   if p.requires_grad and not name.endswith("bias") and p.ndim > 1]
    return params


def _as_tensors(x: Any, penalize: str) -> list[torch.Tensor]:
    if isinstance(x, nn.Module):
        return penalized_parameters(x, penalize)
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        return [torch.as_tensor(np.asarray(x, dtype=np.float64))]
    raise TrainwiseError(f"cannot compute a penalty of a {type(x).__name__}",
                         hint="pass a numpy array, a list of numbers, a tensor or an nn.Module")


def _result(value: torch.Tensor, x: Any) -> Any:
    return value if isinstance(x, (torch.Tensor, nn.Module)) else float(value)


def l1_penalty(x: Any, lam: float = 1.0, *, penalize: str = "weights") -> Any:
    """``lam * sum(|w|)`` of an array (-> float), a tensor or a module's penalized weights (-> tensor).

    >>> l1_penalty([1, -2, 3, -4], 0.5)
    5.0
    """
    return _result(lam * sum(t.abs().sum() for t in _as_tensors(x, penalize)), x)


def l2_penalty(x: Any, lam: float = 1.0, *, penalize: str = "weights") -> Any:
    """``lam * sum(w**2)`` (sum of squares, no 1/2) of an array, a tensor or a module's penalized weights.

    >>> l2_penalty([0.5, -1, 1.5, -2], 1)
    7.5
    """
    return _result(lam * sum(t.square().sum() for t in _as_tensors(x, penalize)), x)


def elastic_net_penalty(x: Any, l1: float, l2: float, *, penalize: str = "weights") -> Any:
    """``l1 * sum|w| + l2 * sum w**2``.

    >>> elastic_net_penalty([1, -2], l1=1, l2=0.5)
    5.5
    """
    return _result(l1_penalty(_tensor_or(x), l1, penalize=penalize) + l2_penalty(_tensor_or(x), l2, penalize=penalize), x)


def _tensor_or(x: Any) -> Any:
    return x if isinstance(x, (torch.Tensor, nn.Module)) else torch.as_tensor(np.asarray(x, dtype=np.float64))


class Penalty:
    """The penalty term the trainer adds to each batch's loss; the parameter list is fixed at construction.

    >>> m = nn.Linear(4, 1, bias=False); _ = nn.init.constant_(m.weight, 2.0)
    >>> Penalty(m, l1=1.0)().item()
    8.0
    """

    def __init__(self, model: nn.Module, *, l1: float = 0.0, l2: float = 0.0, penalize: str = "weights"):
        if l1 < 0 or l2 < 0:
            raise TrainwiseError(f"penalty strengths must be >= 0, got l1={l1}, l2={l2}", hint="use e.g. --l2 1e-4")
        self.l1, self.l2 = l1, l2
        self.params: Iterable[torch.Tensor] = penalized_parameters(model, penalize)
        if not self.params:
            raise TrainwiseError("the penalty has no parameters to act on (the model has no weight matrices)",
                                 hint="use --penalize all, or drop --l1/--l2")

    def __call__(self) -> torch.Tensor:
        total = None
        if self.l1:
            total = self.l1 * torch.stack([p.abs().sum() for p in self.params]).sum()
        if self.l2:
            sq = self.l2 * torch.stack([p.square().sum() for p in self.params]).sum()
            total = sq if total is None else total + sq
        return total
