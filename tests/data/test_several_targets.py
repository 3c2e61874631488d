"""Several target columns (--target a,b): a multi-output regression, each column standardized on its own, metrics
averaged over the columns as scikit-learn does, one prediction column per target; 0/1 label columns are refused."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, r2_score

import trainwise


@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    X = rng.normal(size=(n, 3))
    df = pd.DataFrame(X, columns=["x1", "x2", "x3"])
    df["price"] = 1000 + 300 * X[:, 0] + 10 * rng.normal(size=n)     # very different scales: standardized per column
    df["rooms"] = 3 + 0.5 * X[:, 1] - 0.5 * X[:, 2] + 0.05 * rng.normal(size=n)
    path = tmp_path / "houses.csv"
    df.to_csv(path, index=False)
    return path, df


def test_two_targets_train_predict_and_evaluate(cli, csv, tmp_path):
    path, df = csv
    run = tmp_path / "run"
    code, _, err = cli("fit", "--data", str(path), "--target", "price,rooms", "--epochs", "60", "--quiet", "--run-dir", str(run))
    assert code == 0, err
    pp = json.loads((run / "preprocess.json").read_text())
    assert pp["target_name"] == "price,rooms" and len(pp["target"]["mean"]) == 2
    assert pp["target"]["mean"][0] == pytest.approx(1000, abs=60) and pp["target"]["std"][1] < 1.5
    m = trainwise.load(run)
    assert [mod for mod in m.model.modules() if hasattr(mod, "out_features")][-1].out_features == 2
    pred = m.predict(df)
    assert pred.shape == (len(df), 2)
    truth = df[["price", "rooms"]].to_numpy()
    assert r2_score(truth, pred) > 0.9  # both columns learned, in their own units
    ev = m.evaluate(df)  # the DataFrame holds both target columns
    assert ev["eval/r2"] == pytest.approx(r2_score(truth, pred), abs=1e-4)
    assert ev["eval/mae"] == pytest.approx(mean_absolute_error(truth, pred), rel=1e-4)  # averaged over the columns
    frame = trainwise.predict(run, df.drop(columns=["price", "rooms"]))
    assert list(frame.columns) == ["prediction_price", "prediction_rooms"]
    np.testing.assert_allclose(frame.to_numpy(), pred, rtol=1e-6)
    from PIL import Image

    with Image.open(run / "regression.png") as img:  # one row of panels (fit, residuals) per target
        width, height = img.size
    assert height > 0.75 * width


def test_label_columns_are_refused_with_what_to_do(tmp_path):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=50), "spam": rng.integers(0, 2, 50), "urgent": rng.integers(0, 2, 50)})
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(trainwise.TrainwiseError, match="multi-label classification is not supported yet") as e:
        trainwise.fit(str(tmp_path / "t.csv"), target="spam,urgent", epochs=1, quiet=True)
    assert "--target one_label" in e.value.hint


def test_two_targets_export_to_onnx_in_their_own_units(csv, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from trainwise.export import check_onnx, export

    path, df = csv
    run = tmp_path / "run"
    trainwise.fit(str(path), target="price,rooms", epochs=3, quiet=True, run_dir=str(run))
    X = df[["x1", "x2", "x3"]].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(check_onnx(export(run), X), trainwise.load(run).predict(df), rtol=1e-5, atol=1e-3)
