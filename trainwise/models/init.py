"""Weight initialization schemes for Linear and Conv layers (biases to zero for every scheme but 'default')."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import check_choice
from ..options import INITS

__all__ = ["INITS", "init_weights"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default", *, std: float = 0.01) -> nn.Module:
    """Re-initialize weights in place: 'default' keeps PyTorch's (Kaiming-uniform with a=√5), 'xavier'
    (Glorot uniform, for tanh/sigmoid), 'kaiming' (He normal, fan-in, for ReLU), 'normal' (N(0, ``std``²), small).

    >>> m = init_weights(nn.Linear(1000, 10), "normal")
    >>> round(m.weight.std().item(), 3), m.bias.abs().sum().item()
    (0.01, 0.0)
    """
    check_choice("init", scheme, INITS)
    if scheme == "default":
        return model
    for layer in model.modules():
        if not isinstance(layer, _LAYERS):
            continue
        if scheme == "xavier":
            nn.init.xavier_uniform_(layer.weight)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        else:
            nn.init.normal_(layer.weight, 0.0, std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return model
