"""Batches for the training loop: in-memory device tensors (fast path) or a torch DataLoader."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import TrainwiseError

__all__ = ["TensorBatches", "DeviceLoader", "to_tensors", "shape_targets", "check_batch_size"]


def check_batch_size(batch_size: int, n_train: int) -> None:
    """A batch larger than the training split is an error that says what to use instead."""
    if batch_size > n_train:
        raise TrainwiseError(f"batch_size={batch_size} is larger than the training split ({n_train} rows)",
                             hint=f"use --batch-size {min(n_train, 32)} or less, or more training data")


def shape_targets(y: torch.Tensor, kind: str) -> torch.Tensor:
    """Class indices (long, (N,)) for 'multiclass'; float columns (N, 1) for 'binary', (N, targets) for 'regression'."""
    return y.long() if kind == "multiclass" else y.float().reshape(-1, y.shape[1] if y.ndim == 2 else 1)


def to_tensors(X: np.ndarray, y: np.ndarray, kind: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
    return Xt, shape_targets(torch.from_numpy(np.asarray(y)).to(device), kind)


class TensorBatches:
    """Shuffled mini-batches of tensors that already live on the training device.

    Each epoch draws one permutation from its own seeded generator and yields index slices of it:
    no per-sample Python, no collate, no host-to-device copies. With ``weights`` (one per row) each batch's
    target is the pair ``(y, w)``, with ``soft`` (class probabilities, a row per row) the triple ``(y, w, p)`` (``w``
    None when there are no weights), which a `train.components.SampleWeighted` loss reads (the metrics read ``y``).

    >>> b = TensorBatches(torch.arange(10.0)[:, None], torch.arange(10), batch_size=4, shuffle=False)
    >>> [len(y) for _, y in b]
    [4, 4, 2]
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 weights: torch.Tensor | None = None, soft: torch.Tensor | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise TrainwiseError(f"TensorBatches: batch_size={batch_size!r} is not a positive integer", hint="e.g. batch_size=64")
        for name, t in (("X", X), ("y", y)):
            if not isinstance(t, torch.Tensor) or t.ndim == 0:
                raise TrainwiseError(f"TensorBatches: {name} must be a tensor with one row per sample, got "
                                     f"{type(t).__name__}{' of shape ()' if isinstance(t, torch.Tensor) else ''}",
                                     hint=f"pass torch tensors, e.g. torch.as_tensor({name})")
        if len(X) != len(y):
            raise TrainwiseError(f"TensorBatches: X has {len(X)} rows but y has {len(y)}", hint="give one target per row of X")
        self.X, self.y, self.batch_size, self.shuffle, self.weights = X, y, int(batch_size), shuffle, weights
        self.soft = soft
        self.generator = torch.Generator().manual_seed(seed)  # CPU generator: same order on every device

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        X, y, B, n, w, p = self.X, self.y, self.batch_size, len(self.y), self.weights, self.soft
        order = self.permutation() if self.shuffle else None
        for i in range(0, n, B):
            idx = slice(i, i + B) if order is None else order[i:i + B]
            if p is not None:
                yield X[idx], (y[idx], None if w is None else w[idx], p[idx])
            else:
                yield X[idx], y[idx] if w is None else (y[idx], w[idx])

    def permutation(self) -> torch.Tensor:
        """The next epoch's order of the rows (drawn on the CPU: the same on every device), on the data's device."""
        perm = torch.randperm(len(self.y), generator=self.generator)
        if self.X.device.type == "cuda":  # pinned + non_blocking: the copy does not make the host wait
            return perm.pin_memory().to(self.X.device, non_blocking=True)
        return perm.to(self.X.device)

    def head(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` input rows, without drawing from the shuffle generator."""
        return self.X[:n]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class DeviceLoader:
    """A torch DataLoader (workers, pinned memory) whose batches are moved to ``device``.

    For Datasets that do not fit in memory; in-memory data should use TensorBatches.
    """

    def __init__(self, dataset, *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 num_workers: int = 0, device: str | torch.device = "cpu", kind: str = "multiclass"):
        self.device, self.kind = torch.device(device), kind
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=self.generator, num_workers=num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return len(self.loader.dataset)

    def head(self, n: int = 2) -> torch.Tensor:
        """The first ``n`` input rows, without drawing from the shuffle generator."""
        data = self.loader.dataset
        return torch.stack([torch.as_tensor(data[i][0]) for i in range(min(n, len(data)))]).to(self.device)

    def __iter__(self):
        non_blocking = self.device.type == "cuda"
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=non_blocking), shape_targets(y.to(self.device, non_blocking=non_blocking), self.kind)
