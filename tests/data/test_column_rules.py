"""Columns handled the way a careful person would (issue 18, point 2): an identifier-like text column is left out
with a notice; a text column of many levels keeps its frequent ones and pools the rest into one "(other)" input."""
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


def test_a_thousand_level_column_does_not_make_a_thousand_inputs(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    frequent = [f"city{i}" for i in range(10)]
    city = np.where(rng.random(n) < 0.6, rng.choice(frequent, n), [f"town{i}" for i in rng.integers(0, 1000, n)])
    x = rng.normal(size=n)
    df = pd.DataFrame({"city": city, "x": x, "y": np.where(x + np.isin(city, frequent[:5]) > 0.5, "a", "b")})
    assert df["city"].nunique() > 600
    csv = tmp_path / "cities.csv"
    df.to_csv(csv, index=False)
    r = trainwise.fit(str(csv), target="y", epochs=3, quiet=True, run_dir=str(tmp_path / "run"))
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
    p = Preprocessor().fit(col)
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
