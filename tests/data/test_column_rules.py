"""Columns handled the way a careful person would (issue 18, point 2): an identifier-like text column is left out
with a notice; a text column of many levels is target-encoded (cross-fitted, one number per class) or, with
many_levels=pool, keeps its frequent levels and pools the rest into one "(other)" input."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import trainwise


def _passengers(n=300, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(1, 80, n)
    sex = rng.choice(["m", "f"], n)
    return pd.DataFrame({"name": [f"Passenger {i}, Mr. {rng.integers(1e6)}" for i in range(n)], "sex": sex, "age": age,
                         "survived": np.where((sex == "f") | (age < 12), 1, 0)})


def test_an_identifier_column_is_left_out_with_a_notice(cli, tmp_path):
    csv = tmp_path / "titanic.csv"
    _passengers().to_csv(csv, index=False)
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", str(csv), "--target", "survived", "--epochs", "5", "--run-dir", str(run))
    assert code == 0, err
    notice = "column 'name' has a distinct value in 100% of the rows: an identifier, not a feature; left out (keep it with --categorical name)"
    assert f"note: {notice}" in out  # one line, shown when the run starts
    assert notice in json.loads((run / "summary.json").read_text())["data"]["notes"]
    features = json.loads((run / "preprocess.json").read_text())["features"]
    assert features["columns"] == ["sex", "age"] and len(features["feature_names"]) == 3  # not 300 one-hot inputs
    kept = trainwise.fit(str(csv), target="survived", categorical="name", epochs=1, quiet=True)
    assert "name" in kept.data.preprocessor.columns_


def _cities(tmp_path, n=3000):
    rng = np.random.default_rng(1)
    frequent = [f"city{i}" for i in range(10)]
    city = np.where(rng.random(n) < 0.6, rng.choice(frequent, n), [f"town{i}" for i in rng.integers(0, 1000, n)])
    x = rng.normal(size=n)
    df = pd.DataFrame({"city": city, "x": x, "y": np.where(x + np.isin(city, frequent[:5]) > 0.5, "a", "b")})
    assert df["city"].nunique() > 600
    csv = tmp_path / "cities.csv"
    df.to_csv(csv, index=False)
    return df, csv, frequent


def test_a_thousand_level_column_becomes_one_cross_fitted_target_encoding(tmp_path):
    from sklearn.preprocessing import TargetEncoder

    df, csv, frequent = _cities(tmp_path)
    r = trainwise.fit(str(csv), target="y", epochs=3, quiet=True, run_dir=str(tmp_path / "run"))
    pre = r.data.preprocessor
    assert pre.feature_names_ == ["x", "city~target"] and r.summary["data"]["input_shape"] == [2]
    assert r.data.n_numeric == 2  # the encoding is a number: the tabular model embeds it like a numeric column
    train = df.iloc[r.data.indices["train"]]
    full = TargetEncoder(target_type="binary").fit(train[["city"]].to_numpy(dtype=object), train["y"])
    stored = pre.encoded_["city"]
    levels = list(full.categories_[0])
    assert stored["levels"] == levels and stored["default"] == pytest.approx([full.target_mean_])
    np.testing.assert_allclose(np.asarray(stored["values"])[:, 0], full.encodings_[0])
    assert full.target_mean_ == pytest.approx((train["y"] == "b").mean())  # P(second class), shrinkage towards it
    # the training rows are encoded from the other folds (their own label never feeds their input), the other splits
    # from the whole training split
    mean, std = pre.mean_[1], pre.std_[1]
    own = (pre.transform(train.drop(columns="y"))[:, 1] * std) + mean
    crossed = r.data.arrays["train"][0][:, 1] * std + mean
    assert not np.allclose(crossed, own, atol=1e-3)
    val = df.iloc[r.data.indices["val"]].drop(columns="y")
    np.testing.assert_array_equal(r.data.arrays["val"][0], pre.transform(val))
    new = pd.DataFrame({"city": ["city3", "never-seen"], "x": [0.1, 0.2]})
    m = trainwise.load(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new level gets the overall mean, not an unseen-category warning
        encoded = m.preprocess.transform(new)
    expected = [full.encodings_[0][levels.index("city3")], full.target_mean_]
    np.testing.assert_allclose(encoded[:, 1] * std + mean, expected, rtol=1e-5)
    in_memory = r.model.eval()(torch.from_numpy(encoded)).softmax(-1).detach().numpy()
    np.testing.assert_allclose(m.predict_proba(new), in_memory, rtol=1e-5)  # the run directory round-trips
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from trainwise.export import check_onnx, export

    path = export(tmp_path / "run")  # the encodings are made from strings: the ONNX model takes the encoded features
    assert json.loads(path.with_name(path.name + ".json").read_text())["features"] == ["x", "city~target"]
    np.testing.assert_allclose(check_onnx(path, encoded), m.predict_proba(new), atol=1e-5)


def test_a_multiclass_target_encodes_one_number_per_class(tmp_path):
    rng = np.random.default_rng(3)
    n = 900
    df = pd.DataFrame({"shop": [f"s{i}" for i in rng.integers(0, 60, n)], "x": rng.normal(size=n),
                       "y": rng.choice(["lo", "mid", "hi"], n)})
    csv = tmp_path / "shops.csv"
    df.to_csv(csv, index=False)
    r = trainwise.fit(str(csv), target="y", model="mlp:8", epochs=1, quiet=True)
    assert r.data.preprocessor.feature_names_ == ["x", "shop~hi", "shop~lo", "shop~mid"]
    assert r.data.n_numeric == 4


def test_a_thousand_level_column_pooled_makes_at_most_32_inputs(tmp_path):
    df, csv, frequent = _cities(tmp_path)
    r = trainwise.fit(str(csv), target="y", epochs=3, quiet=True, run_dir=str(tmp_path / "run"), many_levels="pool")
    names = r.data.preprocessor.feature_names_
    assert len(names) <= 1 + 30 + 1 and "city=(other)" in names and set(f"city={c}" for c in frequent) <= set(names)
    assert r.summary["data"]["input_shape"] == [len(names)]
    new = pd.DataFrame({"city": ["city3", "town5", "never-seen"], "x": [0.1, 0.2, 0.3]})
    m = trainwise.load(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new level of a pooled column is "(other)", not an unseen category
        encoded = m.preprocess.transform(new)
    other = names.index("city=(other)")
    assert encoded[:, other].tolist() == [0.0, 1.0, 1.0] and encoded[0, names.index("city=city3")] == 1.0
    in_memory = r.model.eval()(torch.from_numpy(encoded)).softmax(-1).detach().numpy()
    np.testing.assert_allclose(m.predict_proba(new), in_memory, rtol=1e-6)  # the run directory round-trips


@pytest.mark.parametrize("levels,pooled", [(25, False), (40, True)])
def test_only_columns_of_many_levels_are_pooled(levels, pooled):
    from trainwise.data import Preprocessor

    col = pd.DataFrame({"c": [f"v{i % levels}" for i in range(400)]})
    p = Preprocessor().fit(col)  # no target given: a column of many levels is pooled
    assert (p.pooled_ == ["c"]) is pooled
    assert len(p.feature_names_) == (31 if pooled else levels)


def test_a_heavy_tailed_column_is_robust_scaled_and_soft_clipped(tmp_path):
    rng = np.random.default_rng(2)
    n = 500
    income = np.exp(rng.normal(10, 1, n))
    income[:5] = 1e8  # a few outliers that would set the standard deviation
    height = rng.normal(170, 10, n)
    df = pd.DataFrame({"income": income, "height": height, "y": np.where(np.log(income) + (height - 170) / 10 > 10, "hi", "lo")})
    csv = tmp_path / "people.csv"
    df.to_csv(csv, index=False)
    run = tmp_path / "run"
    r = trainwise.fit(str(csv), target="y", epochs=3, quiet=True, run_dir=str(run))
    pre = r.data.preprocessor
    assert pre.robust_ == ["income"]  # the normal column keeps mean and standard deviation
    train = df.iloc[r.data.indices["train"]]
    assert pre.mean_[0] == pytest.approx(np.median(train["income"])) and pre.mean_[1] == pytest.approx(train["height"].mean())
    z = pre.transform(df[["income", "height"]])
    assert np.abs(z[:, 0]).max() < 3 and np.abs(z[:5, 0]).min() > 2.9  # outliers pulled to about 3, not thousands
    q1, q3 = np.quantile(train["income"], [0.25, 0.75])
    ordinary = (df["income"].iloc[10] - np.median(train["income"])) / ((q3 - q1) / 1.349)
    assert z[10, 0] == pytest.approx(ordinary / np.sqrt(1 + (ordinary / 3) ** 2), rel=1e-5)
    assert json.loads((run / "preprocess.json").read_text())["features"]["robust"] == ["income"]
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from trainwise.export import check_onnx, export

    path = export(run)
    assert "robust scaling and soft clip" in json.loads(path.with_name(path.name + ".json").read_text())["folded"]
    X = df[["income", "height"]].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(check_onnx(path, X), trainwise.load(run).predict_proba(df), atol=1e-5)


def test_a_dataframe_is_a_table_like_a_csv_file(tmp_path):
    df = _passengers()
    df["deck"] = np.random.default_rng(4).choice(["A", "B", None], len(df))
    r = trainwise.fit(df, target="survived", missing="median", epochs=2, quiet=True, run_dir=str(tmp_path / "run"))
    pre = r.data.preprocessor
    assert pre.columns_ == ["sex", "age", "deck"] and pre.feature_names_ == ["age", "sex=f", "sex=m", "deck=A", "deck=B"]
    assert r.summary["model"]["spec"] == "tabular" and r.summary["model"]["recipe"]["n_numeric"] == 1  # auto: a table
    assert any(n.startswith("column 'name' has a distinct value") for n in r.summary["data"]["notes"])
    assert "data: dataframe" in (tmp_path / "run" / "config.yaml").read_text()
    same = trainwise.fit(str(_csv(df, tmp_path)), target="survived", missing="median", epochs=2, quiet=True)
    np.testing.assert_array_equal(r.data.arrays["train"][0], same.data.arrays["train"][0])  # as if read from a file
    features = trainwise.fit(df.drop(columns="survived"), df["survived"], missing="median", epochs=1, quiet=True)
    assert features.data.target_name == "survived" and features.data.preprocessor.columns_ == ["sex", "age", "deck"]
    with pytest.raises(trainwise.TrainwiseError, match=r"fit\(DataFrame\) without a target; columns: name, sex, age, survived, deck"):
        trainwise.fit(df, epochs=1)
    with pytest.raises(trainwise.TrainwiseError, match=r"y has shape \(5,\) but the DataFrame has 300 rows"):
        trainwise.fit(df.drop(columns="survived"), df["survived"][:5], epochs=1)
    with pytest.raises(trainwise.TrainwiseError, match=r"the target is given twice"):
        trainwise.fit(df.drop(columns="survived"), df["survived"], target="survived", epochs=1)
    with pytest.raises(trainwise.TrainwiseError, match=r"column 'age' holds numbers except in 1 row\(s\): 'old' \(index 7\)"):
        trainwise.fit(df.assign(age=df["age"].astype(object).where(df.index != 7, "old")), target="survived", epochs=1)
    assert trainwise.predict(tmp_path / "run", df.head(4))["prediction"].tolist() == \
        trainwise.load(tmp_path / "run").predict(df.drop(columns="survived").head(4)).tolist()


def test_dataframe_errors_name_its_own_index_and_duplicate_columns():
    df = _passengers(40).set_axis(range(1000, 1040))
    df.loc[1005, "age"] = float("inf")
    with pytest.raises(trainwise.TrainwiseError, match=r"column 'age' holds 1 infinite or too large number\(s\).*: inf \(index 1005\)"):
        trainwise.fit(df, target="survived", epochs=1)
    twice = pd.concat([_passengers(40), _passengers(40)[["age"]]], axis=1)
    with pytest.raises(trainwise.TrainwiseError, match="column name\\(s\\) 'age' appear more than once"):
        trainwise.fit(twice, target="survived", epochs=1)
    labels = pd.DataFrame({"old": (df["age"] > 40).astype(int), "f": (df["sex"] == "f").astype(int)})
    r = trainwise.fit(df[["sex", "age"]].assign(age=20.0), labels, epochs=1, quiet=True)  # several label columns as y
    assert r.summary["data"]["labels"] == ["old", "f"]


def test_copies_of_training_rows_are_found_through_a_target_encoded_column():
    rng = np.random.default_rng(5)
    base = pd.DataFrame({"shop": [f"s{i}" for i in rng.integers(0, 40, 150)], "x": rng.normal(size=150)})
    df = pd.concat([base, base]).reset_index(drop=True)  # every row twice
    df["y"] = np.where(df["x"] > 0, "a", "b")
    r = trainwise.fit(df, target="y", model="mlp:8", epochs=1, quiet=True)
    assert "shop" in r.data.preprocessor.encoded_
    overlap = [d for d in r.summary["diagnostics"] if d["code"] == "train_test_overlap"]
    assert overlap and "identical to training rows" in overlap[0]["evidence"]


def _csv(df, tmp_path):
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    return path


def test_robust_scaling_can_be_switched_off():
    from trainwise.data import Preprocessor

    income = np.r_[np.arange(1.0, 100.0), 1e6]  # one outlier: more than 6 IQRs from the median
    df = pd.DataFrame({"income": income})
    assert Preprocessor().fit(df).robust_ == ["income"]
    plain = Preprocessor(robust=False).fit(df)
    assert plain.robust_ == [] and plain.mean_ == pytest.approx([income.mean()]) and plain.std_ == pytest.approx([income.std()])
    assert Preprocessor.from_state(plain.state_dict()).robust is False
