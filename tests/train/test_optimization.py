"""LR schedules, gradient clipping, accumulation, mixed precision, torch.compile, initialization."""
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise
from trainwise import MLP, TensorBatches, Trainer, TrainwiseError
from trainwise.models import init_weights
from trainwise.train import LRSchedule


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] - X[:, 1] > 0).long()


def _lrs(tmp_path, name, epochs, **options):
    trainwise.fit("iris", run_dir=tmp_path / name, quiet=True, epochs=epochs, early_stopping=False,
                  checkpoint=False, **{"lr": 0.01, **options})
    return pd.read_csv(tmp_path / name / "metrics.csv")


def test_step_schedule_is_the_lectures_steplr(tmp_path):
    lr = _lrs(tmp_path, "step", 25, schedule="step")["lr"].tolist()  # defaults step_size=10, gamma=0.5
    assert lr == [0.01 * 0.5 ** ((e - 1) // 10) for e in range(1, 26)]


def test_exponential_schedule(tmp_path):
    lr = _lrs(tmp_path, "exp", 6, schedule="exponential", gamma=0.8)["lr"]
    assert lr.tolist() == pytest.approx([0.01 * 0.8 ** (e - 1) for e in range(1, 7)], rel=1e-12)


def test_cosine_with_warmup_rises_then_falls_to_zero(tmp_path):
    epochs, per_epoch = 12, math.ceil(106 / 16)
    lr = _lrs(tmp_path, "cos", epochs, schedule="cosine", warmup_epochs=2)["lr"].tolist()
    warmup = 2 * per_epoch
    assert lr[0] == pytest.approx(0.01 / (warmup + 1))  # first step of the linear warmup
    assert lr[1] == pytest.approx(0.01 * (per_epoch + 1) / (warmup + 1))
    assert lr[2] == pytest.approx(0.01)  # warmup done: the peak
    assert all(a > b for a, b in zip(lr[2:], lr[3:]))  # then strictly decreasing
    step = (epochs - 1) * per_epoch - warmup
    assert lr[-1] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * step / (epochs * per_epoch - warmup))))


def test_onecycle_starts_low_peaks_and_ends_low(tmp_path):
    lr = _lrs(tmp_path, "one", 20, schedule="onecycle")["lr"].tolist()
    assert lr[0] == pytest.approx(0.01 / 25)  # torch's div_factor
    peak = max(range(20), key=lambda i: lr[i])
    assert 4 <= peak <= 7 and lr[peak] > 0.009  # ~30% of the way in
    assert lr[-1] < 0.01 / 25


def test_plateau_halves_lr_only_after_patience_epochs_without_improvement(tmp_path):
    frame = _lrs(tmp_path, "plat", 40, schedule="plateau", schedule_patience=1, lr=0.05, monitor="val/loss")
    lr, val = frame["lr"].tolist(), frame["val/loss"].tolist()
    best, bad, expected = math.inf, 0, [0.05]
    for v in val[:-1]:  # replay torch's rule: relative threshold 1e-4, then `patience` bad epochs
        if v < best * (1 - 1e-4):
            best, bad = v, 0
        else:
            bad += 1
        factor = 0.5 if bad > 1 else 1.0
        bad = 0 if bad > 1 else bad
        expected.append(expected[-1] * factor)
    assert lr == pytest.approx(expected, rel=1e-12) and lr[-1] < 0.05  # it did drop


def test_schedule_errors():
    with pytest.raises(TrainwiseError, match="schedule 'cosin'.*did you mean 'cosine'"):
        LRSchedule("cosin")
    with pytest.raises(TrainwiseError, match=r"gamma must be in \(0, 1\], got 2"):
        LRSchedule("step", gamma=2)


def _one_step(**trainer_kw):
    X, y = _data(16)
    torch.manual_seed(0)
    model = MLP(4, [8], 2)
    before = [p.detach().clone() for p in model.parameters()]
    t = Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), **trainer_kw)
    logs = t.train_epoch(TensorBatches(X, y, batch_size=16, shuffle=False))
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    # the same batch's gradient, computed by hand
    torch.manual_seed(0)
    ref = MLP(4, [8], 2)
    F.cross_entropy(ref(X), y).backward()
    grad = torch.cat([p.grad.flatten() for p in ref.parameters()])
    return logs, update, grad


def test_clip_by_norm_bounds_the_update_and_logs_the_preclip_norm():
    logs, update, grad = _one_step(clip_norm=0.01)
    assert logs["train/grad_norm"] == pytest.approx(grad.norm().item(), rel=1e-5)
    assert grad.norm().item() > 0.01
    assert update.norm().item() == pytest.approx(0.01, rel=1e-4)  # lr 1: the update is the clipped gradient
    torch.testing.assert_close(-update, grad * 0.01 / grad.norm(), rtol=1e-3, atol=1e-7)  # direction kept


def test_clip_by_value_bounds_each_element():
    logs, update, grad = _one_step(clip_value=0.005)
    assert logs["train/grad_norm"] == pytest.approx(grad.norm().item(), rel=1e-5)
    torch.testing.assert_close(-update, grad.clamp(-0.005, 0.005), rtol=1e-5, atol=1e-7)


def test_no_clipping_logs_no_grad_norm():
    logs, update, grad = _one_step()
    assert "train/grad_norm" not in logs
    torch.testing.assert_close(-update, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_accumulating_4_batches_of_16_equals_one_batch_of_64(opt):
    X, y = _data(64)
    def run(batch_size, accumulate):
        torch.manual_seed(0)
        model = MLP(4, [16], 2)
        t = Trainer(model, optimizer=opt, lr=0.05, momentum=0.9, accumulate=accumulate)
        t.train_epoch(TensorBatches(X, y, batch_size=batch_size, shuffle=False))
        return t.step, torch.cat([p.detach().flatten() for p in model.parameters()])
    steps_big, big = run(64, 1)
    steps_acc, acc = run(16, 4)
    assert steps_big == steps_acc == 1
    torch.testing.assert_close(acc, big, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(run(16, 1)[1], big, atol=1e-4)  # without accumulation: four different steps


def test_accumulation_steps_a_partial_group_at_epoch_end(tmp_path):
    r = trainwise.fit("iris", run_dir=tmp_path / "r", quiet=True, epochs=2, early_stopping=False, accumulate=4)
    assert r.trainer.step == 2 * math.ceil(math.ceil(106 / 16) / 4)  # 7 batches -> 2 optimizer steps per epoch


class _DtypeProbe(trainwise.Callback):
    def __init__(self):
        self.dtypes = set()

    def on_fit_start(self, trainer):
        first = next(m for m in trainer.model.modules() if isinstance(m, nn.Linear))
        first.register_forward_hook(lambda m, i, o: self.dtypes.add(o.dtype))


def test_bf16_autocast_trains(tmp_path):
    probe = _DtypeProbe()
    r = trainwise.fit("wine", run_dir=tmp_path / "bf", quiet=True, epochs=15, precision="bf16", callbacks=[probe], lr=0.01)
    assert probe.dtypes == {torch.bfloat16}  # the matmuls really ran in bfloat16
    assert all(p.dtype == torch.float32 for p in r.model.parameters())  # master weights stay float32
    h = r.history
    assert h[-1]["train/loss"] < 0.5 * h[0]["train/loss"] and r.test["test/accuracy"] > 0.85


def test_fp16_needs_cuda():
    with pytest.raises(TrainwiseError, match="precision 'fp16' needs a CUDA device.*HINT: use --precision bf16"):
        Trainer(nn.Linear(2, 2), precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a grad scaler needs a CUDA GPU")
def test_fp16_with_grad_scaler_trains_on_cuda(tmp_path):
    r = trainwise.fit("wine", run_dir=tmp_path / "fp", quiet=True, epochs=15, precision="fp16", device="cuda", lr=0.01)
    assert r.trainer.scaler is not None and r.history[-1]["train/loss"] < 0.5 * r.history[0]["train/loss"]


@pytest.mark.slow
def test_torch_compile_trains_and_saves_plain_weights(tmp_path):
    r = trainwise.fit("iris", run_dir=tmp_path / "c", quiet=True, epochs=8, compile=True, batch_size=53,
                      lr=0.01, checkpoint=False, split="0.7,0.3,0")
    assert type(r.trainer.forward).__name__ == "OptimizedModule"
    assert r.history[-1]["train/loss"] < 0.7 * r.history[0]["train/loss"]
    loaded = trainwise.load_run(tmp_path / "c")  # state-dict keys are the plain model's (no _orig_mod.)
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), r.model.state_dict().values()))


@pytest.mark.parametrize("scheme, check", [
    ("normal", lambda w, fan_in, fan_out: abs(w.std().item() - 0.01) < 0.001),
    ("kaiming", lambda w, fan_in, fan_out: abs(w.std().item() - math.sqrt(2 / fan_in)) < 0.05 * math.sqrt(2 / fan_in)),
    ("xavier", lambda w, fan_in, fan_out: w.abs().max().item() <= math.sqrt(6 / (fan_in + fan_out))
     and abs(w.std().item() - math.sqrt(2 / (fan_in + fan_out))) < 0.05 * math.sqrt(2 / (fan_in + fan_out))),
])
def test_init_schemes(scheme, check):
    torch.manual_seed(0)
    model = init_weights(MLP(400, [300], 10), scheme)
    w = model[1].weight
    assert check(w, 400, 300) and model[1].bias.abs().sum().item() == 0
    default = MLP(400, [300], 10)
    assert init_weights(default, "default") is default


def test_init_option_reaches_the_model(tmp_path):
    r = trainwise.fit("digits", run_dir=tmp_path / "i", quiet=True, epochs=1, init="normal", optimizer="sgd",
                      lr=1e-12, momentum=0.0, checkpoint=False)
    assert abs(r.model[1].weight.std().item() - 0.01) < 0.001
