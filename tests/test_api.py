import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

import trainwise
from trainwise import MLP, TrainwiseError


def test_fit_writes_complete_run_dir(tmp_path):
    r = trainwise.fit("iris", quiet=True, run_dir=tmp_path / "run", epochs=30)
    files = {p.name for p in r.run_dir.iterdir()}
    assert {"config.yaml", "metrics.csv", "summary.json", "model.safetensors", "model.json", "preprocess.json",
            "curves.png"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    s = json.loads((r.run_dir / "summary.json").read_text())
    assert s["status"] in ("completed", "early_stopped") and s["epochs_run"] == len(r.history)
    assert set(s["test"]) == {"test/loss", "test/accuracy"} and 0.8 <= s["test"]["test/accuracy"] <= 1
    assert s["best"]["val/loss"] == min(h["val/loss"] for h in r.history[: s["best_epoch"]])
    assert s["data"]["sizes"] == {"train": 106, "val": 22, "test": 22}  # round(0.15 * 150) == 22 and s["seed"] == 0
    assert s["train_samples_per_s"] > 0 and s["wall_time_s"] > 0
    metrics = pd.read_csv(r.run_dir / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "lr", "train/loss", "train/accuracy", "val/loss", "val/accuracy", "time/epoch_s"]
    assert len(metrics) == s["epochs_run"]
    cfg = yaml.safe_load((r.run_dir / "config.yaml").read_text())
    assert cfg["loss"] == "cross_entropy" and cfg["task"] == "classification" and cfg["run_dir"] is None
    assert (r.run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_metrics_csv(tmp_path):
    runs = [trainwise.fit("wine", quiet=True, run_dir=tmp_path / f"r{i}", epochs=8) for i in range(2)]
    a, b = (pd.read_csv(r.run_dir / "metrics.csv").drop(columns="time/epoch_s") for r in runs)
    assert a.to_csv() == b.to_csv()
    texts = [(r.run_dir / "metrics.csv").read_text().splitlines() for r in runs]
    strip = lambda lines: [",".join(line.split(",")[:-1]) for line in lines]  # noqa: E731 - drop the time column
    assert strip(texts[0]) == strip(texts[1])


@pytest.mark.parametrize("split", ["0.7,0.3,0", "1,0,0"])
def test_fit_parity_with_plain_loop_on_arrays(blobs, split, tmp_path):
    # the full fit() path with no extras == a plain loop on the same (unstandardized) split, same seed
    X, y = blobs
    r = trainwise.fit(X, y, quiet=True, run_dir=tmp_path / "r", standardize=False, dropout=0.0, early_stopping=False,
                      restore_best=False, epochs=3, batch_size=16, lr=1e-2, model="mlp:16", split=split, schedule="none")
    Xtr, ytr = (torch.from_numpy(a) for a in r.data.arrays["train"])
    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 16):
            idx = perm[i:i + 16]
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(model.parameters(), r.model.parameters()):
        assert torch.equal(a, b)


def test_regression_run(tmp_path):
    r = trainwise.fit("toy-regression", quiet=True, run_dir=tmp_path / "r", batch_size=4, lr=0.01, model="mlp:16,16")
    assert set(r.test) == {"test/loss", "test/mae", "test/rmse", "test/r2"}
    assert r.summary["loss"] == "mse" and r.summary["data"]["sizes"] == {"train": 28, "val": 6, "test": 6}


def test_predict_and_evaluate_saved_run(tmp_path, small_csv):
    r = trainwise.fit(str(small_csv), target="label", quiet=True, run_dir=tmp_path / "r", epochs=40)
    assert r.summary["test_evaluations"] == 1
    ev = trainwise.evaluate(r.run_dir, force_test=True)
    assert ev == pytest.approx(r.test)  # same split rebuilt, same weights, same numbers
    frame = trainwise.predict(r.run_dir, small_csv, tmp_path / "p.csv")
    assert list(frame.columns) == ["prediction", "prob_no", "prob_yes"]
    np.testing.assert_allclose(frame[["prob_no", "prob_yes"]].sum(axis=1), 1.0, rtol=1e-6)
    truth = pd.read_csv(small_csv)["label"]
    assert (frame["prediction"] == truth).mean() > 0.8
    assert pd.read_csv(tmp_path / "p.csv")["prediction"].tolist() == frame["prediction"].tolist()
    # predictions agree with the model applied to the run's own preprocessed test split
    pred_test = frame["prediction"].iloc[r.data.indices["test"]]
    acc = (pred_test.to_numpy() == truth.iloc[r.data.indices["test"]].to_numpy()).mean()
    assert acc == pytest.approx(r.test["test/accuracy"])


def test_predict_regression_in_original_units(tmp_path):
    r = trainwise.fit("diabetes", quiet=True, run_dir=tmp_path / "r", epochs=5)
    raw = trainwise.load_source("diabetes")
    np.savez(tmp_path / "x.npz", X=raw.X[:20])
    frame = trainwise.predict(r.run_dir, tmp_path / "x.npz")
    assert 25 < frame["prediction"].mean() < 350  # diabetes progression units, not standardized ones


def test_user_model_from_file(tmp_path, blobs):
    f = tmp_path / "mymodel.py"
    f.write_text("import torch\ndef build(input_shape, output_size):\n"
                 "    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], 8), torch.nn.ReLU(), torch.nn.Linear(8, output_size))\n")
    X, y = blobs
    r = trainwise.fit(X, y, model=f"{f}:build", quiet=True, run_dir=tmp_path / "r", epochs=5)
    assert r.summary["model"]["parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    with pytest.raises(TrainwiseError, match="says this run's model is user code"):
        trainwise.load_run(r.run_dir)  # a run directory's code is imported only when trusted
    assert trainwise.load_run(r.run_dir, trust_code=True).model[0].in_features == 4


def test_python_module_model_and_shape_error(tmp_path, blobs):
    X, y = blobs
    r = trainwise.fit(X, y, model=torch.nn.Linear(4, 3), quiet=True, run_dir=tmp_path / "ok", epochs=2)
    assert r.summary["model"]["spec"] == "Linear"
    with pytest.raises(TrainwiseError, match=r"cannot take the data: input rows have shape \(4,\).*HINT: make the model accept"):
        trainwise.fit(X, y, model=torch.nn.Linear(7, 3), quiet=True, run_dir=tmp_path / "bad", epochs=2)
    with pytest.raises(TrainwiseError, match=r"returns outputs of shape \(2, 5\) for 2 rows; the loss needs \(2, 3\)"):
        trainwise.fit(X, y, model=torch.nn.Linear(4, 5), quiet=True, run_dir=tmp_path / "bad2", epochs=2)


def test_option_errors():
    with pytest.raises(TrainwiseError, match=r"unknown option key 'learning_rate'.*HINT: did you mean"):
        trainwise.fit("iris", learning_rate=0.1)
    with pytest.raises(TrainwiseError, match=r"loss 'mse' is for regression but the task is classification"):
        trainwise.fit("iris", loss="mse", quiet=True)
    with pytest.raises(TrainwiseError, match=r"'bce_with_logits' needs exactly 2 classes, the data has 3"):
        trainwise.fit("iris", loss="bce_with_logits", quiet=True)


def test_binary_bce(tmp_path):
    r = trainwise.fit("breast-cancer", loss="bce_with_logits", quiet=True, run_dir=tmp_path / "r", epochs=10)
    assert r.test["test/accuracy"] > 0.9
    assert r.summary["model"]["recipe"]["out_features"] == 1


class _Squares(torch.utils.data.Dataset):
    """A Dataset that is not in memory as arrays: items computed on access, labels 0..2."""

    def __init__(self, X, y):
        self.X, self.y = torch.as_tensor(X), torch.as_tensor(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def test_fit_on_torch_dataset_uses_dataloader(tmp_path, blobs):
    X, y = blobs
    r = trainwise.fit(_Squares(X, y), quiet=True, run_dir=tmp_path / "r", epochs=15, standardize=False)
    assert r.summary["data"]["sizes"] == {"train": 210, "val": 45, "test": 45}
    assert r.summary["data"]["train_class_counts"] == {"0": 70, "1": 70, "2": 70}  # stratified by the labels
    assert r.test["test/accuracy"] > 0.9
    from trainwise.data import DeviceLoader, prepare_dataset

    prep = prepare_dataset(_Squares(X, y))
    batches = prep.batches(kind="multiclass", device="cpu", batch_size=32, seed=0)
    assert isinstance(batches["train"], DeviceLoader) and batches["train"].num_samples == 210
    assert torch.equal(batches["train"].head(2), torch.as_tensor(X[prep.indices["train"][:2]]))
    seen = torch.cat([yy for _, yy in batches["train"]])
    assert sorted(seen.tolist()) == sorted(y[prep.indices["train"]].tolist())


def test_dataset_labels_must_be_indices(blobs):
    X, y = blobs
    with pytest.raises(TrainwiseError, match=r"labels must be the class indices 0..C-1; found \[1, 2, 3\]"):
        trainwise.fit(_Squares(X, y + 1), quiet=True)


@pytest.mark.parametrize("options", [
    {"optimizer": "sgd", "lr": 0.05, "nesterov": True}, {"optimizer": "adamw", "weight_decay": 0.01},
    {"optimizer": "rmsprop", "lr": 1e-3, "momentum": 0.0}, {"activation": "tanh"}, {"activation": "sigmoid"},
    {"activation": "gelu"}, {"activation": "leaky_relu", "batch_norm": True, "dropout": 0.3}])
def test_each_optimizer_and_activation_learns(options, tmp_path):
    r = trainwise.fit("wine", quiet=True, run_dir=tmp_path / "r", epochs=12, early_stopping=False, **options)
    assert r.history[-1]["train/loss"] < 0.6 * r.history[0]["train/loss"]
    assert r.summary["optimizer"] == options.get("optimizer", "adam")
    layers = [type(m).__name__ for m in r.model]
    assert ("BatchNorm1d" in layers) == options.get("batch_norm", False)


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_each_regression_loss_learns(loss, tmp_path):
    r = trainwise.fit("diabetes", loss=loss, quiet=True, run_dir=tmp_path / "r", epochs=10, early_stopping=False)
    assert r.summary["loss"] == loss and r.history[-1]["train/loss"] < r.history[0]["train/loss"]
    assert r.test["test/r2"] > 0.2


def test_model_from_package_module(tmp_path, monkeypatch, blobs):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "__init__.py").write_text("")
    (tmp_path / "zoo" / "nets.py").write_text(
        "import torch\ndef tiny(input_shape, output_size):\n    return torch.nn.Linear(input_shape[0], output_size)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    X, y = blobs
    r = trainwise.fit(X, y, model="zoo.nets:tiny", quiet=True, run_dir=tmp_path / "r", epochs=3)
    assert r.summary["model"]["parameters"] == 4 * 3 + 3
    nets = (tmp_path / "zoo" / "nets.py").resolve()
    assert trainwise.load_run(r.run_dir, trust_code=True).recipe == {
        "builder": "import", "target": "zoo.nets:tiny", "file": str(nets), "sha256": hashlib.sha256(nets.read_bytes()).hexdigest(),
        "input_shape": [4], "output_size": 3}


def test_failed_and_interrupted_runs_leave_a_summary(tmp_path):
    class Boom(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        trainwise.fit("iris", quiet=True, run_dir=tmp_path / "f", epochs=5, callbacks=[Boom()])
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert s["status"] == "failed" and s["stop_reason"] == "RuntimeError: disk on fire" and s["test"] is None
    assert len(pd.read_csv(tmp_path / "f" / "metrics.csv")) == 2  # finished epochs are kept

    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 3:
                raise KeyboardInterrupt

    r = trainwise.fit("iris", quiet=True, run_dir=tmp_path / "i", epochs=5, callbacks=[CtrlC()])
    assert r.summary["status"] == "interrupted" and r.summary["epochs_run"] == 3 and r.summary["test"] is None
    assert (tmp_path / "i" / "model.safetensors").is_file()
