"""`RawData`: features and target as a source yields them, before splitting."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: pandas loads on first use (frames.pandas)
    import pandas as pd

__all__ = ["RawData"]


@dataclass
class RawData:
    """Features and target before splitting. ``X`` is a numeric array or, for CSV, a DataFrame."""

    X: np.ndarray | pd.DataFrame
    y: np.ndarray
    name: str
    task: str | None = None  # known for built-ins; inferred from y otherwise
    class_names: list[str] | None = None
    target_name: str = "y"
    given_splits: dict[str, np.ndarray] | None = None  # row indices of pre-split files
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None  # --group-column: each row's group (a group's rows stay in one split)
    times: np.ndarray | None = None   # --time-column: a sortable time per row (splits in time order)
    weights: np.ndarray | None = None  # --weight-column: each row's weight in the training loss
    soft: np.ndarray | None = None  # class probabilities per row (rows x classes, float32): soft targets; y is their argmax
    categorical: tuple[str, ...] = ()  # --categorical: numeric columns read as categories
    carve_test: bool = False  # given splits without a test split get one from the training rows (--val-data alone)

    def __len__(self) -> int:
        return len(self.y)
