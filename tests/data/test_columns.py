"""Control over columns and splits: --exclude, --id-column, --categorical, date columns refused, --val-data /
--test-data, --group-column (splits and CV folds) and time-ordered splits (--split time --time-column)."""
import json

import numpy as np
import pandas as pd
import pytest

import trainwise
from trainwise.errors import TrainwiseError


def _table(n=240, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    zone = rng.integers(1, 4, size=n)  # a numeric code: categories, not a quantity
    return pd.DataFrame({"row_id": np.arange(1000, 1000 + n), "a": a, "b": b, "zone": zone,
                         "noise": rng.normal(size=n), "patient": rng.integers(0, 40, size=n).astype(str),
                         "day": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d")[rng.permutation(n)],
                         "label": np.where(a + (zone == 2) * 1.5 > 0.3, "yes", "no")})


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "t.csv"
    _table().to_csv(path, index=False)
    return path


def test_a_date_column_is_refused_with_what_to_do(cli, csv, tmp_path):
    code, _, err = cli("fit", "--data", str(csv), "--target", "label", "--run-dir", str(tmp_path / "r"), "--quiet")
    assert code == 2 and "column 'day' holds dates or times" in err and "--exclude day" in err and "--time-column day" in err
    assert not (tmp_path / "r").exists()


def test_exclude_id_and_categorical_columns(cli, csv, tmp_path):
    run = tmp_path / "r"
    code, _, err = cli("fit", "--data", str(csv), "--target", "label", "--exclude", "noise,day,patient", "--id-column", "row_id",
                       "--categorical", "zone", "--epochs", "5", "--quiet", "--run-dir", str(run))
    assert code == 0, err
    features = json.loads((run / "preprocess.json").read_text())["features"]
    assert features["columns"] == ["a", "b", "zone"] and features["categorical"] == ["zone"]
    assert features["feature_names"] == ["a", "b", "zone=1", "zone=2", "zone=3"]
    new = _table(30, seed=5)
    new["zone"] = new["zone"].astype(float)  # 2.0 in a new file is the category '2' of training
    new.drop(columns="label").to_csv(tmp_path / "new.csv", index=False)
    code, _, err = cli("predict", str(run), str(tmp_path / "new.csv"), "--output", str(tmp_path / "p.csv"))
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns[:2]) == ["row_id", "prediction"] and pred["row_id"].tolist() == new["row_id"].tolist()
    as_int = trainwise.load(run).predict_frame(new.assign(zone=new["zone"].astype(int)))
    np.testing.assert_allclose(pred["prob_yes"], as_int["prob_yes"], rtol=1e-6)


@pytest.mark.parametrize("argv,message", [
    (["--exclude", "nois"], "unknown column for --exclude in"),
    (["--id-column", "label"], "--id-column label: 'label' is the target column"),
    (["--categorical", "noise", "--exclude", "noise,day"], "--categorical noise: the column is also excluded"),
    (["--split", "time"], "split: 'time' orders the splits by a column of times"),
    (["--group-column", "patient", "--time-column", "day"], "both decide the splits"),
])
def test_column_mistakes_are_input_errors(cli, csv, tmp_path, argv, message):
    run = tmp_path / "r"
    code, _, err = cli("fit", "--data", str(csv), "--target", "label", "--quiet", "--run-dir", str(run), *argv)
    assert code == 2 and message in err and "HINT" in err, err
    assert not run.exists()


def test_time_ordered_split_trains_on_the_past(csv):
    r = trainwise.fit(str(csv), target="label", split="time", time_column="day", exclude="patient", epochs=2, quiet=True)
    days = pd.to_datetime(pd.read_csv(csv)["day"]).to_numpy()
    idx = r.data.indices
    assert [len(idx[k]) for k in ("train", "val", "test")] == [168, 36, 36]
    assert days[idx["train"]].max() < days[idx["val"]].min() and days[idx["val"]].max() < days[idx["test"]].min()
    from trainwise.tune import cross_validate

    with pytest.raises(TrainwiseError, match="would train on the future"):
        cross_validate(str(csv), target="label", time_column="day", exclude="patient", folds=3, epochs=1, quiet=True)


def test_group_column_keeps_each_group_in_one_split_and_one_fold(csv, tmp_path, monkeypatch):
    from trainwise.tune import cross_validate

    groups = pd.read_csv(csv)["patient"].astype(str).to_numpy()
    r = trainwise.fit(str(csv), target="label", group_column="patient", exclude="day", epochs=2, quiet=True)
    sets = {k: set(groups[v]) for k, v in r.data.indices.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert "patient" not in r.data.preprocessor.columns_
    import trainwise.tune.cv as cv_module

    used, fold_indices = [], cv_module.fold_indices

    def recording(*args, **kwargs):  # the folds the cv run itself trains on
        used.extend(fold_indices(*args, **kwargs))
        return used

    monkeypatch.setattr(cv_module, "fold_indices", recording)
    cv = cross_validate(str(csv), target="label", group_column="patient", exclude="day", folds=3, epochs=1, quiet=True,
                        run_dir=str(tmp_path / "cv"))
    assert len(cv.folds) == len(used) == 3
    for run, row in zip(used, cv.folds):
        train, val, test = (set(groups[run[k]]) for k in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert (row["train_rows"], row["val_rows"], row["test_rows"]) == tuple(len(run[k]) for k in ("train", "val", "test"))
    assert set().union(*(set(groups[run["val"]]) for run in used)) | set(groups[used[0]["test"]]) == set(groups)


def test_separate_validation_and_test_files(tmp_path):
    df = _table(300).drop(columns=["day", "patient"])
    df[:200].to_csv(tmp_path / "train.csv", index=False)
    df[200:250].to_csv(tmp_path / "val.csv", index=False)
    df[250:].to_csv(tmp_path / "test.csv", index=False)
    both = trainwise.fit(str(tmp_path / "train.csv"), target="label", val_data=str(tmp_path / "val.csv"),
                         test_data=str(tmp_path / "test.csv"), epochs=2, quiet=True)
    assert {k: len(v) for k, v in both.data.indices.items()} == {"train": 200, "val": 50, "test": 50}
    val_only = trainwise.fit(str(tmp_path / "train.csv"), target="label", val_data=str(tmp_path / "val.csv"), epochs=2, quiet=True)
    assert {k: len(v) for k, v in val_only.data.indices.items()} == {"train": 165, "val": 50, "test": 35}  # test: 15/85 of 200
    test_only = trainwise.fit(str(tmp_path / "train.csv"), target="label", test_data=str(tmp_path / "test.csv"), epochs=2, quiet=True)
    assert {k: len(v) for k, v in test_only.data.indices.items()} == {"train": 165, "val": 35, "test": 50}
    df[200:250].drop(columns="zone").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(TrainwiseError, match="--val-data .* has features .* the data file .* has"):
        trainwise.fit(str(tmp_path / "train.csv"), target="label", val_data=str(tmp_path / "bad.csv"), epochs=1, quiet=True)


def test_ratios_and_declared_categories_are_not_dates():
    from trainwise.data.columns import ColumnRoles, apply_roles

    X = pd.DataFrame({"aspect": ["16:9", "4:3", "16:9"], "frac": ["1/2", "3/4", "1/4"], "when": ["10:30", "11:00", "12:15"]})
    with pytest.raises(TrainwiseError, match="column 'when' holds dates or times"):
        apply_roles(X, ColumnRoles(), source="t.csv", target="y")
    features, _ = apply_roles(X, ColumnRoles(categorical=("when",)), source="t.csv", target="y")
    assert list(features.columns) == ["aspect", "frac", "when"]
