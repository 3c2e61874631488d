"""The scikit-learn estimators: the estimator contract (scikit-learn's own checks), parameters mirroring RunConfig,
composition (Pipeline, GridSearchCV, cross_val_score, clone, pickle), determinism, partial_fit, and nothing on disk."""
from __future__ import annotations

import inspect
import os
import pickle
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import trainwise.api
from trainwise.config import RunConfig
from trainwise.sklearn import EXCLUDED, EstimatorInputError, TrainwiseClassifier, TrainwiseRegressor

# small and fast: the checks fit a few hundred times. validation_fraction 0.2: some checks fit 15 rows of
# 3 classes, and the stratified validation split must hold a row of each (15% -> 2 rows is refused).
# cpu: tiny models are fastest there, and scikit-learn's checks compare predictions exactly
SMALL = dict(model="mlp:16", epochs=5, batch_size=16, lr=0.01, validation_fraction=0.2, device="cpu")

# RunConfig keys that are deliberately not constructor parameters (the reasons are also in trainwise.sklearn.EXCLUDED)
NOT_PARAMETERS = {
    "data", "data_dir", "target",           # the data is fit's X, y
    "task",                                 # fixed by the class: classifier or regressor
    "split",                                # replaced by validation_fraction; no test split is held out
    "missing",                              # scikit-learn's validation refuses NaN: use SimpleImputer
    "na_values",                            # CSV files only
    "image_size", "channels", "image_norm", "augment",  # image data only; the estimators take 2-D features
    "num_workers",                          # DataLoader workers for torch Datasets; arrays are batched in memory
    "quiet",                                # replaced by verbose
    "nproc",                                # data-parallel processes come from torch's launcher, not an estimator
    "val_data", "test_data", "exclude", "id_column", "categorical", "group_column", "time_column",  # files and CSV columns
    "many_levels", "robust_scale",          # CSV text and heavy-tailed columns: the estimators take numeric arrays
    "weight_column",                        # a CSV column of sample weights
    "mlflow",                               # tracking of `trainwise fit`'s run directory, not of an estimator
}
ESTIMATOR_ONLY = {"validation_fraction": 0.15, "verbose": False}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny MLPs train fastest on one thread; on a busy 2-core machine two threads spin-wait ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _expected_failed_checks(estimator):
    """Checks known to fail with SMALL, with the reason each. (check_array_api_input is skipped by scikit-learn
    itself unless SCIPY_ARRAY_API=1 is set; the estimators take numpy input only.)"""
    stochastic = {"check_sample_weight_equivalence_on_dense_data":
                  "a weight of 2 is not a repeated row for mini-batch training: the repeated row is drawn into another batch "
                  "and the validation split is carved from other rows; test_zero_weights_rows_do_not_train checks the "
                  "weights' effect exactly"}
    if isinstance(estimator, TrainwiseClassifier):
        return {**stochastic,
                "check_class_weight_classifiers": "SMALL's 5 epochs (15 steps) are too few to follow the check's 1000:0.0001 "
                                                  "weights; test_class_weight_check_with_a_training_budget runs it with 40"}
    return stochastic


def test_class_weight_check_with_a_training_budget():
    from sklearn.utils.estimator_checks import check_class_weight_classifiers

    check_class_weight_classifiers("TrainwiseClassifier", TrainwiseClassifier(**(SMALL | {"epochs": 40})))


@parametrize_with_checks([TrainwiseClassifier(**SMALL), TrainwiseRegressor(**SMALL)],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch_size clipped on the checks' tiny data sets
        check(estimator)


@pytest.mark.parametrize("cls", [TrainwiseClassifier, TrainwiseRegressor])
def test_parameters_are_runconfig_knobs_with_their_defaults(cls):
    signature = inspect.signature(cls.__init__).parameters
    params = {k: p for k, p in signature.items() if k != "self"}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert set(params) == (set(RunConfig.model_fields) - NOT_PARAMETERS) | set(ESTIMATOR_ONLY)
    assert set(EXCLUDED) == NOT_PARAMETERS
    for name, p in params.items():
        default = ESTIMATOR_ONLY[name] if name in ESTIMATOR_ONLY else RunConfig.model_fields[name].default
        assert p.default == default, name
    assert set(cls().get_params()) == set(params)
    assert "validation_fraction" in cls.__doc__ and "weight_decay: optimizer weight decay" in cls.__doc__


def test_classifier_string_labels_dataframe_and_learned_attributes(blobs):
    X, y = blobs
    names = np.array(["ant", "bee", "cat"])[y]
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = TrainwiseClassifier(**SMALL).fit(frame, names)
    assert clf.classes_.tolist() == ["ant", "bee", "cat"]
    assert clf.n_features_in_ == 4 and clf.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    assert isinstance(clf.model_, torch.nn.Module) and len(clf.history_) == clf.n_iter_ <= 5
    assert 1 <= clf.best_epoch_ <= clf.n_iter_ and clf.summary_["best_epoch"] == clf.best_epoch_
    assert clf.summary_["test"] is None and set(clf.summary_["data"]["sizes"]) == {"train", "val"}
    proba = clf.predict_proba(frame)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(1), 1)
    assert (clf.predict(frame) == clf.classes_[proba.argmax(1)]).all()
    assert clf.score(frame, names) > 0.9
    with pytest.warns(UserWarning, match="feature names"):  # scikit-learn's own warning: fitted on a DataFrame
        assert clf.predict(X[:5].tolist()).tolist() == clf.predict(frame.iloc[:5]).tolist()
    with pytest.raises(NotFittedError):
        TrainwiseClassifier().predict(X)


def test_input_errors_are_value_errors(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="NaN"):
        TrainwiseClassifier(**SMALL).fit(np.where(np.eye(300, 4) > 0, np.nan, X), y)
    with pytest.raises(ValueError, match="2D array"):
        TrainwiseClassifier(**SMALL).fit(X[:, 0], y)
    with pytest.raises(ValueError, match="one class"):
        TrainwiseClassifier(**SMALL).fit(X, np.zeros(300))
    with pytest.raises(ValueError, match="Unknown label type"):
        TrainwiseClassifier(**SMALL).fit(X, X[:, 0])
    with pytest.raises(EstimatorInputError, match="optimizer"):  # invalid parameters surface at fit, with the hint
        TrainwiseClassifier(**{**SMALL, "optimizer": "adamm"}).fit(X, y)
    clf = TrainwiseClassifier(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="expecting 4 features"):
        clf.predict(X[:, :3])


def test_fit_writes_nothing_without_run_dir(blobs, tmp_path, monkeypatch):
    X, y = blobs
    monkeypatch.chdir(tmp_path)
    TrainwiseClassifier(**SMALL).fit(X, y).partial_fit(X, y)
    TrainwiseRegressor(**SMALL).fit(X, X[:, 0])
    assert os.listdir(tmp_path) == []


def test_run_dir_gets_a_run_directory(blobs, tmp_path):
    X, y = blobs
    clf = TrainwiseClassifier(**SMALL, run_dir=str(tmp_path / "run")).fit(X, y)
    assert clf.run_dir_ == tmp_path / "run"
    assert {"config.yaml", "summary.json", "model.safetensors", "preprocess.json"} <= set(os.listdir(tmp_path / "run"))
    assert trainwise.api.predict(tmp_path / "run", _npz(tmp_path, X))["prediction"].astype(int).tolist() == clf.predict(X).tolist()


def _npz(tmp_path, X):
    path = tmp_path / "X.npz"
    np.savez(path, X=X)
    return path


def test_same_seed_same_predictions_other_seed_other_model(blobs):
    X, y = blobs
    a, b = (TrainwiseClassifier(**SMALL, seed=3).fit(X, y) for _ in range(2))
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    c = TrainwiseClassifier(**SMALL, seed=4).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_cv_fits_see_only_the_training_fold_and_split_validation_from_it(monkeypatch):
    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    X[:, 0] = np.arange(120)  # row ids, to see which rows each fit received
    seen, real_fit = [], trainwise.api.fit

    def spy(data, y=None, **options):
        result = real_fit(data, y, **options)
        seen.append((np.sort(data[:, 0]).astype(int), result.summary["data"]["sizes"]))
        return result

    monkeypatch.setattr(trainwise.api, "fit", spy)
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(TrainwiseClassifier(**SMALL), X, y, cv=cv)
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    assert len(seen) == 3
    for (train, _), (rows, sizes) in zip(cv.split(X), seen):
        assert rows.tolist() == sorted(train.tolist())          # exactly the training fold
        assert set(sizes) == {"train", "val"}                   # no test split of its own
        assert sizes["train"] + sizes["val"] == len(train) and sizes["val"] == round(0.2 * len(train))


def test_pipeline_clone_and_pickle(blobs):
    X, y = blobs
    pipe = Pipeline([("scale", StandardScaler()), ("net", TrainwiseClassifier(**SMALL))]).fit(X, y)
    assert pipe.score(X, y) > 0.9
    copy = clone(pipe.named_steps["net"])
    assert copy.get_params() == pipe.named_steps["net"].get_params() and not hasattr(copy, "model_")
    restored = pickle.loads(pickle.dumps(pipe))
    assert np.array_equal(restored.predict_proba(X), pipe.predict_proba(X))


@pytest.mark.parametrize("n_jobs", [1, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes start (10-16 s)
def test_grid_search(blobs, n_jobs):
    X, y = blobs
    grid = GridSearchCV(TrainwiseClassifier(**SMALL), {"lr": [0.01, 0.001]}, cv=2, n_jobs=n_jobs).fit(X, y)
    assert grid.best_params_["lr"] in (0.01, 0.001) and grid.score(X, y) > 0.9
    assert not np.isnan(grid.cv_results_["mean_test_score"]).any()


def test_grid_search_on_breast_cancer_beats_the_bar():
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    t0 = time.perf_counter()
    grid = GridSearchCV(TrainwiseClassifier(model="mlp:32", epochs=60, batch_size=32, patience=8),
                        {"lr": [1e-3, 1e-2], "weight_decay": [0.0, 1e-3]}, cv=3).fit(X_train, y_train)
    assert grid.score(X_test, y_test) > 0.93, (grid.best_params_, time.perf_counter() - t0)


def test_regressor_r2_in_original_units():
    X, y = load_diabetes(return_X_y=True)
    y = y * 1000 + 5e4  # far from standardized: predictions must come back in these units
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    reg = TrainwiseRegressor(model="mlp:32", lr=3e-3, epochs=100, batch_size=32).fit(X_train, y_train)
    assert reg.target_encoder_.mean == pytest.approx(y_train.mean(), rel=0.05)
    assert abs(reg.predict(X_test).mean() - y_test.mean()) < y_test.std()
    assert reg.score(X_test, y_test) > 0.3


def test_partial_fit_continues_one_epoch_at_a_time_on_the_first_preprocessing(blobs):
    X, y = blobs
    clf = TrainwiseClassifier(**SMALL).partial_fit(X, y, classes=[0, 1, 2])
    mean = list(clf.preprocessor_.mean_)
    assert clf.n_iter_ == 1 and clf.summary_["data"]["sizes"] == {"train": 300}  # all rows: no validation split
    for _ in range(3):
        clf.partial_fit(X[y != 2][:7] + 100, y[y != 2][:7])  # a shifted chunk, smaller than batch_size, two classes
    assert clf.n_iter_ == 4 and [r["epoch"] for r in clf.history_] == [1, 2, 3, 4] and clf.best_epoch_ == 4
    assert clf.preprocessor_.mean_ == mean  # the first call's preprocessing is kept
    with pytest.raises(ValueError, match="not trained on"):
        clf.partial_fit(X[:5], np.array([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="exactly the given classes"):
        TrainwiseClassifier(**SMALL).partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])

    fitted = TrainwiseRegressor(**SMALL).fit(X, X[:, 0])
    before = fitted.predict(X)
    fitted.partial_fit(X[:50], X[:50, 0])
    assert fitted.n_iter_ == len(fitted.history_) and not np.array_equal(fitted.predict(X), before)


def test_user_module_parameter_is_not_trained_in_place(blobs):
    X, y = blobs
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    weights = [p.detach().clone() for p in net.parameters()]
    clf = TrainwiseClassifier(**{**SMALL, "model": net}).fit(X, y)
    assert clf.model_ is not net and all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert clf.score(X, y) > 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda_and_keeps_the_fitted_model_on_the_cpu(blobs):
    X, y = blobs
    clf = TrainwiseClassifier(**{**SMALL, "device": "cuda"}).fit(X, y)
    assert clf.summary_["device"].startswith("cuda") and next(clf.model_.parameters()).device.type == "cpu"
    assert clf.score(X, y) > 0.9
    clf.partial_fit(X, y)
    assert next(clf.model_.parameters()).device.type == "cpu"
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict(X), clf.predict(X))


@pytest.mark.parametrize("Est", [TrainwiseClassifier, TrainwiseRegressor])
def test_zero_weights_rows_do_not_train(Est):
    """sample_weight reaches the loss: rows of weight 0 can have any target without changing the model (no validation
    split, so they are only training rows), and weights of 1 train exactly as no weights."""
    X, y = (load_breast_cancer if Est is TrainwiseClassifier else load_diabetes)(return_X_y=True)
    kw = dict(model="mlp:16", epochs=4, batch_size=64, validation_fraction=0.0, early_stopping=False, device="cpu")
    w = np.where(np.arange(len(y)) % 3 == 0, 0.0, 1.0)
    other = y.copy()
    other[w == 0] = (1 - y[w == 0]) if Est is TrainwiseClassifier else y[w == 0][::-1]  # other targets, same label set / scale
    if Est is TrainwiseRegressor:  # the target's standardization uses every row: keep its mean and std
        assert np.isclose(other.mean(), y.mean()) and np.isclose(other.std(), y.std())
    a, b = Est(**kw).fit(X, y, sample_weight=w), Est(**kw).fit(X, other, sample_weight=w)
    out = (lambda m: m.predict_proba(X)) if Est is TrainwiseClassifier else (lambda m: m.predict(X))
    assert np.array_equal(out(a), out(b))
    assert not np.array_equal(out(Est(**kw).fit(X, other)), out(a))  # without the weights the other targets count
    assert np.array_equal(out(Est(**kw).fit(X, y, sample_weight=np.ones(len(y)))), out(Est(**kw).fit(X, y)))
    assert a.summary_["data"]["train_weights"] == {"sum": float(w.sum()), "zero": int((w == 0).sum())}


def test_sample_weight_errors_name_it():
    X, y = load_breast_cancer(return_X_y=True)
    clf = TrainwiseClassifier(model="mlp:8", epochs=1)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\), but there are 569 rows"):
        clf.fit(X, y, sample_weight=[1, 2, 3])
    with pytest.raises(ValueError, match=r"sample_weight holds 1 value\(s\) that are not finite numbers >= 0: -1.0 \(row 2\)"):
        clf.fit(X, y, sample_weight=np.r_[1.0, -1.0, np.ones(567)])
    with pytest.raises(trainwise.TrainwiseError, match="sample_weight weighs the rows of arrays or a DataFrame passed to fit; 'iris'"):
        trainwise.fit("iris", sample_weight=np.ones(150), epochs=1)
