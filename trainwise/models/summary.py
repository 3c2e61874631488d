"""A torchinfo-like model summary: per layer output shape, parameters, trainable; totals and memory."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ModelSummary", "summarize"]


@dataclass
class ModelSummary:
    """``rows``: (name, type, output shape, parameters, trainable) per leaf layer; sizes in bytes."""

    rows: list[tuple[str, str, tuple[int, ...], int, bool]] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    param_bytes: int = 0
    activation_bytes: int = 0  # forward outputs of one batch of `batch_size`; backward keeps about as much
    input_shape: tuple[int, ...] = ()
    batch_size: int = 1

    @property
    def training_bytes(self) -> int:
        """Rough training footprint with Adam: weights + grads + 2 moments, and activations kept for backward."""
        return 4 * self.param_bytes + 2 * self.activation_bytes

    def to_dict(self) -> dict:
        return {"layers": [{"name": n, "type": t, "output_shape": list(s), "parameters": p, "trainable": tr}
                           for n, t, s, p, tr in self.rows],
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "param_bytes": self.param_bytes, "activation_bytes": self.activation_bytes,
                "training_bytes_estimate": self.training_bytes, "input_shape": list(self.input_shape),
                "batch_size": self.batch_size}

    def __str__(self) -> str:
        head = f"{'layer':<14}{'type':<14}{'output shape':<22}{'parameters':>12}  trainable"
        lines = [head, "-" * len(head)]
        for name, kind, shape, params, trainable in self.rows:
            lines.append(f"{name:<14}{kind:<14}{str(list(shape)):<22}{params:>12,}  {'yes' if trainable else ('no' if params else '')}")
        lines += ["-" * len(head),
                  f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable, "
                  f"{self.total_params - self.trainable_params:,} frozen), {_mb(self.param_bytes)} of weights",
                  f"input {list(self.input_shape)}, batch {self.batch_size}: activations {_mb(self.activation_bytes)}; "
                  f"training with Adam needs about {_mb(self.training_bytes)}"]
        return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB" if n >= 2**16 else f"{n / 2**10:.1f} KB"


@torch.no_grad()
def summarize(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 16,
              device: str | torch.device = "cpu") -> ModelSummary:
    """Run one batch of zeros through ``model`` (eval mode) and record every leaf layer's output.

    >>> from trainwise.models import MLP
    >>> s = summarize(MLP(4, [8], 3), (4,))
    >>> [r[:4] for r in s.rows[1:3]], s.total_params
    ([('1', 'Linear', (16, 8), 40), ('2', 'ReLU', (16, 8), 0)], 67)
    """
    summary = ModelSummary(input_shape=tuple(input_shape), batch_size=batch_size)
    hooks = []
    for name, module in model.named_modules():
        if list(module.children()):
            continue
        def hook(mod, _inputs, out, name=name):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
            params = list(mod.parameters(recurse=False))
            n = sum(p.numel() for p in params)
            summary.rows.append((name or type(mod).__name__, type(mod).__name__, shape, n,
                                 bool(params) and all(p.requires_grad for p in params)))
            if isinstance(out, torch.Tensor):
                summary.activation_bytes += out.numel() * out.element_size()
        hooks.append(module.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        model(torch.zeros((batch_size, *input_shape), device=device))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    params = list(model.parameters())
    summary.total_params = sum(p.numel() for p in params)
    summary.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    summary.param_bytes = sum(p.numel() * p.element_size() for p in params)
    return summary
