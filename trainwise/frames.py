"""pandas, loaded on first use: `import pandas` costs ~0.25 s of every command's start-up, and a run on arrays or a
built-in set never needs it. `is_frame` / `is_series` answer without importing it (a DataFrame cannot exist
before pandas is imported).

>>> import numpy as np
>>> is_frame(np.zeros(2)), is_frame(pandas().DataFrame({"a": [1]})), is_series(pandas().Series([1]))
(False, True, True)
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

__all__ = ["pandas", "is_frame", "is_series"]


def pandas() -> ModuleType:
    import pandas  # the point of this module: imported by the first function that needs it

    return pandas


def is_frame(x: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def is_series(x: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.Series)
