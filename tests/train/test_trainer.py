import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainwise import MLP, Callback, EarlyStopping, TensorBatches, Trainer, TrainwiseError
from trainwise.train.metrics import MetricAccumulator


def _data(n=96):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 1).long()


def _plain_loop(make_opt, X, y, epochs=3, B=16):
    """The ten-line PyTorch loop trainwise must match exactly."""
    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    opt = make_opt(model.parameters())
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), B):
            idx = perm[i:i + B]
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_parity_with_plain_loop_given_optimizer():
    X, y = _data()
    ref = _plain_loop(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), X, y)
    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    t = Trainer(model, loss="cross_entropy", optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    t.fit(TensorBatches(X, y, batch_size=16, seed=0), TensorBatches(X, y, batch_size=64, shuffle=False), epochs=3)
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_parity_with_plain_loop_named_optimizer():
    # trainwise builds Adam with torch's fused kernel (same algorithm, faster); the plain loop asks for the same
    X, y = _data()
    ref = _plain_loop(lambda p: torch.optim.Adam(p, lr=1e-2, fused=True), X, y)
    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    Trainer(model, loss="cross_entropy", optimizer="adam", lr=1e-2).fit(TensorBatches(X, y, batch_size=16, seed=0), epochs=3)
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_metrics_match_direct_computation():
    X, y = _data()
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    t = Trainer(model, loss="cross_entropy")
    logs = t.evaluate(TensorBatches(X, y, batch_size=10, shuffle=False))
    with torch.no_grad():
        out = model(X)
    assert logs["val/loss"] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-6)
    assert logs["val/accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item())


def test_regression_metrics_in_original_units():
    out = torch.tensor([[1.0], [2.0], [4.0]])
    y = torch.tensor([[1.5], [2.0], [3.0]])
    acc = MetricAccumulator("regression", torch.device("cpu"), target_std=2.0)
    acc.update(out, y, F.mse_loss(out, y))
    m = acc.compute("val")
    assert m["val/mae"] == pytest.approx(2.0 * 1.5 / 3)
    assert m["val/rmse"] == pytest.approx(2.0 * math.sqrt(1.25 / 3))
    assert m["val/r2"] == pytest.approx(1 - 1.25 / (y.var(unbiased=False).item() * 3))


class _Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append("fit_start")

    def on_epoch_end(self, trainer, *, epoch, logs):
        self.calls.append(f"epoch_end:{epoch}")

    def on_fit_end(self, trainer):
        self.calls.append(f"fit_end:{trainer.status}")


def test_hooks_run_in_order_and_only_when_overridden():
    X, y = _data()
    rec = _Recorder()
    t = Trainer(nn.Linear(4, 3), callbacks=[rec])
    t.fit(TensorBatches(X, y, batch_size=32), epochs=2)
    assert rec.calls == ["fit_start", "epoch_end:1", "epoch_end:2", "fit_end:completed"]
    assert t._hooks["on_batch_end"] == [] and t.stop_reason == "reached the maximum of 2 epochs"


class _FakeTrainer:
    def __init__(self):
        self.model = nn.Linear(1, 1)
        self.stopped = None

    def request_stop(self, reason):
        self.stopped = reason


def _feed(es, values):
    t = _FakeTrainer()
    for epoch, v in enumerate(values, 1):
        with torch.no_grad():
            t.model.weight.fill_(epoch)  # weights remember the epoch they come from
        es.on_epoch_end(t, epoch=epoch, logs={"val/loss": v})
        if t.stopped:
            return t, epoch
    return t, None


def test_early_stopping_patience():
    es = EarlyStopping(patience=3, min_delta=0.0)
    t, stopped_at = _feed(es, [1.0, 0.8, 0.9, 0.85, 0.81, 0.5])
    assert stopped_at == 5 and es.best_epoch_ == 2 and es.best_ == 0.8
    assert t.stopped == "val/loss did not improve by more than 0 for 3 epochs (best 0.8 at epoch 2)"


def test_early_stopping_min_delta():
    es = EarlyStopping(patience=2, min_delta=0.1)
    _, stopped_at = _feed(es, [1.0, 0.95, 0.92, 0.5])  # 0.95 and 0.92 are not better by > 0.1
    assert stopped_at == 3 and es.best_epoch_ == 1


def test_early_stopping_max_mode_and_restore_best():
    es = EarlyStopping(monitor="val/accuracy", patience=2)
    assert es.mode == "max"
    t = _FakeTrainer()
    for epoch, acc in enumerate([0.5, 0.9, 0.7, 0.6], 1):
        with torch.no_grad():
            t.model.weight.fill_(epoch)
        es.on_epoch_end(t, epoch=epoch, logs={"val/accuracy": acc})
    es.on_fit_end(t)
    assert t.stopped and t.model.weight.item() == 2.0  # the best epoch's weights are back


def test_no_restore_keeps_last_weights():
    es = EarlyStopping(patience=2, restore_best=False)
    t, _ = _feed(es, [0.5, 0.9, 0.9])
    es.on_fit_end(t)
    assert t.model.weight.item() == 3.0


def test_keyboard_interrupt_is_recorded_not_swallowed_as_stop():
    class Interrupt(Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    X, y = _data()
    t = Trainer(nn.Linear(4, 3), callbacks=[Interrupt()])
    history = t.fit(TensorBatches(X, y, batch_size=32), epochs=5)
    assert t.status == "interrupted" and len(history) == 2 and "interrupted by the user" in t.stop_reason


# --- stopping: only through request_stop, at the epoch end or (now=True) at the next step boundary ---

class _StopAt(Callback):
    def __init__(self, step, now):
        self.at, self.now, self.after_stop = step, now, 0

    def on_batch_end(self, trainer, *, step, loss):
        if step == self.at:
            trainer.request_stop(f"stop at step {step}", now=self.now)
        elif step > self.at:
            self.after_stop += 1


@pytest.mark.parametrize("accumulate", [1, 2])
def test_request_stop_now_stops_at_the_next_step_boundary(accumulate):
    X, y = _data()  # 96 rows: 6 batches of 16, i.e. 6 // accumulate steps per epoch
    stop = _StopAt(2, now=True)
    t = Trainer(nn.Linear(4, 3), callbacks=[stop], accumulate=accumulate)
    history = t.fit(TensorBatches(X, y, batch_size=16), epochs=5)
    assert t.step == 2 and stop.after_stop == 0 and len(history) == 1 and t.epoch == 1
    assert t.train_samples == 2 * accumulate * 16  # the partial epoch's metrics cover the batches it trained on
    assert t.status == "early_stopped" and t.stop_reason == "stop at step 2"


def test_request_stop_without_now_finishes_the_epoch():
    X, y = _data()
    stop = _StopAt(2, now=False)
    t = Trainer(nn.Linear(4, 3), callbacks=[stop])
    t.fit(TensorBatches(X, y, batch_size=16), epochs=5)
    assert t.step == 6 and stop.after_stop == 4 and len(t.history) == 1 and t.status == "early_stopped"
    t.fit(TensorBatches(X, y, batch_size=16), epochs=2)  # a new fit starts with no pending stop
    assert t.epoch == 2 and t.status == "completed"


def test_an_error_in_a_callback_fails_the_run_it_does_not_stop_it():
    class Broken(Callback):
        def on_batch_end(self, trainer, *, step, loss):
            raise RuntimeError("broken callback")

    X, y = _data()
    t = Trainer(nn.Linear(4, 3), callbacks=[Broken()])
    with pytest.raises(RuntimeError, match="broken callback"):
        t.fit(TensorBatches(X, y, batch_size=16), epochs=2)
    assert t.status == "failed" and t.stop_reason == "RuntimeError: broken callback" and t.history == []


# --- a trainer without an optimizer evaluates and predicts ---

def test_trainer_without_optimizer_evaluates_predicts_and_refuses_to_fit():
    X, y = _data()
    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    t = Trainer(model, optimizer=None)
    assert t.optimizer is None
    logs = t.evaluate(TensorBatches(X, y, batch_size=32, shuffle=False))
    with torch.no_grad():
        assert logs["val/loss"] == pytest.approx(F.cross_entropy(model(X), y).item(), rel=1e-6)
    assert torch.equal(t.predict(X, batch_size=40), model(X).detach())
    state = t.state_dict()
    assert state["optimizer"] is None and state["step"] == 0
    other = Trainer(MLP(4, [16], 3), optimizer=None)
    other.load_state_dict(state)
    assert torch.equal(other.predict(X), t.predict(X))
    with pytest.raises(TrainwiseError, match=r"Trainer.fit needs an optimizer.*optimizer=None.*HINT: build it with optimizer='adam'"):
        t.fit(TensorBatches(X, y, batch_size=16), epochs=1)
    assert t.status == "not_started" and t.history == []


def test_the_default_optimizer_is_still_adam():
    assert isinstance(Trainer(nn.Linear(4, 3)).optimizer, torch.optim.Adam)


# --- hooks see unscaled gradients under a grad scaler ---

class _GradsAtFirstStep(Callback):
    def __init__(self):
        self.grads = None

    def on_after_backward(self, trainer, *, loss):
        if self.grads is None:
            self.grads = [p.grad.detach().clone() for p in trainer.model.parameters()]


def _first_step(scaler=None, clip_norm=None, optimizer="sgd"):
    X, y = _data()
    torch.manual_seed(0)
    seen = _GradsAtFirstStep()
    t = Trainer(MLP(4, [16], 3), optimizer=optimizer, lr=0.1, callbacks=[seen], clip_norm=clip_norm)
    t.scaler = scaler
    t.fit(TensorBatches(X[:16], y[:16], batch_size=16, seed=0), epochs=1)  # one step
    return t, seen.grads


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_callbacks_see_unscaled_gradients_with_a_grad_scaler(optimizer):
    _, ref = _first_step(optimizer=optimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    t, seen = _first_step(scaler, optimizer=optimizer)
    assert scaler.get_scale() == 2.0 ** 10  # it scaled the loss, found no inf and kept its scale
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(seen, ref))
    t_ref, _ = _first_step(optimizer=optimizer)
    for a, b in zip(t.model.parameters(), t_ref.model.parameters()):  # and it stepped with the true gradients
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_clipping_sees_unscaled_gradients_with_a_grad_scaler():
    t_ref, _ = _first_step(clip_norm=0.01)
    t, _ = _first_step(torch.amp.GradScaler("cpu", init_scale=2.0 ** 10), clip_norm=0.01)
    assert t.history[0]["train/grad_norm"] == pytest.approx(t_ref.history[0]["train/grad_norm"], rel=1e-5)
    for a, b in zip(t.model.parameters(), t_ref.model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fp16_is_still_refused_on_cpu():
    with pytest.raises(TrainwiseError, match="precision 'fp16' needs a CUDA device"):
        Trainer(nn.Linear(4, 3), precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast with a grad scaler needs a CUDA GPU")
def test_callbacks_see_unscaled_gradients_under_fp16_on_cuda():
    X, y = (a.cuda() for a in _data())
    grads = []
    for precision in ("32", "fp16"):
        torch.manual_seed(0)
        seen = _GradsAtFirstStep()
        t = Trainer(MLP(4, [16], 3), optimizer="sgd", lr=0.1, callbacks=[seen], device="cuda", precision=precision)
        t.fit(TensorBatches(X[:16], y[:16], batch_size=16, seed=0), epochs=1)
        grads.append(seen.grads)
    assert t.scaler is not None and t.scaler.get_scale() == 2.0 ** 16  # the default scale: off by 65536 if scaled
    for a, b in zip(*grads):  # fp16 forward: equal up to half-precision rounding
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-3)


def test_checkpoint_is_a_snapshot_of_the_epoch_end_written_while_training_goes_on(tmp_path):
    """The checkpoint holds the state at its epoch's end even when the weights change right after (it is copied
    then and written by a background thread); the run's end waits for the last write."""
    from trainwise.runs import load_checkpoint
    from trainwise.train import Checkpoint

    class Bump(Callback):  # after the checkpoint's copy: what it wrote must not see this
        def on_epoch_end(self, trainer, *, epoch, logs):
            self.seen = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(1.0)

    torch.manual_seed(0)
    X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    bump = Bump()
    t = Trainer(torch.nn.Linear(3, 2), loss="cross_entropy", lr=0.1, callbacks=[Checkpoint(tmp_path), bump])
    t.fit(TensorBatches(X, y, batch_size=16, seed=0), epochs=3)
    state = load_checkpoint(tmp_path / "last.safetensors")
    assert state["epoch"] == 3
    assert all(torch.equal(state["model"][k], v) for k, v in bump.seen.items())
    assert not any(torch.equal(state["model"][k], v) for k, v in t.model.state_dict().items())
    assert not list(tmp_path.glob("*.tmp"))


def test_gradients_are_cleared_after_every_step_and_an_optimizers_own_zero_grad_is_called():
    X, y = _data()

    class Counting(torch.optim.SGD):  # an optimizer class with a zero_grad of its own: the Trainer calls it
        calls = 0

        def zero_grad(self, set_to_none=True):
            type(self).calls += 1
            super().zero_grad(set_to_none=set_to_none)

    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    t = Trainer(model, optimizer=Counting(model.parameters(), lr=0.1))
    t.fit(TensorBatches(X, y, batch_size=16, shuffle=True, seed=0), epochs=2)
    assert Counting.calls == 2 * (1 + 6)  # at each epoch's start and after each of its 6 steps
    assert all(p.grad is None for p in model.parameters())
    opt, calls = torch.optim.SGD(model.parameters(), lr=0.1), []  # one set on the optimizer itself: called too
    opt.zero_grad = lambda set_to_none=True: calls.append(set_to_none)
    Trainer(model, optimizer=opt).fit(TensorBatches(X, y, batch_size=16, shuffle=True, seed=0), epochs=1)
    assert calls == [True] * 7
    # torch's own optimizers: the same effect without their per-call wrappers, and the same weights as the plain loop
    ref = _plain_loop(lambda p: torch.optim.Adam(p, lr=0.01), X, y)
    torch.manual_seed(0)
    model = MLP(4, [16], 3)
    t = Trainer(model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    t.fit(TensorBatches(X, y, batch_size=16, shuffle=True, seed=0), epochs=3)
    assert all(p.grad is None for p in model.parameters())
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)
