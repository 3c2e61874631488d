import json
import re

import numpy as np
import pandas as pd
import pytest

from trainwise.data import from_arrays, load_source, prepare
from trainwise.errors import TrainwiseError


@pytest.mark.parametrize("name,rows,task", [("digits", 1797, "classification"), ("breast-cancer", 569, "classification"),
                                            ("wine", 178, "classification"), ("iris", 150, "classification"),
                                            ("diabetes", 442, "regression"), ("toy-regression", 40, "regression")])
def test_builtins(name, rows, task):
    raw = load_source(name)
    assert len(raw) == rows and raw.task == task


def test_toy_regression_is_the_lecture_formula():
    raw = load_source("toy-regression")
    x = raw.X[:, 0]
    assert x[0] == pytest.approx(-3.0) and x[1] == pytest.approx(-2.85) and len(x) == 40
    noise = (raw.y - x**2) / np.where(x == 0, 1, x)
    assert abs(noise.mean()) < 0.5 and 0.5 < noise.std() < 1.5  # x * N(0, 1)


def test_csv_one_hot_and_label_mapping(small_csv):
    prep = prepare(load_source(str(small_csv), target="label"), seed=0)
    assert prep.task == "classification" and prep.target.classes == ["no", "yes"]
    assert prep.preprocessor.feature_names_ == ["a", "b", "color=blue", "color=green", "color=red"]
    X = prep.arrays["train"][0]
    assert X.shape[1] == 5 and set(np.unique(X[:, 2:]).tolist()) == {0.0, 1.0}
    assert (X[:, 2:].sum(axis=1) == 1).all()  # exactly one colour per row
    json.dumps(prep.preprocessor.state_dict())  # JSON-safe state


def test_csv_missing_target_column_suggests(small_csv):
    with pytest.raises(TrainwiseError, match=r"unknown target column .* 'lable'.*did you mean 'label'"):
        load_source(str(small_csv), target="lable")


def test_csv_without_target_lists_columns(small_csv):
    with pytest.raises(TrainwiseError, match=r"no target column was given; columns: a, b, color, label.*--target"):
        load_source(str(small_csv))


@pytest.fixture
def gappy_csv(tmp_path):
    df = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0] * 4,
                       "b": [np.nan, np.nan, 1, 2, 3, 4, 5, 6, 7, 8] * 4,
                       "y": [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 4})
    path = tmp_path / "gaps.csv"
    df.to_csv(path, index=False)
    return path


def test_missing_values_error_names_columns_and_counts(gappy_csv):
    with pytest.raises(TrainwiseError, match=r"missing values in columns 'a' \(4\), 'b' \(8\).*--missing drop.*--missing median"):
        load_source(str(gappy_csv), target="y")


def test_missing_drop_and_median(gappy_csv):
    dropped = load_source(str(gappy_csv), target="y", missing="drop")
    assert len(dropped) == 32 and dropped.dropped_rows == 8
    raw = load_source(str(gappy_csv), target="y", missing="median")
    prep = prepare(raw, seed=0, impute=True, standardize=False)
    train_rows = raw.X.iloc[prep.indices["train"]]
    assert prep.preprocessor.fill_["a"] == pytest.approx(train_rows["a"].median())
    assert not np.isnan(prep.arrays["train"][0]).any()


def test_npz_xy_and_presplit(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, X=rng.normal(size=(50, 3)), y=rng.integers(0, 2, 50))
    raw = load_source(str(p))
    assert raw.X.shape == (50, 3) and raw.given_splits is None
    q = tmp_path / "s.npz"
    np.savez(q, X_train=rng.normal(size=(30, 3)), y_train=np.arange(30) % 2, X_val=rng.normal(size=(10, 3)),
             y_val=np.arange(10) % 2, X_test=rng.normal(size=(8, 3)), y_test=np.arange(8) % 2)
    prep = prepare(load_source(str(q)), seed=0)
    assert {k: len(v[1]) for k, v in prep.arrays.items()} == {"train": 30, "val": 10, "test": 8}


def test_npz_errors(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, features=np.zeros((3, 2)))
    with pytest.raises(TrainwiseError, match=r"has keys \['features'\]; expected X and y"):
        load_source(str(p))
    with pytest.raises(TrainwiseError, match=r"data file '.*nope.npz' does not exist"):
        load_source(str(tmp_path / "nope.npz"))
    with pytest.raises(TrainwiseError, match=r"X has 3 rows but y has 2"):
        from_arrays(np.zeros((3, 2)), np.zeros(2))


def test_labels_that_do_not_fit(tmp_path):
    with pytest.raises(TrainwiseError, match=r"non-integer values .* but the task is classification.*--task regression"):
        prepare(from_arrays(np.zeros((20, 2)), np.linspace(0, 1, 20)), task="classification")
    q = tmp_path / "s.npz"
    np.savez(q, X_train=np.zeros((10, 2)), y_train=np.arange(10) % 2, X_val=np.zeros((4, 2)), y_val=np.array([0, 1, 2, 2]))
    with pytest.raises(TrainwiseError, match=r"labels \[2\] appear outside the training split but never in it"):
        prepare(load_source(str(q)), task="classification")


def test_one_hot_targets_train_on_class_indices(tmp_path):
    """Keras-style one-hot targets are read as class indices (a note says so); the run matches integer labels."""
    from sklearn.datasets import load_iris

    import trainwise
    X, y = load_iris(return_X_y=True)
    one_hot = np.eye(3, dtype=np.float32)[y]
    raw = from_arrays(X, one_hot)
    assert raw.y.tolist() == y.tolist() and raw.notes == ["y is one-hot encoded (3 columns): trained on the class index of each row's 1"]
    a = trainwise.fit(X, one_hot, epochs=3, quiet=True)
    b = trainwise.fit(X, y, epochs=3, quiet=True)
    assert a.summary["test"] == b.summary["test"] and a.summary["data"]["notes"] == raw.notes


@pytest.mark.parametrize("y, message", [
    (np.array([[0.2, 0.7], [0.5, 0.5]]), "neither class probabilities nor 0/1 labels"),
    (np.array([[0.0, 3.0], [1.0, 2.0]]), "y has shape (2, 2), but trainwise trains one target per row"),
])
def test_two_column_targets_that_are_not_one_hot_are_refused(y, message):
    with pytest.raises(TrainwiseError, match=re.escape(message)):
        from_arrays(np.zeros((2, 3)), y)


@pytest.mark.parametrize("name", ["digits", "breast-cancer", "wine", "iris", "diabetes"])
def test_builtin_sets_equal_scikit_learns_loaders(name):
    """The four sets read from scikit-learn's shipped files (start-up time) hold its loaders' arrays exactly."""
    import sklearn.datasets

    from trainwise.data.builtin import SKLEARN_SETS

    bunch = getattr(sklearn.datasets, SKLEARN_SETS[name][0])()
    raw = load_source(name)
    assert raw.X.dtype == np.float32 and np.array_equal(raw.X, bunch.data.astype(np.float32))
    assert np.array_equal(raw.y, bunch.target) and raw.y.dtype == bunch.target.dtype
    if raw.task == "classification":
        assert raw.class_names == [str(n) for n in bunch.target_names]
    else:
        assert raw.class_names is None


def test_builtin_sets_fall_back_to_scikit_learns_loader_when_its_file_moved(monkeypatch):
    from trainwise.data import builtin

    monkeypatch.setattr(builtin, "_data_file", lambda file: None)
    raw = load_source("iris")
    assert raw.X.shape == (150, 4) and raw.class_names == ["setosa", "versicolor", "virginica"]
