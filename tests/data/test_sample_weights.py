"""A sample-weight column (--weight-column): the training loss is the rows' weighted mean; the column is not a
feature; bad weights are refused naming the rows."""
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import trainwise
from trainwise.train.components import SampleWeighted


@pytest.mark.parametrize("base, out, y", [
    (nn.CrossEntropyLoss(), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])),
    (nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5])), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])),
    (nn.BCEWithLogitsLoss(), torch.randn(5, 2), torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])),
    (nn.MSELoss(), torch.randn(5, 2), torch.randn(5, 2)),
])
def test_the_weighted_loss_is_the_weighted_mean_of_the_rows(base, out, y):
    w = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0])
    loss = SampleWeighted(base)
    rows = [base(out[i:i + 1], y[i:i + 1]) for i in range(5)]
    if isinstance(base, nn.CrossEntropyLoss) and base.weight is not None:  # torch's weighted mean: class weights in the total
        c = base.weight[y]
        expected = sum(w[i] * c[i] * rows[i] for i in range(5)) / (w * c).sum()
    else:
        expected = sum(w[i] * rows[i] for i in range(5)) / w.sum()
    torch.testing.assert_close(loss(out, (y, w)), expected)
    torch.testing.assert_close(loss(out, y), base(out, y))  # validation and test: the plain loss
    torch.testing.assert_close(loss(out, (y, torch.full((5,), 3.0))), base(out, y))  # equal weights: the plain mean


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    df = pd.DataFrame(x, columns=["a", "b"]).assign(y=np.where(x[:, 0] > 0, "pos", "neg"))
    return df.assign(w=np.where(df["y"] == "pos", 1.0, 0.0))  # the class 'neg' never counts


@pytest.mark.parametrize("model", ["mlp:16", "tabular:k=2,width=16"])
def test_rows_of_weight_zero_do_not_count(tmp_path, model):
    df = _table()
    df.to_csv(tmp_path / "t.csv", index=False)
    run = tmp_path / "run"
    r = trainwise.fit(str(tmp_path / "t.csv"), target="y", weight_column="w", model=model, epochs=6, quiet=True, run_dir=str(run))
    assert r.data.preprocessor.columns_ == ["a", "b"]  # the weights are not a feature
    train = df.iloc[r.data.indices["train"]]
    assert r.summary["data"]["train_weights"] == {"sum": float(train["w"].sum()), "zero": int((train["w"] == 0).sum())}
    test = df.iloc[r.data.indices["test"]]
    assert r.summary["test"]["test/accuracy"] == pytest.approx((test["y"] == "pos").mean())  # only 'pos' was ever learned
    assert (trainwise.load(run).predict(test) == "pos").all()
    assert "weight_column: w" in (run / "config.yaml").read_text()


def test_equal_weights_train_as_no_weights():
    df = _table().assign(w=2.5)
    a = trainwise.fit(df, target="y", weight_column="w", model="mlp:16", epochs=3, quiet=True)
    b = trainwise.fit(df.drop(columns="w"), target="y", model="mlp:16", epochs=3, quiet=True)
    for (k, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=k)


@pytest.mark.parametrize("weights, message", [
    ([1.0, -1.0] * 100, "--weight-column w holds 100 value(s) that are not finite numbers >= 0: -1.0 (row 2)"),
    (["heavy", "light"] * 100, "holds 200 value(s) that are not finite numbers >= 0: 'heavy' (row 1)"),
    ([np.nan] + [1.0] * 199, "not finite numbers >= 0: nan (row 1)"),
    ([0.0] * 200, "--weight-column w is zero (0) in every row"),
])
def test_bad_weights_are_refused_naming_the_rows(weights, message):
    df = _table(200).assign(w=weights)
    with pytest.raises(trainwise.TrainwiseError, match=re.escape(message)):
        trainwise.fit(df, target="y", weight_column="w", epochs=1, quiet=True)


def test_what_weights_do_not_combine_with_is_refused_before_anything_is_written(tmp_path, cli):
    _table().to_csv(tmp_path / "t.csv", index=False)
    code, _, err = cli("fit", "--data", str(tmp_path / "t.csv"), "--target", "y", "--weight-column", "w", "--nproc", "2",
                       "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "does not take sample weights (--weight-column" in err and not (tmp_path / "run").exists()
    with pytest.raises(trainwise.TrainwiseError, match="--weight-column y: 'y' is the target column"):
        trainwise.fit(_table(), target="y", weight_column="y", epochs=1)


def test_a_batch_of_weight_zero_rows_adds_nothing_and_regression_targets_are_never_smoothed():
    out, y = torch.randn(4, 2), torch.randn(4, 2)
    loss = SampleWeighted(nn.MSELoss())
    assert float(loss(out, (y, torch.zeros(4)))) == 0.0  # not 0/0 = NaN
    w = torch.tensor([1.0, 2.0, 0.0, 1.0])
    torch.testing.assert_close(loss(out, (y, w), smoothing=0.1), loss(out, (y, w)))


def test_sample_weight_beside_a_dataframe_and_its_refusals():
    df = pd.DataFrame({"a": np.arange(60.0), "b": np.tile([1.0, 2.0, None], 20), "y": np.tile([0, 1], 30)})
    w = np.where(np.arange(60) < 30, 1.0, 0.0)
    r = trainwise.fit(df.fillna(0.0), target="y", sample_weight=w, model="mlp:4", epochs=1, quiet=True)
    train = r.data.indices["train"]
    assert r.summary["data"]["train_weights"] == {"sum": float(w[train].sum()), "zero": int((w[train] == 0).sum())}
    with pytest.raises(trainwise.TrainwiseError, match=r"sample_weight has a weight for each of the 60 rows given, but 20 were dropped"):
        trainwise.fit(df, target="y", sample_weight=w, missing="drop", epochs=1, quiet=True)
    with pytest.raises(trainwise.TrainwiseError, match="weight_column 'a' weighs them already"):
        trainwise.fit(df.fillna(0.0), target="y", sample_weight=w, weight_column="a", epochs=1, quiet=True)
    dataset = torch.utils.data.TensorDataset(torch.zeros(60, 2), torch.zeros(60, dtype=torch.long))
    with pytest.raises(trainwise.TrainwiseError, match="not a torch Dataset"):
        trainwise.fit(dataset, sample_weight=w, epochs=1, quiet=True)


def test_an_interrupted_weighted_run_resumes_only_with_the_same_weights(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4)).astype(np.float32)
    y, w = (X[:, 0] > 0).astype(int), rng.random(150) + 0.5
    opts = dict(epochs=4, quiet=True, early_stopping=False)
    trainwise.fit(X, y, sample_weight=w, run_dir=tmp_path / "weighted", callbacks=[CtrlC()], **opts)
    trainwise.fit(X, y, run_dir=tmp_path / "plain", callbacks=[CtrlC()], **opts)
    for weights, run, said in ((None, "weighted", "with sample weights, but none were given now"),
                               (w[::-1].copy(), "weighted", "with sample weights, but other were given now"),
                               (w, "plain", "without sample weights, but some were given now")):
        with pytest.raises(trainwise.TrainwiseError, match=re.escape(said) + r"\. HINT: pass the same sample_weight"):
            trainwise.fit(X, y, sample_weight=weights, resume=tmp_path / run, quiet=True)
    done = trainwise.fit(X, y, sample_weight=w, resume=tmp_path / "weighted", quiet=True)
    assert done.summary["status"] == "completed" and done.summary["data"]["train_weights"]["sum"] > 0
