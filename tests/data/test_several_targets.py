"""Several target columns (--target a,b): a multi-output regression, each column standardized on its own, metrics
averaged over the columns as scikit-learn does, one prediction column per target; 0/1 label columns are a multi-label
classification, one sigmoid and binary cross-entropy per label, its metrics as scikit-learn computes them."""
import json
import re

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


def _mail(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(topic=rng.choice(["x", "y"], n))
    df["spam"] = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    df["urgent"] = np.where(X[:, 1] + X[:, 2] > 0.5, "yes", "no")  # yes/no reads as 1/0
    df["work"] = ((X[:, 3] > 0) & (df["topic"] == "x")).astype(int)
    return df


LABELS = ["spam", "urgent", "work"]


def test_label_columns_train_a_multi_label_classifier_scored_as_scikit_learn_scores_it(cli, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, roc_auc_score

    df = _mail()
    df.to_csv(tmp_path / "mail.csv", index=False)
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", str(tmp_path / "mail.csv"), "--target", "spam,urgent,work", "--model", "mlp:32",
                         "--epochs", "30", "--quiet", "--run-dir", str(run))
    assert code == 0, err
    pp = json.loads((run / "preprocess.json").read_text())
    assert (pp["kind"], pp["loss"], pp["class_names"], pp["target"]["multilabel"]) == ("multilabel", "multilabel_bce", LABELS, True)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["test"]) == {f"test/{k}" for k in ("loss", "accuracy", "exact_match", "f1_macro", "f1_micro", "auroc",
                                                          "average_precision")}
    assert [r["label"] for r in summary["test_per_class"]] == LABELS and summary["test_confusion"] is None
    counts = summary["data"]["train_label_counts"]
    assert set(counts) == set(LABELS) and 0 < counts["work"] < counts["spam"]
    m = trainwise.load(run)
    truth = np.column_stack([df["spam"], df["urgent"] == "yes", df["work"]]).astype(int)
    pred, proba = m.predict(df), m.predict_proba(df)
    assert pred.shape == proba.shape == (len(df), 3) and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    ev = m.evaluate(df)
    assert ev["eval/exact_match"] == pytest.approx(accuracy_score(truth, pred), abs=1e-6)  # every label right
    assert ev["eval/exact_match"] > 0.8
    assert ev["eval/accuracy"] == pytest.approx(1 - hamming_loss(truth, pred), abs=1e-6)       # the share of labels right
    assert ev["eval/f1_macro"] == pytest.approx(f1_score(truth, pred, average="macro"), abs=1e-5)
    assert ev["eval/f1_micro"] == pytest.approx(f1_score(truth, pred, average="micro"), abs=1e-5)
    assert ev["eval/auroc"] == pytest.approx(roc_auc_score(truth, proba, average="macro"), abs=1e-4)
    frame = trainwise.predict(run, df.drop(columns=LABELS))
    assert list(frame.columns) == [f"prediction_{n}" for n in LABELS] + [f"prob_{n}" for n in LABELS]
    report = (run / "report.html").read_text()
    assert 'id="per-label"' in report and not (run / "confusion.png").exists()


def test_a_tabular_model_and_a_dataframe_take_label_columns(tmp_path):
    df = _mail(300, seed=1)
    r = trainwise.fit(df, target="spam,urgent,work", model="tabular:k=2,width=16", epochs=3, quiet=True, run_dir=str(tmp_path / "run"))
    assert r.summary["model"]["recipe"]["out_features"] == 3 and r.summary["model"]["recipe"]["kind"] == "multilabel"
    assert trainwise.load(tmp_path / "run").predict_proba(df.head(5)).shape == (5, 3)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from trainwise.export import check_onnx, export

    m = trainwise.load(tmp_path / "run")
    X = m.preprocess.transform(df.drop(columns=LABELS).head(20))
    np.testing.assert_allclose(check_onnx(export(tmp_path / "run"), X), m.predict_proba(df.head(20)), atol=1e-5)


@pytest.mark.parametrize("edit, options, message", [
    (lambda df: df.assign(work=0), {}, "label column 'work' is 0 in every row of the training split"),
    (lambda df: df.assign(urgent=df["urgent"].where(df.index != 3, "maybe")), {"task": "classification"},
     "label column 'urgent' holds 'maybe' (row 4)"),
    (lambda df: df, {"class_weight": "balanced"}, "the task is multi-label (several label columns)"),
    (lambda df: df, {"loss": "cross_entropy"}, "loss 'cross_entropy' is for one target, but the data has several label columns"),
    (lambda df: df, {"metrics": "top2_accuracy"}, "top2_accuracy: not a multi-label metric"),
])
def test_label_columns_refuse_what_does_not_fit_them(tmp_path, edit, options, message):
    with pytest.raises(trainwise.TrainwiseError, match=re.escape(message)):
        trainwise.fit(edit(_mail(200)), target="spam,urgent,work", epochs=1, quiet=True, **options)


def test_label_columns_as_numbers_with_task_regression(tmp_path):
    r = trainwise.fit(_mail(200).drop(columns="urgent"), target="spam,work", task="regression", epochs=1, quiet=True)
    assert r.summary["model"]["recipe"]["out_features"] == 2 and set(r.summary["test"]) >= {"test/r2", "test/mae"}


def test_two_targets_export_to_onnx_in_their_own_units(csv, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from trainwise.export import check_onnx, export

    path, df = csv
    run = tmp_path / "run"
    trainwise.fit(str(path), target="price,rooms", epochs=3, quiet=True, run_dir=str(run))
    X = df[["x1", "x2", "x3"]].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(check_onnx(export(run), X), trainwise.load(run).predict(df), rtol=1e-5, atol=0)  # in units


def test_arrays_with_rows_of_several_ones_are_label_columns():
    df = _mail(300, seed=2)
    Y = np.column_stack([df["spam"], df["urgent"] == "yes", df["work"]]).astype(np.float32)
    r = trainwise.fit(df[["a", "b", "c", "d"]].to_numpy(), Y, epochs=2, quiet=True)
    assert r.summary["data"]["labels"] == ["label_0", "label_1", "label_2"] and r.summary["model"]["recipe"]["out_features"] == 3
    assert "a multi-label classification, one sigmoid per column" in r.summary["data"]["notes"][0]
    assert "test/exact_match" in r.summary["test"]
