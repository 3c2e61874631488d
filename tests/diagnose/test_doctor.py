"""Each diagnosis code appears in the situation that causes it; a healthy digits run has none above info."""
import numpy as np
import pytest
import torch
from torch import nn

import trainwise
from trainwise.diagnose.doctor import HealthTracker, data_checks, diagnose


def _codes(result, severity=None):
    return {d["code"] for d in result.summary["diagnostics"] if severity is None or d["severity"] in severity}


def _fit(tmp_path, name, data="digits", **options):
    return trainwise.fit(data, run_dir=tmp_path / name, quiet=True, checkpoint=False, **options)


@pytest.mark.slow
def test_healthy_digits_run_has_no_warning(tmp_path, cli):
    r = _fit(tmp_path, "healthy")
    assert _codes(r, ("warning", "error")) == set()
    for d in r.summary["diagnostics"]:
        assert set(d) == {"code", "severity", "evidence", "advice"}


@pytest.mark.slow
def test_deep_sigmoid_mlp_has_vanishing_gradients(tmp_path, cli):
    code, out, err = cli("fit", "--data", "digits", "--model", "mlp:" + ",".join(["32"] * 10), "--activation", "sigmoid",
                         "--quiet", "--run-dir", str(tmp_path / "deep"), "--epochs", "12", "--no-checkpoint")
    assert code == 0, err
    assert "warning vanishing_gradients: the first layer's gradient norm (1.weight:" in out
    assert "Try: use ReLU-family activations" in out
    import json

    s = json.loads((tmp_path / "deep" / "summary.json").read_text())
    d = next(d for d in s["diagnostics"] if d["code"] == "vanishing_gradients")
    ratio = float(d["evidence"].split(" is ")[1].split("x")[0])
    assert ratio > 1e3


def test_saturated_tanh_units_count_as_vanishing_gradients():
    tracker_stats = {"weight_names": ["a", "b"], "grad_norms": [[1.0, 1.0]], "saturation": {"3": 0.8}}
    history = [{"train/loss": 1.0 - 0.1 * i, "val/loss": 1.0 - 0.1 * i} for i in range(5)]
    d = diagnose(history, tracker_stats)
    assert [x["code"] for x in d] == ["vanishing_gradients"] and "80% of the outputs of activation layer '3'" in d[0]["evidence"]


def test_lr_10_diverges(tmp_path):
    r = _fit(tmp_path, "lr10", lr=10.0)
    assert "lr_too_high" in _codes(r, ("warning", "error"))
    d = next(d for d in r.summary["diagnostics"] if d["code"] == "lr_too_high")
    assert "never got below 2.3" in d["evidence"] and "lower the learning rate" in d["advice"]


def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_weights(tmp_path):
    class Poison(trainwise.Callback):
        def on_epoch_start(self, trainer, *, epoch):
            if epoch == 3:  # the first layer's weights become NaN: every later loss is NaN
                with torch.no_grad():
                    trainer.model[1].weight[0, 0] = float("nan")

    seen = {}

    class Grab(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                seen["w"] = trainer.model[1].weight.detach().clone()

    r = _fit(tmp_path, "nan", "iris", epochs=10, callbacks=[Poison(), Grab()], restore_best=False)
    assert r.summary["epochs_run"] == 3 and r.summary["status"] == "early_stopped"
    assert "non-finite at step 15 (epoch 3, batch 1 of 7)" in r.summary["stop_reason"]
    assert torch.equal(r.model[1].weight, seen["w"])  # rolled back to the end of epoch 2
    assert {"non_finite_loss", "lr_too_high"} <= _codes(r, ("error",))


def test_exploding_gradients(tmp_path):
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        lin = nn.Linear(64, 64)
        nn.init.normal_(lin.weight, std=1.0)  # gain ~8 per layer: activations and gradients blow up
        layers.append(lin)
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    r = _fit(tmp_path, "explode", model=model, epochs=3, optimizer="sgd", lr=1e-12)
    d = next(d for d in r.summary["diagnostics"] if d["code"] == "exploding_gradients")
    assert d["severity"] in ("warning", "error") and "clip gradients" in d["advice"]


def test_dead_relu_units(tmp_path):
    torch.manual_seed(0)
    first = nn.Linear(64, 100)
    with torch.no_grad():
        first.bias[:80] = -1000.0  # 80 of 100 units can never fire
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(100, 10))
    r = _fit(tmp_path, "dead", model=model, epochs=3)
    d = next(d for d in r.summary["diagnostics"] if d["code"] == "dead_units")
    assert d["severity"] == "warning" and "80% of the ReLU units of layer '1'" in d["evidence"]


def test_big_model_on_few_samples_overfits(tmp_path):
    r = _fit(tmp_path, "over", model="mlp:512,512", dropout=0.0, split="0.04,0.48,0.48", early_stopping=False, epochs=60)
    d = next(d for d in r.summary["diagnostics"] if d["code"] == "overfitting")
    assert d["severity"] == "warning" and "train accuracy 1.000 vs validation" in d["evidence"]
    assert "dropout" in d["advice"] and "weight decay" in d["advice"] and "the best epoch was" in d["advice"]


def test_tiny_lr_underfits_and_is_too_low(tmp_path):
    r = _fit(tmp_path, "under", lr=1e-6, epochs=6, early_stopping=False)
    assert {"underfitting", "lr_too_low"} <= _codes(r, ("warning",))
    d = next(d for d in r.summary["diagnostics"] if d["code"] == "underfitting")
    assert "close to the trivial baseline" in d["evidence"] and "bigger" in d["advice"]


def test_class_imbalance_and_train_test_overlap(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = (rng.random(400) < 0.03).astype(int)
    X[200:260] = X[:60]  # duplicated rows end up on both sides of the split
    r = _fit(tmp_path, "data", X, y=y, epochs=2)
    imb = next(d for d in r.summary["diagnostics"] if d["code"] == "class_imbalance")
    assert imb["severity"] == "warning" and "per-class metrics" in imb["advice"]
    overlap = next(d for d in r.summary["diagnostics"] if d["code"] == "train_test_overlap")
    assert "identical to training rows" in overlap["evidence"]


def test_data_checks_counts_exactly():
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.array([0] * 10 + [1] * 10)
    arrays = {"train": (X[:14], y[:14]), "val": (X[14:17], y[14:17]), "test": (np.vstack([X[:2], X[17:]]), y[:5])}
    d = data_checks(arrays, "classification")
    assert [x["code"] for x in d] == ["train_test_overlap"]
    assert d[0]["evidence"].startswith("2 of 5 test rows (40.0%)") and d[0]["severity"] == "warning"


def test_tracker_reads_the_device_once_per_epoch_and_removes_its_hooks(tmp_path):
    r = _fit(tmp_path, "t", "iris", epochs=4)
    tracker = next(c for c in r.trainer.callbacks if isinstance(c, HealthTracker))
    assert len(tracker.grad_norms_) == 4 and len(tracker.grad_norms_[0]) == 3  # three weight matrices, one row per epoch
    assert all(not m._forward_hooks for m in r.model.modules())
    assert set(tracker.stats()["dead_fraction"]) == {"2", "4"}
