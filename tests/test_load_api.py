"""trainwise.load / predict / evaluate on what users hold: paths, DataFrames, arrays, tensors; predict in pipes."""
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import r2_score

import trainwise
from tests.conftest import small_table
from trainwise.errors import TrainwiseError


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A classification run on a CSV with a text column (one-hot), and the CSV."""
    d = tmp_path_factory.mktemp("table")
    csv = d / "rows.csv"
    small_table(150).to_csv(csv, index=False)
    trainwise.fit(str(csv), target="label", epochs=10, quiet=True, run_dir=str(d / "run"))
    return d / "run", csv


@pytest.fixture(scope="module")
def array_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    y = 3.0 * X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=200) + 10.0
    trainwise.fit(X, y, task="regression", epochs=30, quiet=True, run_dir=str(d / "run"))
    return d / "run", X, y


def test_load_predicts_a_table_run_from_a_dataframe_as_from_its_file(table_run, tmp_path):
    run, csv = table_run
    m = trainwise.load(run)
    df = pd.read_csv(csv)
    from_file = trainwise.predict(run, csv, tmp_path / "p.csv")
    assert list(m.predict(df)) == list(from_file["prediction"]) == list(pd.read_csv(tmp_path / "p.csv")["prediction"])
    proba = m.predict_proba(df)
    assert m.classes_ == ["no", "yes"] and proba.shape == (150, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(proba, from_file[["prob_no", "prob_yes"]].to_numpy(), rtol=1e-12)
    assert [m.classes_[i] for i in proba.argmax(1)] == list(m.predict(df))
    # an array of the same columns, in training order, is taken as those columns
    assert list(m.predict(df[["a", "b", "color"]].to_numpy(dtype=object))) == list(m.predict(df))
    ev = m.evaluate(df)  # the DataFrame holds the target column
    assert ev["eval/accuracy"] == pytest.approx(np.mean(m.predict(df) == df["label"].to_numpy()))
    assert trainwise.evaluate(run, df.drop(columns="label"), df["label"]) == ev == trainwise.evaluate(run, str(csv))
    assert isinstance(m.model, torch.nn.Module) and m.preprocess.transform(df.drop(columns="label")).shape == (150, 5)


def test_arrays_tensors_and_lists_give_the_same_predictions(array_run):
    run, X, y = array_run
    m = trainwise.load(run)
    pred = m.predict(X)
    np.testing.assert_array_equal(pred, m.predict(torch.from_numpy(X)))
    np.testing.assert_array_equal(pred, m.predict(X.tolist()))
    np.testing.assert_array_equal(pred, trainwise.predict(run, X)["prediction"].to_numpy())
    assert np.abs(pred - y).mean() < 1.0  # in the target's own units (it was standardized for training)
    ev = m.evaluate(X, y)
    assert ev["eval/r2"] == pytest.approx(r2_score(y, pred), abs=1e-4)
    assert m.evaluate(torch.from_numpy(X), torch.from_numpy(y)) == pytest.approx(ev)
    with pytest.raises(TrainwiseError, match="regression model: it has no class probabilities"):
        m.predict_proba(X)


def test_a_csv_of_numbers_predicts_an_array_run(array_run, tmp_path):
    run, X, _ = array_run
    path = tmp_path / "new.csv"
    pd.DataFrame(X[:7], columns=[f"x{i}" for i in range(5)]).to_csv(path, index=False)
    np.testing.assert_allclose(trainwise.predict(run, path)["prediction"], trainwise.load(run).predict(X[:7]), rtol=1e-6)


@pytest.mark.parametrize("bad,message", [
    (np.zeros(5), "got a 1-D array of 5 values"),
    (np.zeros((3, 4)), "shape (3, 4); this run was trained on a table of 3 columns (a, b, color)"),
    (pd.Series([1.0, 2.0]), "got a pandas Series"),
])
def test_inputs_that_do_not_fit_are_named(table_run, bad, message):
    run, _ = table_run
    with pytest.raises(TrainwiseError, match=None) as e:
        trainwise.load(run).predict(bad)
    assert message in str(e.value) and e.value.hint


def test_evaluate_without_targets_says_how_to_give_them(array_run):
    run, X, _ = array_run
    with pytest.raises(TrainwiseError, match="evaluate needs targets") as e:
        trainwise.load(run).evaluate(X)
    assert "y=" in e.value.hint
    with pytest.raises(TrainwiseError, match="200 rows of features but 3 targets"):
        trainwise.evaluate(run, X, [1.0, 2.0, 3.0])


def test_predict_reads_stdin_and_writes_stdout(cli, table_run, monkeypatch):
    run, csv = table_run
    monkeypatch.setattr("sys.stdin", io.StringIO(csv.read_text()))
    code, out, err = cli("predict", str(run), "-")
    assert code == 0, err
    piped = pd.read_csv(io.StringIO(out))  # nothing but the CSV on standard output
    assert list(piped.columns) == ["prediction", "prob_no", "prob_yes"] and len(piped) == 150
    assert list(piped["prediction"]) == list(trainwise.load(run).predict(pd.read_csv(csv)))
    code, out, _ = cli("predict", str(run), str(csv), "--output", "-")
    assert code == 0 and pd.read_csv(io.StringIO(out)).equals(piped)


def test_load_refuses_user_code_without_trust(tmp_path):
    model_py = tmp_path / "net.py"
    model_py.write_text("import torch\ndef build(input_shape, output_size):\n    return torch.nn.Linear(input_shape[0], output_size)\n")
    run = tmp_path / "run"
    trainwise.fit("iris", model=f"{model_py}:build", epochs=2, quiet=True, run_dir=str(run))
    with pytest.raises(TrainwiseError, match="user code"):
        trainwise.load(run)
    assert trainwise.load(run, trust_code=True).predict(np.zeros((2, 4))).shape == (2,)
    assert json.loads((run / "summary.json").read_text())["test_evaluations"] == 1  # loading never looks at the test split
