import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainwise.data import load_source, prepare, split_indices
from trainwise.data.splits import _cut
from trainwise.errors import TrainwiseError


def test_splits_are_disjoint_cover_and_sized():
    s = split_indices(1000, (0.7, 0.15, 0.15), seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [700, 150, 150]
    allidx = np.concatenate(list(s.values()))
    assert len(set(allidx.tolist())) == 1000 and set(allidx.tolist()) == set(range(1000))


def test_splits_are_seeded():
    a, b, c = (split_indices(200, (0.6, 0.2, 0.2), seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_stratified_splits_keep_class_proportions():
    y = np.array([0] * 800 + [1] * 200)  # 20% minority
    s = split_indices(1000, (0.7, 0.15, 0.15), seed=0, stratify=y)
    for k in ("train", "val", "test"):
        assert y[s[k]].mean() == pytest.approx(0.2, abs=0.01)


def test_regression_splits_span_the_target_range():
    y = np.arange(400, dtype=float)
    s = split_indices(400, (0.7, 0.15, 0.15), seed=0, regression_target=y)
    for k in ("val", "test"):  # one row from each decile at least
        assert len(np.unique(np.digitize(y[s[k]], np.quantile(y, np.linspace(0, 1, 11)[1:-1])))) == 10


def test_rare_class_cannot_be_stratified():
    y = np.array([0] * 50 + [1] * 49 + [2])
    with pytest.raises(TrainwiseError, match=r"classes 2 \(1\) have fewer than 2 rows"):
        split_indices(100, (0.7, 0.15, 0.15), stratify=y)


def test_standardization_is_fit_on_train_only():
    prep = prepare(load_source("wine"), seed=0)
    Xtr, Xval = prep.arrays["train"][0], prep.arrays["val"][0]
    np.testing.assert_allclose(Xtr.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Xtr.std(axis=0), 1, atol=1e-4)
    assert np.abs(Xval.mean(axis=0)).max() > 1e-3  # val is transformed with train statistics, not its own
    raw = load_source("wine")
    np.testing.assert_allclose(prep.preprocessor.mean_, raw.X[prep.indices["train"]].mean(axis=0), rtol=1e-5)


def test_regression_target_standardized_with_train_statistics():
    prep = prepare(load_source("diabetes"), seed=0)
    raw_y = load_source("diabetes").y
    assert prep.target.mean == pytest.approx(raw_y[prep.indices["train"]].mean())
    assert prep.arrays["train"][1].mean() == pytest.approx(0, abs=1e-5)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(4, 300), n_classes=st.integers(1, 6), frac=st.floats(0.05, 0.6), seed=st.integers(0, 2**31 - 1),
       stratified=st.booleans(), offset=st.integers(0, 5), data=st.data())
def test_cuts_equal_scikit_learns_train_test_split(n, n_classes, frac, seed, stratified, offset, data):
    """The split code keeps its own copy of train_test_split's draws (start-up time): same cuts, same order."""
    from sklearn.model_selection import train_test_split

    size = max(1, min(n - 1, round(frac * n)))
    labels = np.array(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))) if stratified else None
    idx = np.arange(n) + offset
    try:
        want = train_test_split(idx, test_size=size, random_state=seed, stratify=labels)
    except ValueError:
        with pytest.raises(TrainwiseError, match="cannot make a stratified split"):
            _cut(idx, size, seed, labels)
        return
    got = _cut(idx, size, seed, labels)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


def test_cuts_equal_scikit_learns_for_multilabel_rows():
    from sklearn.model_selection import train_test_split

    y = np.random.default_rng(0).integers(0, 2, (60, 2))
    want = train_test_split(np.arange(60), test_size=15, random_state=7, stratify=y)
    assert [g.tolist() for g in _cut(np.arange(60), 15, 7, y)] == [w.tolist() for w in want]
