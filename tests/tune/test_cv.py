"""Cross-validation folds (disjoint, covering, stratified, rotated) and the cv run."""
import json

import numpy as np
import pandas as pd
import pytest

from trainwise import TrainwiseError
from trainwise.data import fold_indices
from trainwise.tune import cross_validate

Y = np.repeat([0, 1, 2], [60, 30, 15])


def test_holdout_folds_are_disjoint_cover_the_rest_and_keep_one_test_split():
    runs = fold_indices(len(Y), 5, seed=3, test_fraction=0.2, stratify=Y)
    test = runs[0]["test"]
    assert len(test) == 21 and all(np.array_equal(r["test"], test) for r in runs)
    rest = np.setdiff1d(np.arange(len(Y)), test)
    vals = np.concatenate([r["val"] for r in runs])
    assert sorted(vals.tolist()) == rest.tolist()  # every non-test row validates exactly once
    for r in runs:
        assert not set(r["train"]) & set(r["val"]) and not set(r["train"]) & set(test) and not set(r["val"]) & set(test)
        assert sorted(np.concatenate([r["train"], r["val"], r["test"]]).tolist()) == list(range(len(Y)))
        counts = np.bincount(Y[r["val"]], minlength=3)
        assert np.all(np.abs(counts - np.bincount(Y[rest]) / 5) <= 1)  # stratified


def test_rotation_makes_every_fold_the_test_fold_once():
    k = 5
    runs = fold_indices(len(Y), k, seed=0, rotate=True, stratify=Y)
    tests = [r["test"] for r in runs]
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(Y)))  # each row tested exactly once
    for i, r in enumerate(runs):
        assert np.array_equal(r["val"], tests[(i + 1) % k])  # the next fold validates
        assert sorted(np.concatenate([r["train"], r["val"], r["test"]]).tolist()) == list(range(len(Y)))
        assert len(set(r["train"]) | set(r["val"]) | set(r["test"])) == len(Y)


def test_fold_errors():
    with pytest.raises(TrainwiseError, match="at least 2 folds"):
        fold_indices(10, 1)
    with pytest.raises(TrainwiseError, match="at least 3 folds to rotate"):
        fold_indices(10, 2, rotate=True)
    with pytest.raises(TrainwiseError, match="a class has fewer than 5 rows"):
        fold_indices(20, 5, rotate=True, stratify=np.array([0] * 17 + [1] * 3))


def test_cv_run_holdout(tmp_path):
    r = cross_validate("wine", folds=3, epochs=6, quiet=True, run_dir=tmp_path / "cv")
    assert r.summary["design"] == "holdout" and len(r.folds) == 3
    vals = [f["val/accuracy"] for f in r.folds]
    assert r.spread["val/accuracy"]["mean"] == pytest.approx(np.mean(vals))
    assert r.spread["val/accuracy"]["std"] == pytest.approx(np.std(vals))
    assert r.test is not None and r.summary["test_evaluations"] == 1  # the held-out split, once
    for i in (1, 2, 3):
        fold = json.loads((tmp_path / "cv" / f"fold-{i}" / "summary.json").read_text())
        assert fold["test"] is None and fold["test_evaluations"] == 0  # folds never touch the test split
        assert (tmp_path / "cv" / f"fold-{i}" / "curves.png").is_file()
    assert sum(f["val_rows"] for f in r.folds) == r.folds[0]["train_rows"] + r.folds[0]["val_rows"]
    assert pd.read_csv(tmp_path / "cv" / "cv.csv")["fold"].tolist() == [1, 2, 3]
    import trainwise

    with pytest.raises(TrainwiseError, match="is fold 2 of a cross-validation"):
        trainwise.evaluate(tmp_path / "cv" / "fold-2")


def test_cv_rotation_and_preprocessing_inside_each_fold(tmp_path):
    from trainwise.data import load_source

    r = cross_validate("wine", folds=3, rotate=True, epochs=4, quiet=True, run_dir=tmp_path / "cv")
    assert r.summary["test_evaluations"] == 3 and r.test is None and "test/accuracy" in r.spread
    raw = load_source("wine")
    runs = fold_indices(len(raw), 3, seed=0, rotate=True, stratify=raw.y)
    for i, idx in enumerate(runs, 1):
        pre = json.loads((tmp_path / "cv" / f"fold-{i}" / "preprocess.json").read_text())["features"]
        mean = np.asarray(pre["mean"] if "mean" in pre else pre["numeric"]["mean"])
        np.testing.assert_allclose(mean, raw.X[idx["train"]].mean(0), rtol=1e-5)  # this fold's training rows only


def test_cli_cv(tmp_path, cli):
    code, out, err = cli("cv", "--data", "iris", "--folds", "3", "--epochs", "3", "--quiet", "--run-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert out.count("fold ") >= 3 and "mean ± std: val/loss" in out and "held-out test (fold" in out


def test_an_official_test_split_is_the_held_out_one(fashion_dir, tmp_path):
    runs = fold_indices(10, 3, given_test=np.array([7, 8, 9]))
    assert all(r["test"].tolist() == [7, 8, 9] for r in runs)
    assert sorted(int(i) for r in runs for i in r["val"]) == list(range(7))
    r = cross_validate("fashion-mnist", data_dir=str(fashion_dir), model="mlp:16", folds=4, epochs=1, quiet=True,
                       run_dir=str(tmp_path / "cv"))
    assert [f["test_rows"] for f in r.summary["fold_results"]] == [100] * 4  # MNIST's t10k files, not a random 15%
    assert [f["train_rows"] + f["val_rows"] for f in r.summary["fold_results"]] == [400] * 4
