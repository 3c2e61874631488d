"""What each column of a table is for, beyond "feature" and "target": left out (``--exclude``), a row identifier
(``--id-column``, carried into predictions), a group whose rows must stay in one split (``--group-column``), the
time that orders the splits (``--time-column``), a row's weight in the training loss (``--weight-column``), or a
numeric code to treat as categories (``--categorical``).
Date/time columns are refused as features with a hint: no encoding of them is a safe default."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import TrainwiseError, check_choice
from ..frames import pandas

if TYPE_CHECKING:  # annotations only: pandas loads on first use (frames.pandas)
    import pandas as pd

__all__ = ["ColumnRoles", "apply_roles", "as_categories", "check_weights", "date_columns", "identifier_columns", "weights_summary"]


@dataclass(frozen=True)
class ColumnRoles:
    """Column names by role (from the config); every named column must exist in the table."""

    exclude: tuple[str, ...] = ()
    id_column: str | None = None
    categorical: tuple[str, ...] = ()
    group_column: str | None = None
    time_column: str | None = None
    weight_column: str | None = None

    @classmethod
    def of(cls, cfg) -> ColumnRoles:
        """The roles a `RunConfig` gives (comma-separated lists split)."""
        names = lambda v: tuple(c.strip() for c in v.split(",") if c.strip()) if v else ()  # noqa: E731
        return cls(exclude=names(cfg.exclude), id_column=cfg.id_column, categorical=names(cfg.categorical),
                   group_column=cfg.group_column, time_column=cfg.time_column, weight_column=cfg.weight_column)

    @property
    def not_features(self) -> list[str]:
        return [*self.exclude, *(c for c in (self.id_column, self.group_column, self.time_column, self.weight_column) if c)]

    def __bool__(self) -> bool:
        return bool(self.exclude or self.id_column or self.categorical or self.group_column or self.time_column or self.weight_column)


def apply_roles(X: pd.DataFrame, roles: ColumnRoles, *, source: str, target: str | list[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The feature columns of ``X`` (the table without its target) and, by role, the rows' ``groups`` and
    ``times`` (a sortable key). Unknown names are errors with "did you mean"; so is a role given to the target.

    >>> import pandas as pd
    >>> X = pd.DataFrame({"id": [1, 2], "a": [0.5, 1.5], "city": [3, 4]})
    >>> feats, extra = apply_roles(X, ColumnRoles(id_column="id", categorical=("city",)), source="t.csv", target="y")
    >>> list(feats.columns), feats["city"].tolist()
    (['a', 'city'], ['3', '4'])
    """
    columns, targets = [str(c) for c in X.columns], [target] if isinstance(target, str) else list(target)
    for option, names in (("--exclude", roles.exclude), ("--id-column", [roles.id_column] if roles.id_column else []),
                          ("--categorical", roles.categorical), ("--group-column", [roles.group_column] if roles.group_column else []),
                          ("--time-column", [roles.time_column] if roles.time_column else []),
                          ("--weight-column", [roles.weight_column] if roles.weight_column else [])):
        for name in names:
            if name in targets:
                raise TrainwiseError(f"{option} {name}: '{name}' is the target column of '{source}'",
                                     hint=f"give {option} a feature column, or choose another --target")
            if name not in columns:
                check_choice(f"column for {option} in '{source}'", name, columns)
    clash = set(roles.categorical) & set(roles.not_features)
    if clash:
        raise TrainwiseError(f"--categorical {', '.join(sorted(clash))}: the column is also excluded, an id, a group or a time",
                             hint="a column has one role: drop it from one of the options")
    extra: dict[str, np.ndarray] = {}
    if roles.group_column:
        groups = X[roles.group_column]
        if groups.isna().any():
            raise TrainwiseError(f"'{source}': --group-column {roles.group_column} is empty in {int(groups.isna().sum())} rows",
                                 hint="give every row its group, or drop those rows")
        extra["groups"] = groups.astype(str).to_numpy()
    if roles.time_column:
        extra["times"] = _time_key(X[roles.time_column], roles.time_column, source)
    if roles.weight_column:
        extra["weights"] = _weights(X[roles.weight_column], roles.weight_column, source)
    features = X.drop(columns=roles.not_features)
    for name in roles.categorical:
        features[name] = as_categories(features[name])
    dates = date_columns(features.drop(columns=list(roles.categorical)))  # declared categories are never dates
    if dates:
        name, example = dates[0]
        raise TrainwiseError(f"'{source}': column '{name}' holds dates or times (e.g. {example!r}); trainwise does not turn them "
                             "into features by itself", hint=f"derive numeric columns from it (year, month, day of week, hours since "
                                                         f"a start), or --exclude {name}; to split by it, --time-column {name}")
    ids = identifier_columns(features.drop(columns=list(roles.categorical)))  # declared categories are kept as they are
    if ids:
        features = features.drop(columns=[name for name, _ in ids])
        extra["notes"] = [f"column '{name}' has a distinct value in {share:.0%} of the rows: an identifier, not a feature; "
                          f"left out (keep it with --categorical {name})" for name, share in ids]
    if features.shape[1] == 0:
        raise TrainwiseError(f"'{source}': no feature columns are left after --exclude, --id-column, --group-column and --time-column",
                             hint="keep at least one feature column")
    return features, extra


def as_categories(values: pd.Series) -> pd.Series:
    """A column as category labels: numbers become their text (1.0 and 1 both '1'), missing stays missing.

    >>> import pandas as pd
    >>> as_categories(pd.Series([1.0, 2.0, None, 3.5])).tolist()
    ['1', '2', nan, '3.5']
    """
    pd = pandas()
    def label(v):
        if pd.isna(v):
            return np.nan
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v)
    return values.map(label).astype(object)


_DATE_LIKE = r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\b\d{1,2}:\d{2}\b"


def identifier_columns(X: pd.DataFrame, *, share: float = 0.95, min_rows: int = 20) -> list[tuple[str, float]]:
    """Text columns with a distinct value in (nearly) every row — names, ids, free text — with that share: one-hot
    encoded they would add a column per row, which a model can only memorize.

    >>> import pandas as pd
    >>> X = pd.DataFrame({"name": [f"p{i}" for i in range(40)], "sex": ["m", "f"] * 20, "age": range(40)})
    >>> identifier_columns(X)
    [('name', 1.0)]
    """
    pd = pandas()
    found = []
    for name in X.columns:
        s = X[name].dropna()
        if len(s) >= min_rows and not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            distinct = s.nunique() / len(s)
            if distinct >= share:
                found.append((str(name), distinct))
    return found


def date_columns(X: pd.DataFrame) -> list[tuple[str, str]]:
    """The text columns whose values all read as dates or times (checked on up to 50 of them), with an example.

    >>> import pandas as pd
    >>> date_columns(pd.DataFrame({"d": ["2024-01-03", "2024-02-01"], "c": ["red", "blue"], "n": [1, 2], "r": ["16:9", "4:3"]}))
    [('d', '2024-01-03')]
    """
    pd = pandas()
    found = []
    for name in X.columns:
        s = X[name]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            if pd.api.types.is_datetime64_any_dtype(s):
                found.append((str(name), str(s.dropna().iloc[0]) if s.notna().any() else ""))
            continue
        sample = s.dropna().astype(str).head(50)
        # a date (2024-01-31, 31/01/2024, 2024/1/31) or a clock time (10:30): not "16:9", "3/4" or "A-1"
        if sample.empty or not sample.str.contains(_DATE_LIKE).all():
            continue
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().all():
            found.append((str(name), sample.iloc[0]))
    return found


def _weights(values: pd.Series, name: str, source: str) -> np.ndarray:
    """A weight per row of a --weight-column (`check_weights`; text counts as not a number, shown as written)."""
    numbers = pandas().to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    return check_weights(numbers, len(values), what=f"'{source}': --weight-column {name}", shown=values.tolist())


def check_weights(weights, n_rows: int, *, what: str = "sample_weight", shown: list | None = None) -> np.ndarray:
    """``n_rows`` weights (a --weight-column's, or fit's ``sample_weight``): finite numbers >= 0, not all 0.
    Anything else is an error naming ``what``, the first bad rows (as ``shown``, when given) and the fix.

    >>> check_weights([1, 0, 2.5], 3).tolist()
    [1.0, 0.0, 2.5]
    """
    w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights)
    if w.ndim != 1 or len(w) != n_rows:
        raise TrainwiseError(f"{what} has shape {w.shape}, but there are {n_rows} rows", hint=f"give one weight per row: shape ({n_rows},)")
    try:
        w = w.astype(np.float64)
    except (TypeError, ValueError):
        raise TrainwiseError(f"{what} holds values that are not numbers (dtype {w.dtype})", hint="give numbers >= 0") from None
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        plain = lambda v: v.item() if isinstance(v, np.generic) else v  # noqa: E731 - -1.0, not np.float64(-1.0)
        listing = ", ".join(f"{plain(shown[i] if shown is not None else w[i])!r} (row {i + 1})" for i in bad[:5])
        raise TrainwiseError(f"{what} holds {len(bad)} value(s) that are not finite numbers >= 0: {listing}" + (", ..." if len(bad) > 5 else ""),
                             hint="give every row a finite weight >= 0 (0 leaves the row out of the loss)")
    if not (w > 0).any():
        raise TrainwiseError(f"{what} is zero (0) in every row", hint="give some rows a positive weight")
    return w


def weights_summary(w: np.ndarray | None) -> dict[str, float | int] | None:
    """What a run's summary records of its training rows' weights (their sum, how many are 0); None: unweighted."""
    return None if w is None else {"sum": round(float(w.sum()), 6), "zero": int((w == 0).sum())}


def _time_key(values: pd.Series, name: str, source: str) -> np.ndarray:
    """A sortable number per row from a time column of numbers or dates/times."""
    pd = pandas()
    if values.isna().any():
        raise TrainwiseError(f"'{source}': --time-column {name} is empty in {int(values.isna().sum())} rows",
                             hint="give every row its time, or drop those rows")
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64)
    parsed = pd.to_datetime(values.astype(str), errors="coerce", format="mixed")
    if parsed.isna().any():
        bad = values[parsed.isna()].head(3).tolist()
        raise TrainwiseError(f"'{source}': --time-column {name} has values that are neither numbers nor dates: {bad}",
                             hint="give a column of dates/times (e.g. 2024-01-31 or 2024-01-31T12:00) or of numbers")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
