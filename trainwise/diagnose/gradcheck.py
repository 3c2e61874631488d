"""Gradient check: autograd against central finite differences, in float64, per parameter tensor."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["gradcheck", "GradcheckResult"]


@dataclass
class GradcheckResult:
    """``per_param``: name -> (largest relative error, elements checked); ``passed`` when all are below ``tol``."""

    per_param: dict[str, tuple[float, int]]
    max_rel_error: float
    tol: float

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.tol

    def __str__(self) -> str:
        lines = [f"{name:<24} max relative error {err:.2e} over {n} elements" for name, (err, n) in self.per_param.items()]
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"{verdict}: largest relative error {self.max_rel_error:.2e} (tolerance {self.tol:.0e})")
        return "\n".join(lines)


def gradcheck(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 1e-6,
              max_elements: int = 20, tol: float = 1e-5, seed: int = 0) -> GradcheckResult:
    """Compare ``d loss / d parameter`` from autograd with ``(L(p+eps) − L(p−eps)) / 2eps`` for up to
    ``max_elements`` sampled entries of every parameter tensor. Runs on a float64 copy in eval mode (dropout
    off), so the model itself is untouched. Relative error: |a − n| / max(|a|, |n|, floor), where the floor is the
    central difference's own rounding noise (|L|·2⁻⁵²/eps) over ``tol``, at least 1e-8: an entry whose gradient is
    below it (a TabM member's scaling: ~1e-8) is judged by its absolute error, which noise alone would fail.

    >>> torch.manual_seed(0); from trainwise.models import MLP
    <torch._C.Generator object at ...>
    >>> r = gradcheck(MLP(3, [5], 2, activation="tanh"), nn.CrossEntropyLoss(), torch.randn(4, 3), torch.tensor([0, 1, 1, 0]))
    >>> r.passed, sorted(r.per_param)[:2]
    (True, ['1.bias', '1.weight'])
    """
    m = copy.deepcopy(model).double().eval()
    x = x.double()
    y = y if not y.is_floating_point() else y.double()
    loss = loss_fn(m(x), y)
    params = dict(m.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()))
    floor = max(1e-8, abs(loss.item()) * torch.finfo(torch.float64).eps / eps / tol)
    g = torch.Generator().manual_seed(seed)
    per_param: dict[str, tuple[float, int]] = {}
    with torch.no_grad():
        for (name, p), grad in zip(params.items(), grads):
            flat, gflat = p.view(-1), grad.reshape(-1)
            idx = torch.randperm(flat.numel(), generator=g)[:max_elements]
            worst = 0.0
            for i in idx.tolist():
                old = flat[i].item()
                flat[i] = old + eps
                up = loss_fn(m(x), y).item()
                flat[i] = old - eps
                down = loss_fn(m(x), y).item()
                flat[i] = old
                numeric, analytic = (up - down) / (2 * eps), gflat[i].item()
                worst = max(worst, abs(analytic - numeric) / max(abs(analytic), abs(numeric), floor))
            per_param[name] = (worst, len(idx))
    return GradcheckResult(per_param, max((e for e, _ in per_param.values()), default=0.0), tol)
