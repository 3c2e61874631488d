"""What each member of a stacked population keeps of its own beyond its weights: its learning rate, weight
decay and momentum on the one optimizer (`MemberSteps`), its L1/L2 penalty (`StackedPenalty`) and its
gradient clipping (`clip_members`), each as the member alone would have it (`train.stacked` holds the stack)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .stacked import StackedMLP

__all__ = ["MemberSteps", "StackedPenalty", "clip_members"]


class MemberSteps:
    """Each member's own learning rate, weight decay and momentum on one optimizer over stacked weights (search
    trials that differ only in them).

    Every optimizer trainwise offers (SGD, Adam, AdamW, RMSprop) takes a step that is linear in its learning
    rate; it applies weight decay either to the gradient (``grad + wd * w``) or, AdamW, to the weights
    (``w * (1 - lr * wd)``); SGD's and RMSprop's momentum buffer is ``momentum * buffer + new``. So the stack's
    optimizer runs with learning rate 1 (times the schedule's factor, which every member shares), no weight
    decay and (when ``momentum`` is given) momentum 1; before its step member k's ``wd_k * w`` is added to its gradient
    and its momentum buffer multiplied by ``momentum_k``; after it member k's step is scaled by ``lr_k`` (and
    AdamW's decay applied; Nesterov's look-ahead takes ``momentum_k`` of the buffer). Only rounding differs
    from the member alone (the tolerance is in the README). `keep` follows `StackedMLP.keep`.

    >>> w = torch.nn.Parameter(torch.ones(2, 1, 1)); opt = torch.optim.SGD([w], lr=1.0)
    >>> steps = MemberSteps(opt, lr=[0.1, 0.5], weight_decay=[0.0, 0.0])
    >>> w.grad = torch.ones(2, 1, 1); opt.step(); [round(v, 6) for v in w.detach().flatten().tolist()]
    [0.9, 0.5]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, lr: Sequence[float], weight_decay: Sequence[float],
                 momentum: Sequence[float] | None = None, decoupled: bool = False, nesterov: bool = False):
        device = next(p.device for g in optimizer.param_groups for p in g["params"])
        vector = lambda v: torch.tensor(list(v), dtype=torch.float32, device=device)  # noqa: E731
        self.lrs = [float(v) for v in lr]  # as given (the tensor below is float32, for the arithmetic)
        self.lr, self.weight_decay = vector(lr), vector(weight_decay)
        self.momentum = vector(momentum) if momentum is not None else None
        self.coupled_decay = not decoupled and any(weight_decay)  # known here: no device read per step
        self.decoupled, self.nesterov, self._before = decoupled, nesterov, []
        self.handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    @staticmethod
    def _per_member(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (p.ndim - 1)))

    def _pre(self, optimizer, args, kwargs) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        with torch.no_grad():
            self._before = [(p, p.detach().clone()) for p in params]
            if self.coupled_decay:
                for p in params:
                    p.grad.addcmul_(p, self._per_member(self.weight_decay, p))
            if self.momentum is not None:
                for p in params:
                    buf = optimizer.state.get(p, {}).get("momentum_buffer")
                    if buf is not None:  # the optimizer adds the new gradient with factor 1: momentum_k * buf + new
                        buf.mul_(self._per_member(self.momentum, p))

    def _post(self, optimizer, args, kwargs) -> None:
        factor = optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            for p, before in self._before:
                lr = self._per_member(self.lr, p)
                p.sub_(before)
                if self.nesterov and self.momentum is not None:  # it looked ahead by 1 * buf: momentum_k * buf
                    p.addcmul_(optimizer.state[p]["momentum_buffer"], factor * (1 - self._per_member(self.momentum, p)))
                p.mul_(lr)  # member k's step at its own learning rate
                if self.decoupled:
                    p.addcmul_(before, 1 - factor * lr * self._per_member(self.weight_decay, p))
                else:
                    p.add_(before)
        self._before = []

    def lr_of(self, k: int) -> float:
        return self.lrs[k]

    def set_lr(self, k: int, lr: float) -> None:
        """Member k's learning rate from the next step on (its own schedule, e.g. the plateau one, changed it)."""
        self.lrs[k] = float(lr)
        self.lr[k] = lr

    def keep(self, idx: Sequence[int]) -> None:
        index = torch.as_tensor(list(idx), dtype=torch.long, device=self.lr.device)
        self.lr, self.weight_decay, self.lrs = self.lr[index], self.weight_decay[index], [self.lrs[i] for i in idx]
        if self.momentum is not None:
            self.momentum = self.momentum[index]


class StackedPenalty:
    """Each member's L1/L2 penalty, ``(K,)``: ``l1_k * sum|w| + l2_k * sum w**2`` over the member's own
    penalized weights (`penalized_parameters`' rule: weight matrices, not biases or batch norm; ``all``: every
    parameter), as `Penalty` computes it for the member alone."""

    def __init__(self, stacked: StackedMLP, *, l1: Sequence[float], l2: Sequence[float], penalize: str = "weights"):
        self.stacked, self.penalize = stacked, penalize
        self.l1, self.l2 = list(l1), list(l2)
        self._refresh()

    def _refresh(self) -> None:
        """The penalized parameters and the strengths as device tensors: built here, not every step (`keep`
        replaces the parameters)."""
        params = self.stacked.penalized_parameters(self.penalize)
        self.params = params
        device = params[0].device
        self._l1 = torch.tensor(self.l1, device=device) if any(self.l1) else None
        self._l2 = torch.tensor(self.l2, device=device) if any(self.l2) else None

    def penalized(self, k: int) -> bool:
        """Whether member k has a penalty at all (one without logs none, as alone)."""
        return bool(self.l1[k] or self.l2[k])

    def __call__(self) -> torch.Tensor:
        total = torch.zeros(self.stacked.size, device=self.params[0].device)
        if self._l1 is not None:
            total = total + self._l1 * torch.stack([p.abs().flatten(1).sum(1) for p in self.params]).sum(0)
        if self._l2 is not None:
            total = total + self._l2 * torch.stack([p.square().flatten(1).sum(1) for p in self.params]).sum(0)
        return total

    def keep(self, idx: Sequence[int]) -> None:
        self.l1, self.l2 = [self.l1[i] for i in idx], [self.l2[i] for i in idx]
        self._refresh()


def clip_members(params: Sequence[torch.Tensor], *, clip_norm: float | None, clip_value: float | None) -> torch.Tensor:
    """Gradient clipping of stacked parameters, member by member, as `Trainer` clips one model: each member's
    gradient norm over all its parameters (returned, ``(K,)``, before clipping), then ``clip_value``
    elementwise, then ``clip_norm`` on the member's total norm (torch's rule: scale by
    ``min(1, clip_norm / (norm + 1e-6))``)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in grads]), 2, dim=0)
    if clip_value is not None:
        for g in grads:
            g.clamp_(-clip_value, clip_value)
    if clip_norm is not None:
        after = torch.linalg.vector_norm(torch.stack([g.flatten(1).norm(dim=1) for g in grads]), 2, dim=0) \
            if clip_value is not None else norms
        coef = (clip_norm / (after + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.ndim - 1))))
    return norms
