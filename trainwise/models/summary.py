"""The model summary users know from torchinfo (its table, computed by torchinfo), with per-layer rows as data
(output shape, parameters, trainable) and trainwise's estimate of the memory training needs."""
from __future__ import annotations

import math
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
    table: str = ""  # torchinfo's rendering

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
        rule = self.table.splitlines()[0] if self.table else ""
        return "\n".join([self.table.rstrip(),
                          f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable, "
                          f"{self.total_params - self.trainable_params:,} frozen), {_mb(self.param_bytes)} of weights",
                          f"input {list(self.input_shape)}, batch {self.batch_size}: activations {_mb(self.activation_bytes)}; "
                          f"training with Adam needs about {_mb(self.training_bytes)}", rule]).strip()


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB" if n >= 2**16 else f"{n / 2**10:.1f} KB"


def summarize(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 16,
              device: str | torch.device = "cpu") -> ModelSummary:
    """torchinfo's summary of one batch of zeros through ``model`` (eval mode): every leaf layer's output shape
    and parameters, its table as ``str()``, plus trainwise's estimate of the memory training needs.

    >>> from trainwise.models import MLP
    >>> s = summarize(MLP(4, [8], 3), (4,))
    >>> [r[:4] for r in s.rows[1:3]], s.total_params
    ([('1', 'Linear', (16, 8), 40), ('2', 'ReLU', (16, 8), 0)], 67)
    """
    import torchinfo  # lazy: ~10 ms, only where a summary is shown

    names = {id(m): name for name, m in model.named_modules()}
    was = model.training
    try:
        stats = torchinfo.summary(model, input_size=(batch_size, *input_shape), device=torch.device(device), verbose=0, mode="eval",
                                  col_names=("output_size", "num_params", "trainable"), row_settings=("var_names",), depth=32)
    finally:
        model.train(was)
    summary = ModelSummary(input_shape=tuple(input_shape), batch_size=batch_size, table=str(stats))
    for layer in stats.summary_list:
        if not layer.is_leaf_layer:
            continue
        shape = tuple(layer.output_size) if isinstance(layer.output_size, (list, tuple)) else ()
        params = list(layer.module.parameters(recurse=False))
        n = sum(p.numel() for p in params)
        summary.rows.append((names.get(id(layer.module)) or layer.class_name, layer.class_name, shape, n,
                             bool(params) and all(p.requires_grad for p in params)))
        summary.activation_bytes += math.prod(shape) * 4 if shape else 0  # float32 outputs
    params = list(model.parameters())
    summary.total_params = sum(p.numel() for p in params)
    summary.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    summary.param_bytes = sum(p.numel() * p.element_size() for p in params)
    return summary
