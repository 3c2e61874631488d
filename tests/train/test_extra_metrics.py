"""--metrics (F1, AUROC, ... computed with torchmetrics on validation and test), the per-class table and
--class-weight: values checked against scikit-learn's own implementations."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from sklearn.utils.class_weight import compute_class_weight

from trainwise.errors import TrainwiseError
from trainwise.options import CLASSIFICATION_METRICS
from trainwise.train.components import class_weights
from trainwise.train.metrics import MetricAccumulator, extra_metrics, per_class_table, resolve_extra_metrics


def _multiclass(n=300, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    out = torch.randn(n, k, generator=g) + 1.5 * torch.nn.functional.one_hot(y, k)  # informative but imperfect
    return out, y


def test_multiclass_metrics_match_scikit_learn():
    out, y = _multiclass()
    names = tuple(n for n in CLASSIFICATION_METRICS if not n.startswith("top") or n in ("top2_accuracy", "top3_accuracy"))
    got = extra_metrics(names, out, y, kind="multiclass")
    p = out.softmax(-1).numpy()
    pred, yn = p.argmax(1), y.numpy()
    want = {"balanced_accuracy": skm.balanced_accuracy_score(yn, pred), "log_loss": skm.log_loss(yn, p),
            "auroc": skm.roc_auc_score(yn, p, multi_class="ovr", average="macro"),
            "average_precision": skm.average_precision_score(np.eye(4)[yn], p, average="macro"),
            "top2_accuracy": skm.top_k_accuracy_score(yn, p, k=2), "top3_accuracy": skm.top_k_accuracy_score(yn, p, k=3)}
    for base, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        want[base] = fn(yn, pred, average="macro")  # several classes: f1 means macro
        for avg in ("macro", "micro", "weighted"):
            want[f"{base}_{avg}"] = fn(yn, pred, average=avg)
    assert set(got) == set(want) == set(names)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-5), k


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_binary_metrics_are_the_positive_class_as_in_scikit_learn(kind):
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(200, generator=g) < 0.3).long()
    logit = torch.randn(200, generator=g) + 1.2 * (2 * y - 1)
    out = torch.stack([torch.zeros(200), logit], 1) if kind == "multiclass" else logit[:, None]  # softmax([0, z])[1] = sigmoid(z)
    got = extra_metrics(("f1", "precision", "recall", "f1_macro", "auroc", "average_precision", "log_loss"), out, y, kind=kind)
    prob = torch.sigmoid(logit).numpy()
    pred, yn = (prob > 0.5).astype(int), y.numpy()
    want = {"f1": skm.f1_score(yn, pred), "precision": skm.precision_score(yn, pred), "recall": skm.recall_score(yn, pred),
            "f1_macro": skm.f1_score(yn, pred, average="macro"), "auroc": skm.roc_auc_score(yn, prob),
            "average_precision": skm.average_precision_score(yn, prob), "log_loss": skm.log_loss(yn, prob)}
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-5), k


def test_mape_is_in_the_targets_own_units():
    y_true = torch.tensor([10.0, 20.0, 40.0, 80.0])
    y_pred = torch.tensor([11.0, 18.0, 40.0, 100.0])
    mean, std = 30.0, 20.0  # a standardized target: the accumulator sees (y - mean) / std
    got = extra_metrics(("mape",), ((y_pred - mean) / std)[:, None], (y_true - mean) / std, kind="regression",
                        target_std=std, target_mean=mean)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y_true, y_pred), abs=1e-6)


def test_accumulator_gives_the_same_values_batch_by_batch():
    out, y = _multiclass(seed=5)
    acc = MetricAccumulator("multiclass", torch.device("cpu"), extra_metrics=("f1", "auroc"), n_classes=4)
    for i in range(0, 300, 64):
        acc.update(out[i:i + 64], y[i:i + 64], torch.nn.functional.cross_entropy(out[i:i + 64], y[i:i + 64]))
    logs = acc.compute("val")
    whole = extra_metrics(("f1", "auroc"), out, y, kind="multiclass")
    assert logs["val/f1"] == pytest.approx(whole["f1"]) and logs["val/auroc"] == pytest.approx(whole["auroc"])
    assert logs["val/accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item())
    plain = MetricAccumulator("multiclass", torch.device("cpu"))  # without --metrics nothing is kept
    plain.update(out, y, torch.tensor(1.0))
    assert plain.outputs == [] and set(plain.compute("val")) == {"val/loss", "val/accuracy"}


def test_per_class_table_matches_scikit_learn():
    out, y = _multiclass(seed=2)
    pred = out.argmax(1).numpy()
    cm = skm.confusion_matrix(y.numpy(), pred).tolist()
    table = per_class_table(cm, ["a", "b", "c", "d"])
    p, r, f, s = skm.precision_recall_fscore_support(y.numpy(), pred)
    assert [row["class"] for row in table] == ["a", "b", "c", "d"]
    assert [row["support"] for row in table] == s.tolist()
    assert [row["precision"] for row in table] == pytest.approx(p, abs=1e-4)
    assert [row["recall"] for row in table] == pytest.approx(r, abs=1e-4)
    assert [row["f1"] for row in table] == pytest.approx(f, abs=1e-4)


def test_resolving_metrics_by_task():
    assert resolve_extra_metrics("auto", task="classification", n_classes=2) == \
        ("balanced_accuracy", "f1", "precision", "recall", "auroc", "average_precision")
    assert resolve_extra_metrics("auto", task="classification", n_classes=10) == ()
    assert resolve_extra_metrics(("mape",), task="regression", n_classes=None) == ("mape",)
    with pytest.raises(TrainwiseError, match="mape: not a classification metric") as e:
        resolve_extra_metrics(("mape",), task="classification", n_classes=3)
    assert "balanced_accuracy" in e.value.hint
    with pytest.raises(TrainwiseError, match="data has 5 classes, so the true class is always among the top 5"):
        resolve_extra_metrics(("top5_accuracy",), task="classification", n_classes=5)


def test_binary_run_reports_the_imbalance_metrics_by_default(cli, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", "breast-cancer", "--epochs", "8", "--quiet", "--run-dir", str(run))
    assert code == 0, err
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("balanced_accuracy", "f1", "precision", "recall", "auroc", "average_precision"):
        assert f"val/{name}" in header and f"train/{name}" not in header  # the hot loop keeps loss + accuracy only
    s = json.loads((run / "summary.json").read_text())
    assert "test/auroc" in s["test"] and "test/auroc" in out
    cm = np.array(s["test_confusion"])
    # the summary's test F1 is the positive class's, and agrees with the test confusion matrix and its per-class row
    tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
    assert s["test"]["test/f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-6)
    assert s["test_per_class"][1] == {"class": "benign", "precision": round(tp / (tp + fp), 4), "recall": round(tp / (tp + fn), 4),
                                      "f1": round(2 * tp / (2 * tp + fp + fn), 4), "support": int(cm[1].sum())}
    html = (run / "report.html").read_text()
    for r in s["test_per_class"]:  # the per-class table is in the report, a row per class with the summary's values
        assert (f"<tr><td>{r['class']}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td><td>{r['f1']:.3f}</td>"
                f"<td>{r['support']}</td></tr>") in html


def test_monitor_an_extra_metric_for_early_stopping(cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("fit", "--data", "wine", "--epochs", "12", "--metrics", "f1_macro,log_loss", "--monitor", "val/log_loss",
                       "--patience", "3", "--quiet", "--run-dir", str(run))
    assert code == 0, err
    m = pd.read_csv(run / "metrics.csv")
    s = json.loads((run / "summary.json").read_text())
    assert s["monitor"] == "val/log_loss"
    assert s["best_epoch"] == int(m.loc[m["val/log_loss"].idxmin(), "epoch"])  # log loss: lower is better
    assert s["best"]["val/f1_macro"] == pytest.approx(m.loc[s["best_epoch"] - 1, "val/f1_macro"])


@pytest.mark.parametrize("argv,message", [
    (["--metrics", "f1,aucroc"], "unknown metrics 'aucroc'; valid: balanced_accuracy, f1, "),
    (["--metrics", "f1,aucroc"], "HINT: did you mean 'auroc'?"),
    (["--metrics", "mape"], "--metrics mape: not a classification metric"),
    (["--monitor", "val/f1"], "monitor 'val/f1' is not a metric this run logs"),
    (["--class-weight", "1,2"], "--class-weight 1,2: 2 weight(s) for 3 classes (class_0, class_1, class_2)"),
])
def test_bad_metric_options_are_input_errors(cli, tmp_path, argv, message):
    run = tmp_path / "run"
    code, _, err = cli("fit", "--data", "wine", "--epochs", "2", "--quiet", "--run-dir", str(run), *argv)
    assert code == 2 and message in err and "HINT" in err, err
    assert not run.exists()


def test_naming_an_always_computed_metric_asks_for_nothing_more():
    from trainwise.options import parse_metrics

    assert parse_metrics("accuracy") == () and parse_metrics("accuracy,auroc,loss") == ("auroc",)
    assert parse_metrics(["r2", "mape"]) == ("mape",)


def test_class_weights_balanced_match_scikit_learn():
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    assert class_weights("balanced", y, ["a", "b", "c"]).tolist() == \
        pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=y).tolist())
    with pytest.raises(TrainwiseError, match="class c has no rows in the training split"):
        class_weights("balanced", np.array([0, 1, 1]), ["a", "b", "c"])


def test_class_weight_weights_the_loss_and_lifts_the_rare_class(tmp_path):
    import trainwise

    rng = np.random.default_rng(0)
    n = 800
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] + 0.8 * X[:, 1] + rng.normal(scale=0.8, size=n) > 2.0).astype(int)  # ~8% positives, overlapping
    common = dict(epochs=10, quiet=True, seed=0, split=(0.6, 0.2, 0.2))
    plain = trainwise.fit(X, y, run_dir=str(tmp_path / "plain"), **common)
    weighted = trainwise.fit(X, y, run_dir=str(tmp_path / "weighted"), class_weight="balanced", **common)
    s = json.loads((tmp_path / "weighted" / "summary.json").read_text())
    train_y = y[plain.data.indices["train"]]
    want = compute_class_weight("balanced", classes=np.arange(2), y=train_y)
    assert list(s["class_weight"].values()) == pytest.approx(want.tolist(), abs=1e-5)
    loss = weighted.trainer.loss_fn
    assert loss.weight.tolist() == pytest.approx(want.tolist(), abs=1e-5)
    recall = lambda r: r.summary["test_per_class"][1]["recall"]  # noqa: E731
    assert recall(weighted) > recall(plain) + 0.2  # the rare class is found far more often
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["class_weight"] is None


def test_balanced_accuracy_ignores_a_predicted_class_the_split_does_not_have():
    y = torch.tensor([0, 0, 1, 1])
    out = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 1]), 3).float() * 5  # predicts class 2, absent from y
    got = extra_metrics(("balanced_accuracy",), out, y, kind="multiclass")["balanced_accuracy"]
    assert got == pytest.approx(skm.balanced_accuracy_score(y.numpy(), [0, 2, 1, 1])) == pytest.approx(0.75)


def test_class_weights_reach_restarts_and_evaluate(tmp_path):
    import trainwise

    run = tmp_path / "run"
    r = trainwise.fit("iris", restarts=2, class_weight="1,1,100", epochs=3, quiet=True, run_dir=str(run))
    assert r.trainer.loss_fn.weight.tolist() == [1.0, 1.0, 100.0]  # the chosen member's own trainer
    again = trainwise.evaluate(run, force_test=True)  # the same weighted loss the run reported
    assert again["test/loss"] == pytest.approx(r.summary["test"]["test/loss"], rel=1e-5)


@pytest.mark.parametrize("value", [False, 3, 1.5])
def test_metrics_that_are_not_names_are_refused(value):
    from trainwise.options import parse_metrics

    with pytest.raises(TrainwiseError, match=f"metrics: {value!r} is not a list of metric names"):
        parse_metrics(value)
