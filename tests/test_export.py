"""trainwise export --format onnx: onnxruntime's outputs match trainwise's own predictions within 1e-5."""
import json

import numpy as np
import pandas as pd
import pytest

import trainwise

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from trainwise.errors import TrainwiseError  # noqa: E402
from trainwise.export import check_onnx, export  # noqa: E402


def test_digits_run_exports_with_its_standardization_folded_in(cli, tmp_path):
    run = tmp_path / "run"
    assert trainwise.fit("digits", epochs=3, quiet=True, run_dir=str(run)).run_dir == run
    code, out, err = cli("export", str(run))
    assert code == 0, err
    assert f"ONNX model written to {run / 'model.onnx'}" in out
    desc = json.loads((run / "model.onnx.json").read_text())
    assert desc["folded"] == ["standardization"] and desc["classes"] == [str(i) for i in range(10)]
    from sklearn.datasets import load_digits

    X = load_digits().data[:300]  # raw pixel values 0..16: the graph standardizes them itself
    m = trainwise.load(run)
    np.testing.assert_allclose(check_onnx(run / "model.onnx", X), m.predict_proba(X), atol=1e-5)


def test_regression_outputs_are_in_the_targets_units(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = 50.0 + 10.0 * X[:, 0] + rng.normal(size=200)
    run = tmp_path / "run"
    trainwise.fit(X, y, task="regression", epochs=5, quiet=True, run_dir=str(run))
    (tmp_path / "out").mkdir()
    path = export(run, tmp_path / "out" / "reg.onnx")
    assert path == tmp_path / "out" / "reg.onnx" and (tmp_path / "out" / "reg.onnx.json").is_file()
    assert not (tmp_path / "out" / "reg.preprocess.json").exists()  # all folded in: nothing beside
    got = check_onnx(path, X)
    np.testing.assert_allclose(got[:, 0], trainwise.load(run).predict(X), atol=0, rtol=1e-5)  # float32 at ~50: 1e-5 relative
    assert abs(got.mean() - 50.0) < 5  # the target's units, not standardized ones


def test_a_table_with_missing_values_folds_the_median_fill(tmp_path):
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"a": rng.normal(size=160), "b": rng.normal(size=160)})
    df["label"] = np.where(df["a"] - df["b"] > 0, "up", "down")
    df.loc[::9, "b"] = np.nan
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    run = tmp_path / "run"
    trainwise.fit(str(csv), target="label", missing="median", epochs=4, quiet=True, run_dir=str(run))
    path = export(run)
    desc = json.loads(path.with_name(path.name + ".json").read_text())
    assert desc["columns"] == ["a", "b"] and desc["folded"] == ["median fill", "standardization"]
    X = df[["a", "b"]].to_numpy(dtype=np.float32)  # NaN left in: the graph fills it
    np.testing.assert_allclose(check_onnx(path, X), trainwise.load(run).predict_proba(df), atol=1e-5)


def test_text_columns_export_the_encoded_features(tmp_path, small_csv):
    run = tmp_path / "run"
    trainwise.fit(str(small_csv), target="label", epochs=4, quiet=True, run_dir=str(run))
    path = export(run)
    desc = json.loads(path.with_name(path.name + ".json").read_text())
    assert desc["input_is"].startswith("encoded features") and desc["folded"] == []
    assert desc["features"] == ["a", "b", "color=blue", "color=green", "color=red"]
    (tmp_path / "out.preprocess.json").mkdir()  # a folder where a file beside the model goes: refused before any write
    with pytest.raises(TrainwiseError, match=r"the file written beside it, '.*out.preprocess.json', is a folder"):
        export(run, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "out.onnx.json").exists()
    # the preprocessing not folded in is saved beside the model, as the run's own data
    assert desc["preprocess"] == "model.preprocess.json"
    assert (run / "model.preprocess.json").read_bytes() == (run / "preprocess.json").read_bytes()
    assert "blue" in json.dumps(json.loads((run / "model.preprocess.json").read_text()))  # the categories, in plain data
    m = trainwise.load(run)
    df = pd.read_csv(small_csv)
    np.testing.assert_allclose(check_onnx(path, m.preprocess.transform(df.drop(columns="label"))), m.predict_proba(df), atol=1e-5)


def test_bad_export_requests_are_input_errors(cli, tmp_path):
    code, _, err = cli("export", str(tmp_path / "nothing"))
    assert code == 2 and "is not a finished trainwise run" in err
    run = tmp_path / "run"
    trainwise.fit("iris", epochs=2, quiet=True, run_dir=str(run))
    code, _, err = cli("export", str(run), "--output", str(tmp_path / "m.txt"))
    assert code == 2 and "does not end in .onnx" in err and not (tmp_path / "m.txt").exists()
    code, _, err = cli("export", str(run), "--format", "tflite")
    assert code == 2 and "tflite" in err and "HINT" in err
