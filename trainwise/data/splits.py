"""Honest splits: seeded, stratified for classification, disjoint, sized by fractions."""
from __future__ import annotations

import numpy as np

from ..errors import TrainwiseError

__all__ = ["split_indices", "fold_indices"]


def split_indices(n: int, fractions: tuple[float, float, float], *, seed: int = 0,
                  stratify: np.ndarray | None = None, regression_target: np.ndarray | None = None,
                  groups: np.ndarray | None = None, times: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Row indices for train/val/test, sorted, disjoint, together covering ``range(n)``.

    Sizes are ``round(fraction * n)`` for val and test; train gets the rest. With ``stratify``
    (class labels) every split keeps the class proportions. With ``regression_target`` the rows are
    stratified by quantile bins of the target, so each split spans the target's range: on diabetes this
    cut the spread of the test R2 across seeds about threefold (see README, "Splits").

    >>> s = split_indices(100, (0.7, 0.15, 0.15), seed=0)
    >>> [len(s[k]) for k in ("train", "val", "test")]
    [70, 15, 15]
    """

    _, val_f, test_f = fractions
    n_val, n_test = round(val_f * n), round(test_f * n)
    if n - n_val - n_test < 1:
        raise TrainwiseError(f"split {fractions} leaves no training rows out of {n}", hint="give train a larger fraction")
    if times is not None:  # time-ordered: train on the past, validate on what follows, test on the latest
        order = np.argsort(np.asarray(times), kind="stable")
        n_train = n - n_val - n_test
        return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
                "test": np.sort(order[n_train + n_val:])}
    if groups is not None:
        return _group_split(np.asarray(groups), n_val, n_test, seed)
    if stratify is None and regression_target is not None:
        stratify = quantile_bins(regression_target, min(10, n_val or 10, n_test or 10, n // 10))
    elif stratify is not None:
        classes, counts = np.unique(stratify, return_counts=True)
        rare = [f"{c!r} ({k})" for c, k in zip(classes.tolist(), counts.tolist()) if k < 2]
        if rare and (n_val or n_test):
            raise TrainwiseError(f"cannot stratify: classes {', '.join(rare)} have fewer than 2 rows",
                                 hint="remove or merge those classes, or collect more rows of them")
    rest, test = _cut(np.arange(n), n_test, seed, stratify)
    train, val = _cut(rest, n_val, seed, None if stratify is None else stratify[rest])
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def fold_indices(n: int, k: int, *, seed: int = 0, test_fraction: float = 0.15, rotate: bool = False,
                 stratify: np.ndarray | None = None, regression_target: np.ndarray | None = None,
                 given_test: np.ndarray | None = None, groups: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """Train/val/test row indices for each of ``k`` cross-validation folds (stratified like `split_indices`).

    Default: a test split of ``test_fraction`` is held out once; the rest is cut into ``k`` folds and fold i is
    the validation split of run i. ``rotate`` (the lecture's variant): all rows are cut into ``k`` folds; run i
    tests on fold i, validates on fold i+1 (mod k) and trains on the others, so every fold is the test fold once.
    ``given_test``: rows of an official test split (MNIST's t10k files), held out instead of a random one.
    ``groups``: each group's rows stay together — in the held-out test split or in one fold (GroupKFold).

    >>> runs = fold_indices(10, 5, rotate=True)
    >>> sorted(int(i) for r in runs for i in r["test"]) == list(range(10))
    True
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold  # slow to import: only for cross-validation

    if k < 2 + rotate:
        raise TrainwiseError(f"cross-validation needs at least {2 + rotate} folds{' to rotate' if rotate else ''}, got {k}",
                             hint="use --folds 5 (or 10)")
    labels = stratify if stratify is not None else (
        quantile_bins(regression_target, min(10, n // (2 * k))) if regression_target is not None else None)
    if rotate:
        pool, test = np.arange(n), np.arange(0)
    elif given_test is not None and len(given_test):
        test = np.sort(np.asarray(given_test))
        pool = np.setdiff1d(np.arange(n), test)
    else:
        held = split_indices(n, (1 - test_fraction, 0.0, test_fraction), seed=seed, stratify=stratify,
                             regression_target=regression_target, groups=groups)
        pool, test = held["train"], held["test"]
    if len(pool) < k:
        raise TrainwiseError(f"{k} folds need at least {k} rows, there are {len(pool)}", hint="use fewer folds")
    strat = labels[pool] if labels is not None else None
    if strat is not None and np.unique(strat, return_counts=True)[1].min() < k:
        if stratify is not None:
            raise TrainwiseError(f"cannot make {k} stratified folds: a class has fewer than {k} rows",
                                 hint="use fewer folds, or merge the rare classes")
        strat = None  # too few rows per target bin: plain folds
    if groups is not None:
        if len(np.unique(groups[pool])) < k:
            raise TrainwiseError(f"{k} group folds need at least {k} groups outside the test split, there are {len(np.unique(groups[pool]))}",
                                 hint="use fewer folds, or data with more groups")
        splitter = GroupKFold(k, shuffle=True, random_state=seed)
        folds = [np.sort(pool[part]) for _, part in splitter.split(pool, groups=groups[pool])]
    else:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if strat is not None else KFold(k, shuffle=True, random_state=seed)
        folds = [np.sort(pool[part]) for _, part in splitter.split(pool, strat if strat is not None else None)]
    runs = []
    for i in range(k):
        if rotate:
            test_i, val_i = folds[i], folds[(i + 1) % k]
            train_i = np.sort(np.concatenate([f for j, f in enumerate(folds) if j not in (i, (i + 1) % k)]))
        else:
            test_i, val_i = test, folds[i]
            train_i = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))
        runs.append({"train": train_i, "val": val_i, "test": test_i})
    return runs


def _group_split(groups: np.ndarray, n_val: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """Whole groups to each split, in a seeded random order: test until it holds at least ``n_test`` rows, then
    val likewise, the rest train (sizes come out as close as whole groups allow; no stratification)."""
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(names))
    part = np.zeros(len(names), dtype=np.int64)  # 0 train, 1 val, 2 test
    filled = {2: 0, 1: 0}
    for g in order:
        for split, want in ((2, n_test), (1, n_val)):
            if filled[split] < want:
                part[g], filled[split] = split, filled[split] + counts[g]
                break
    if (part == 0).sum() == 0:
        raise TrainwiseError(f"the {len(names)} groups of --group-column leave no group for training",
                             hint="use smaller validation/test fractions, or data with more groups")
    rows = part[inverse]
    return {"train": np.flatnonzero(rows == 0), "val": np.flatnonzero(rows == 1), "test": np.flatnonzero(rows == 2)}


def quantile_bins(y: np.ndarray, bins: int) -> np.ndarray | None:
    """Bin labels 0..bins-1 by quantiles of ``y``; None when fewer than two bins make sense."""
    if bins < 2:
        return None
    edges = np.unique(np.quantile(np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0], np.linspace(0, 1, bins + 1)[1:-1]))
    return np.digitize(np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0], edges)


def _cut(idx: np.ndarray, size: int, seed: int, stratify: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``idx`` cut into (rest, ``size`` rows), seeded, stratified by ``stratify`` when given.

    The same cut as scikit-learn's ``train_test_split(idx, test_size=size, random_state=seed, stratify=...)``
    (its ShuffleSplit / StratifiedShuffleSplit draws, in the same order from the same RandomState), kept here
    because importing ``sklearn.model_selection`` costs about 1 s of every run's start-up (scipy with it), more
    than the digits main job spends training. tests/data/test_splits.py checks the cuts equal scikit-learn's
    on generated inputs.
    """
    if size == 0:
        return idx, idx[:0]
    n = len(idx)
    if size >= n:
        raise TrainwiseError(f"cannot cut {size} rows from {n}", hint="use smaller validation/test fractions or more data")
    rng = np.random.RandomState(seed)
    if stratify is None:
        order = rng.permutation(n)
        return idx[order[size:]], idx[order[:size]]
    labels = np.asarray(stratify)
    if labels.ndim == 2:  # a multi-label row is one class, as scikit-learn does
        labels = np.array([" ".join(row.astype("str")) for row in labels])
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_rest = n - size
    if counts.min() < 2 or n_rest < len(classes) or size < len(classes):
        why = (f"a class has {counts.min()} row (2 or more are needed)" if counts.min() < 2 else
               f"{min(size, n_rest)} rows cannot hold one of each of the {len(classes)} classes")
        raise TrainwiseError(f"cannot make a stratified split of {size} rows from {n}: {why}",
                             hint="use larger validation/test fractions or more data")
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    n_rest_i = _approximate_mode(counts, n_rest, rng)
    n_cut_i = _approximate_mode(counts - n_rest_i, size, rng)
    rest, cut = [], []
    for i in range(len(classes)):
        rows = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        rest.extend(rows[:n_rest_i[i]])
        cut.extend(rows[n_rest_i[i]:n_rest_i[i] + n_cut_i[i]])
    return idx[rng.permutation(rest)], idx[rng.permutation(cut)]


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` rows each class gets: its share rounded down, the rows left over going to the largest
    remainders (ties broken by ``rng``) -- scikit-learn's ``_approximate_mode``, the same draws."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            add = min(len(tied), need)
            floored[rng.choice(tied, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)
