"""Batched image augmentation on the training device, for training batches only.

``--augment flip,rotate=10,crop=0.8,brightness=0.2`` (the lecture's RandomHorizontalFlip, RandomRotation(10),
RandomResizedCrop, ColorJitter(brightness=0.2); ``jitter=v`` also varies contrast and, for RGB, saturation).
Flip, rotation and resized crop are composed into one affine
matrix per image and applied with a single ``grid_sample`` over the whole batch; jitter is two multiply-adds
and a clip. kornia's per-transform pipeline was measured at 1.8 ms per batch of 16 28x28 images on 2 CPU cores, this
one at 0.07 ms (benchmarks/image_throughput.py), so this path uses plain tensor ops instead.

Inputs arrive normalized (``--image-norm``). The result is that of pixel-space augmentation (padding is black;
jitter acts on [0, 1] pixels and clips), computed in normalized units (a test checks it against a pixel-space
reference). Random numbers come from the augmenter's own
seeded generator, which is saved in checkpoints: a resumed run draws the same augmentations.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TrainwiseError
from ..options import AUGMENTS, parse_augment

__all__ = ["AUGMENTS", "parse_augment", "Augment", "AugmentedBatches", "check_images"]

class Augment:
    """Random geometry (one fused affine resample) and colour jitter for a batch (B, C, H, W).

    Random parameters are drawn for a chunk of ``chunk`` images at a time and sent to the device at once, so a
    batch costs a handful of tensor ops (on 2 CPU cores each small op costs ~4 us; at batch 16 they dominate).

    >>> aug = Augment("flip,rotate=10", mean=[0.5], std=[0.5], seed=0)
    >>> aug(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 1, 8, 8])
    """

    _GRAY = (0.299, 0.587, 0.114)  # luma weights, as PIL and torchvision use for RGB -> gray

    def __init__(self, spec: str | dict[str, float], *, mean: list[float], std: list[float], seed: int = 0,
                 chunk: int = 4096):
        self.ops = parse_augment(spec) if isinstance(spec, str) else dict(spec)
        self.mean, self.std, self.chunk = [float(m) for m in mean], [float(s) for s in std], chunk
        self.geometric = any(k in self.ops for k in ("flip", "vflip", "rotate", "crop", "translate"))
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same draws on every device
        self._u: np.ndarray | None = None    # the current chunk's uniforms, (chunk, 12)
        self._state, self._used = None, 0     # generator state before that chunk; rows of it consumed
        self._params: dict = {}               # (device, dtype, C, H, W) -> this chunk's parameters on the device
        self._cache: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Everything stays in normalized units n = (p - mean) / std, p the pixel in [0, 1]: the per-image
        # colour changes are affine in p, hence affine in n, and fold into two multiply-adds.
        B, C, H, W = x.shape
        mean, std, black, base = self._constants(x, H, W)
        theta, jitter = self._next(B, x)
        if self.geometric:
            grid = (theta.reshape(2 * B, 3) @ base).view(B, 2, H, W).permute(0, 2, 3, 1)  # 16x faster than affine_grid
            # grid_sample pads with 0: shift so that 0 is a black pixel, sample, shift back (folded into jitter)
            x = F.grid_sample(x - black, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if jitter is None:
                return x + black
        return self._jitter(x, jitter, mean, std) if jitter is not None else x

    def _next(self, B: int, x: torch.Tensor):
        """This batch's affine matrices and jitter constants: the next B rows of the current chunk."""
        if self._u is None or self._used + B > len(self._u):
            self._state = self.generator.get_state()
            self._u = torch.rand(max(self.chunk, B), 12, generator=self.generator, dtype=torch.float64).numpy()
            self._used, self._params = 0, {}
        key = (x.device, x.dtype, *x.shape[1:])
        if key not in self._params:
            C, H, W = x.shape[1:]
            theta = torch.from_numpy(self._affine(self._u, H, W)).to(x.device, x.dtype) if self.geometric else None
            jitter = torch.from_numpy(self._jitter_constants(self._u[:, 7:10], C)).to(x.device, x.dtype) \
                if "jitter" in self.ops or "brightness" in self.ops else None
            self._params[key] = (theta, jitter)
        theta, jitter = self._params[key]
        i = self._used
        self._used += B
        return (theta[i:i + B] if theta is not None else None), (jitter[i:i + B] if jitter is not None else None)

    def _constants(self, x: torch.Tensor, H: int, W: int):
        key = (x.device, x.dtype, x.shape[1], H, W)
        if key not in self._cache:
            C = x.shape[1]
            mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, C, 1, 1) for v in self._stats(C))
            xs = (torch.arange(W, dtype=torch.float64) * 2 + 1) / W - 1  # pixel centres, align_corners=False
            ys = (torch.arange(H, dtype=torch.float64) * 2 + 1) / H - 1
            base = torch.stack([xs.repeat(H), ys.repeat_interleave(W), torch.ones(H * W, dtype=torch.float64)])
            self._cache[key] = (mean, std, -mean / std, base.to(x.device, x.dtype))
        return self._cache[key]

    def _affine(self, u: np.ndarray, H: int, W: int) -> np.ndarray:
        """Per image a 2x3 matrix from output to input coordinates (normalized to [-1, 1])."""
        ops, B = self.ops, len(u)
        sx, sy, cx, cy = np.ones(B), np.ones(B), np.zeros(B), np.zeros(B)
        if "crop" in ops:  # area fraction in [crop, 1], log aspect ratio uniform in [3/4, 4/3]
            area = ops["crop"] + (1 - ops["crop"]) * u[:, 0]
            ratio = np.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
            sx, sy = np.minimum(np.sqrt(area * ratio), 1), np.minimum(np.sqrt(area / ratio), 1)
            cx, cy = (1 - sx) * (2 * u[:, 2] - 1), (1 - sy) * (2 * u[:, 3] - 1)
        if "translate" in ops:
            cx = cx + 2 * ops["translate"] * (2 * u[:, 10] - 1)
            cy = cy + 2 * ops["translate"] * (2 * u[:, 11] - 1)
        if "flip" in ops:
            sx = np.where(u[:, 4] < ops["flip"], -sx, sx)
        if "vflip" in ops:
            sy = np.where(u[:, 5] < ops["vflip"], -sy, sy)
        angle = np.deg2rad(ops.get("rotate", 0.0) * (2 * u[:, 6] - 1))
        cos, sin = np.cos(angle), np.sin(angle)
        # rotation in pixel units: normalized coordinates stretch x by W and y by H
        return np.stack([np.stack([cos * sx, -sin * sy * H / W, cx], 1),
                         np.stack([sin * sx * W / H, cos * sy, cy], 1)], 1)

    def _jitter_constants(self, u: np.ndarray, C: int) -> np.ndarray:
        """Per image: brightness b then contrast k about the image's mean gray g, p' = k*b*p + (1-k)*b*g. With
        n = (p - m)/s per channel that is n' = a*n + (a*m + c*g - m)/s, a = k*b, c = (1-k)*b, and
        g = sum_c w_c (s_c*mu_c + m_c) from the channel means mu of n. Only mu comes from the data; the rest is
        here: columns a | (a*m - m)/s + c*k0/s | c/s | w*s | saturation, for x = n - shift (shift = black after
        the geometric step, which returns n - black)."""
        j = self.ops.get("jitter", self.ops.get("brightness"))
        m, s = self._stats(C)
        w = np.asarray(self._GRAY if C == 3 else [1.0 / C] * C)
        shift = -m / s if self.geometric else np.zeros(C)
        f = 1 - j + 2 * j * u  # brightness, contrast, saturation factors
        if "jitter" not in self.ops:  # brightness only: contrast and saturation factors 1
            f[:, 1:] = 1.0
        a, c = f[:, :1] * f[:, 1:2], (1 - f[:, 1:2]) * f[:, :1]
        k0 = (w * (s * shift + m)).sum()  # g = (mu_x * w*s).sum() + k0, mu_x the channel means of x
        return np.concatenate([a, a * (m / s + shift) - m / s + c / s * k0, c / s,
                               np.broadcast_to(w * s, (len(u), C)), f[:, 2:3]], 1)

    def _jitter(self, x: torch.Tensor, t: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        a, const, c_s, ws = t[:, :1], t[:, 1:1 + C], t[:, 1 + C:1 + 2 * C], t[:, 1 + 2 * C:1 + 3 * C]
        gray = (x.mean((2, 3)) * ws).sum(1, keepdim=True)  # (B, 1), up to the constant k0 folded into const
        x = torch.addcmul(torch.addcmul(const, c_s, gray).view(B, C, 1, 1), a.view(B, 1, 1, 1), x)
        if C == 3:  # saturation: p' = sat*p + (1-sat)*gray(p) per pixel, i.e. n' = sat*n + (1-sat)*(gray - m)/s
            sat = t[:, -1:].view(B, 1, 1, 1)
            gray_p = (x * ws.view(B, C, 1, 1)).sum(1, keepdim=True) + float(np.dot(self._GRAY, self._stats(C)[0]))
            x = torch.addcmul((1 - sat) * (gray_p - mean) / std, sat, x)
        if C == 1:  # python-number bounds: no device sync, one kernel
            return x.clamp(-self.mean[0] / self.std[0], (1 - self.mean[0]) / self.std[0])
        return torch.maximum(torch.minimum(x, (1 - mean) / std), -mean / std)

    def _stats(self, C: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per channel (one value given for a grayscale set is used for every channel)."""
        return np.asarray(self.mean * (C // len(self.mean))), np.asarray(self.std * (C // len(self.std)))

    def state_dict(self) -> dict:
        """The generator as it was before the current chunk, and how much of the chunk was used."""
        if self._u is None:
            return {"generator": self.generator.get_state(), "used": -1, "rows": 0}
        return {"generator": self._state, "used": self._used, "rows": len(self._u)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._u, self._params, self._used = None, {}, 0
        if int(state["used"]) >= 0:  # redraw the same chunk, then skip what was used
            self._state = self.generator.get_state()
            self._u = torch.rand(int(state["rows"]), 12, generator=self.generator, dtype=torch.float64).numpy()
            self._used = int(state["used"])


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
