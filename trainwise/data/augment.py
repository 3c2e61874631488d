"""Batched image augmentation on the training device, for training batches only.

``--augment flip,rotate=10,crop=0.8,jitter=0.2`` (the lecture's RandomHorizontalFlip, RandomRotation(10),
RandomResizedCrop, ColorJitter(brightness=0.2)). Flip, rotation and resized crop are composed into one affine
matrix per image and applied with a single ``grid_sample`` over the whole batch; jitter is three elementwise
ops. kornia's per-transform pipeline was measured at 34 ms per batch of 16 28x28 images on 2 CPU cores (the
training step itself is about 1 ms), so this path uses plain tensor ops instead.

Inputs arrive normalized (``--image-norm``); augmentation works in pixel space ([0, 1]) and normalizes again,
so black padding stays black and jitter means what it says. Random numbers come from the augmenter's own
seeded generator, which is saved in checkpoints: a resumed run draws the same augmentations.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..errors import TrainwiseError, check_choice

__all__ = ["AUGMENTS", "parse_augment", "Augment", "AugmentedBatches", "check_images"]

# name -> (default value, what the value means)
AUGMENTS = {"flip": (0.5, "probability of a horizontal flip"),
            "vflip": (0.5, "probability of a vertical flip"),
            "rotate": (10.0, "maximum rotation in degrees (uniform in [-v, v])"),
            "crop": (0.8, "random resized crop: smallest kept area fraction (aspect 3/4..4/3), resized back"),
            "translate": (0.1, "maximum shift as a fraction of width/height"),
            "jitter": (0.2, "brightness/contrast (and saturation for RGB) factors uniform in [1-v, 1+v]")}


def parse_augment(spec: str | None) -> dict[str, float]:
    """``"flip,rotate=10"`` -> ``{"flip": 0.5, "rotate": 10.0}``; empty or ``none`` -> ``{}``.

    >>> parse_augment("flip,rotate=15,crop=0.7")
    {'flip': 0.5, 'rotate': 15.0, 'crop': 0.7}
    """
    out: dict[str, float] = {}
    if not spec or spec.strip().lower() == "none":
        return out
    for part in spec.split(","):
        name, _, value = part.strip().partition("=")
        check_choice("augmentation", name, AUGMENTS)
        try:
            v = float(value) if value else AUGMENTS[name][0]
        except ValueError:
            raise TrainwiseError(f"augment '{part}': '{value}' is not a number", hint=f"e.g. {name}={AUGMENTS[name][0]}") from None
        bounds = {"flip": (0, 1), "vflip": (0, 1), "rotate": (0, 180), "crop": (0.01, 1), "translate": (0, 1), "jitter": (0, 1)}[name]
        if not bounds[0] <= v <= bounds[1]:
            raise TrainwiseError(f"augment '{part}': {v:g} is outside [{bounds[0]}, {bounds[1]}] ({AUGMENTS[name][1]})",
                                 hint=f"e.g. {name}={AUGMENTS[name][0]}")
        out[name] = v
    return out


class Augment:
    """Random geometry (one fused affine resample) and colour jitter for a batch (B, C, H, W).

    >>> aug = Augment("flip,rotate=10", mean=[0.5], std=[0.5], seed=0)
    >>> aug(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(self, spec: str | dict[str, float], *, mean: list[float], std: list[float], seed: int = 0):
        self.ops = parse_augment(spec) if isinstance(spec, str) else dict(spec)
        self.mean, self.std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same draws on every device

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        x = x * std + mean  # pixel space
        u = torch.rand(B, 12, generator=self.generator)  # all of this batch's random numbers in one draw
        if any(k in self.ops for k in ("flip", "vflip", "rotate", "crop", "translate")):
            theta = self._affine(u, H, W).to(x.device, x.dtype)
            grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if "jitter" in self.ops:
            x = self._jitter(x, u[:, 7:10].to(x.device, x.dtype))
        return (x - mean) / std

    def _affine(self, u: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Per image a 2x3 matrix from output to input coordinates (normalized to [-1, 1])."""
        ops, B = self.ops, len(u)
        sx, sy, cx, cy = torch.ones(B), torch.ones(B), torch.zeros(B), torch.zeros(B)
        if "crop" in ops:  # area fraction in [crop, 1], log aspect ratio uniform in [3/4, 4/3]
            area = ops["crop"] + (1 - ops["crop"]) * u[:, 0]
            ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
            sx, sy = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
            cx, cy = (1 - sx) * (2 * u[:, 2] - 1), (1 - sy) * (2 * u[:, 3] - 1)
        if "translate" in ops:
            cx = cx + 2 * ops["translate"] * (2 * u[:, 10] - 1)
            cy = cy + 2 * ops["translate"] * (2 * u[:, 11] - 1)
        if "flip" in ops:
            sx = torch.where(u[:, 4] < ops["flip"], -sx, sx)
        if "vflip" in ops:
            sy = torch.where(u[:, 5] < ops["vflip"], -sy, sy)
        angle = torch.deg2rad(ops.get("rotate", 0.0) * (2 * u[:, 6] - 1)) if "rotate" in ops else torch.zeros(B)
        cos, sin = angle.cos(), angle.sin()
        # rotation in pixel units: normalized coordinates stretch x by W and y by H
        theta = torch.stack([torch.stack([cos * sx, -sin * sy * H / W, cx], 1),
                             torch.stack([sin * sx * W / H, cos * sy, cy], 1)], 1)
        return theta

    def _jitter(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        j = self.ops["jitter"]
        factors = 1 - j + 2 * j * u  # (B, 3): brightness, contrast, saturation
        x = x * factors[:, 0].view(-1, 1, 1, 1)
        gray = x.mean(1, keepdim=True) if x.shape[1] == 1 else (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = (x - gray.mean((2, 3), keepdim=True)) * factors[:, 1].view(-1, 1, 1, 1) + gray.mean((2, 3), keepdim=True)
        if x.shape[1] == 3:
            gray = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = (x - gray) * factors[:, 2].view(-1, 1, 1, 1) + gray
        return x.clamp(0, 1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class AugmentedBatches:
    """Training batches with ``augment`` applied to the inputs; everything else passes through unchanged."""

    def __init__(self, batches, augment: Augment):
        self.batches, self.augment = batches, augment

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def num_samples(self) -> int:
        return self.batches.num_samples

    def head(self, n: int = 2) -> torch.Tensor:
        return self.batches.head(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.batches:
            yield self.augment(x), y

    def state_dict(self) -> dict:
        inner = self.batches.state_dict() if hasattr(self.batches, "state_dict") else {}
        return {**inner, "augment": self.augment.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if hasattr(self.batches, "load_state_dict"):
            self.batches.load_state_dict({k: v for k, v in state.items() if k != "augment"})
        self.augment.load_state_dict(state["augment"])


def check_images(input_shape: tuple[int, ...], spec: str) -> None:
    if len(input_shape) != 3:
        raise TrainwiseError(f"augment='{spec}' needs image data (channels, height, width); these inputs have shape {input_shape}",
                             hint="use --data fashion-mnist, mnist or an image folder, or drop --augment")
