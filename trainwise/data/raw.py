"""`RawData`: features and target as a source yields them, before splitting."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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

    def __len__(self) -> int:
        return len(self.y)
