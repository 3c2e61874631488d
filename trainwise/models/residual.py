"""Residual networks, the lecture's answer to vanishing gradients: each block adds its output to its input, so
the gradient reaches the first layers through the identity path however deep the network is.

Both are pre-activation designs (He et al. 2016, "Identity Mappings in Deep Residual Networks"): a block is
``x + F(x)`` with nothing after the sum, so a block whose last layer is zero is exactly the identity and the
skip path stays clean from the input layer to the head. ``act`` is an activation layer class (``nn.ReLU``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ResidualMLPBlock", "ResMLP", "PreActBlock", "ResNet"]


class ResidualMLPBlock(nn.Module):
    """``x + Linear(Dropout(act(Linear(act(Norm(x))))))``; Norm is BatchNorm1d with ``batch_norm``, else nothing.

    >>> import torch
    >>> block = ResidualMLPBlock(4, act=nn.ReLU)
    >>> _ = nn.init.zeros_(block.fc2.weight), nn.init.zeros_(block.fc2.bias)
    >>> x = torch.randn(3, 4)
    >>> torch.equal(block(x), x)  # the inner path contributes nothing: the skip alone
    True
    """

    def __init__(self, width: int, *, act: Callable[[], nn.Module], dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        self.norm = nn.BatchNorm1d(width) if batch_norm else None
        self.act1 = act()
        self.fc1 = nn.Linear(width, width)
        self.act2 = act()
        self.drop = nn.Dropout(dropout) if dropout else None
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.fc1(self.act1(x if self.norm is None else self.norm(x))))
        return x + self.fc2(h if self.drop is None else self.drop(h))


class ResMLP(nn.Sequential):
    """Flatten -> Linear(in, width) -> ``blocks`` residual blocks -> (BatchNorm) -> act -> Linear head; the
    head's norm and activation close the last block's un-activated sum (the pre-activation design).

    >>> import torch
    >>> ResMLP(4, 8, 2, 3, act=nn.ReLU)(torch.zeros(5, 4)).shape
    torch.Size([5, 3])
    """

    def __init__(self, in_features: int, width: int, blocks: int, out_features: int, *, act: Callable[[], nn.Module],
                 dropout: float | list[float] = 0.0, batch_norm: bool = False):
        rates = list(dropout) if isinstance(dropout, (list, tuple)) else [dropout] * blocks  # one rate, or one per block
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(in_features, width)]
        layers += [ResidualMLPBlock(width, act=act, dropout=p, batch_norm=batch_norm) for p in rates]
        layers += [nn.BatchNorm1d(width)] if batch_norm else []
        layers += [act(), nn.Linear(width, out_features)]
        super().__init__(*layers)


class PreActBlock(nn.Module):
    """The basic pre-activation block: ``shortcut(a) + conv3x3(act(BN(conv3x3(a))))`` with ``a = act(BN(x))``;
    the first conv has ``stride``. The shortcut is ``x`` itself, or a 1x1 conv (with the stride) on ``a`` when
    the stride or the channel count changes.

    >>> import torch
    >>> PreActBlock(4, 8, stride=2, act=nn.ReLU)(torch.zeros(2, 4, 8, 8)).shape
    torch.Size([2, 8, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, act: Callable[[], nn.Module]):
        super().__init__()
        self.bn1, self.act1 = nn.BatchNorm2d(in_channels), act()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(out_channels), act()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) \
            if stride != 1 or in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        return skip + self.conv2(self.act2(self.bn2(self.conv1(a))))


class ResNet(nn.Sequential):
    """A small pre-activation ResNet for images: conv3x3 stem to ``channels[0]``, then per channel count a stage
    of ``blocks`` `PreActBlock` s (every stage after the first halves the map with stride 2, until it is one
    pixel wide), then BatchNorm -> act -> global average pool -> (Dropout) -> Linear head.

    >>> import torch
    >>> ResNet((1, 8, 8), [4, 8], 1, 3, act=nn.ReLU)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, input_shape: tuple[int, int, int], channels: list[int], blocks: int, out_features: int, *,
                 act: Callable[[], nn.Module], dropout: float = 0.0):
        c, h, w = input_shape
        layers: list[nn.Module] = [nn.Conv2d(c, channels[0], 3, padding=1, bias=False)]
        c = channels[0]
        for i, ch in enumerate(channels):
            stride = 2 if i > 0 and min(h, w) >= 2 else 1  # a 1-pixel map has nothing left to halve
            h, w = (h + 1) // 2 if stride == 2 else h, (w + 1) // 2 if stride == 2 else w
            stage = [PreActBlock(c if b == 0 else ch, ch, stride=stride if b == 0 else 1, act=act) for b in range(blocks)]
            layers.append(nn.Sequential(*stage))
            c = ch
        layers += [nn.BatchNorm2d(c), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        layers += [nn.Dropout(dropout)] if dropout else []
        layers.append(nn.Linear(c, out_features))
        super().__init__(*layers)
