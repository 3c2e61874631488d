"""LR range test: exact restore, a suggestion inside the sweep on a problem with a known good range, files."""
import math

import pandas as pd
import pytest
import torch

import trainwise
from trainwise import TensorBatches, Trainer, TrainwiseError
from trainwise.models import MLP
from trainwise.train import Callback, EarlyStopping, MetricsCSV
from trainwise.train.lr_finder import lr_find


def _problem(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 8, generator=g)
    return X, (X[:, :3].sum(1) > 0).long()


def test_weights_optimizer_rng_and_shuffle_are_restored_exactly():
    X, y = _problem()
    torch.manual_seed(0)
    model = MLP(8, [32], 2, dropout=0.3)
    trainer = Trainer(model, optimizer="adam", lr=1e-3)
    batches = TensorBatches(X, y, batch_size=32, seed=0)
    trainer.fit(batches, epochs=1)  # optimizer state exists, so restoring it matters
    before_w = {k: v.clone() for k, v in model.state_dict().items()}
    before_opt = trainer.optimizer.state_dict()
    before_opt_state = {k: {n: t.clone() for n, t in s.items()} for k, s in before_opt["state"].items()}
    rng, gen = torch.get_rng_state(), batches.generator.get_state()
    result = lr_find(trainer, batches, steps=60)
    assert len(result.lrs) > 10
    assert all(torch.equal(before_w[k], v) for k, v in model.state_dict().items())
    after = trainer.optimizer.state_dict()
    assert [g["lr"] for g in after["param_groups"]] == [1e-3]
    for k, s in before_opt_state.items():
        assert all(torch.equal(t, after["state"][k][n]) for n, t in s.items())
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(batches.generator.get_state(), gen)


def test_suggestion_lies_in_the_known_good_range_for_sgd():
    # plain SGD on a standardized linear-ish problem: LRs between ~1e-2 and ~1 train well, 1e-5 barely moves
    X, y = _problem(2048)
    torch.manual_seed(0)
    trainer = Trainer(MLP(8, [32], 2), optimizer="sgd", momentum=0.0, lr=0.1)
    r = lr_find(trainer, TensorBatches(X, y, batch_size=32), start_lr=1e-5, end_lr=100.0, steps=100)
    assert 1e-5 <= r.suggestion <= 100 and 3e-3 <= r.suggestion <= 1.0
    assert r.suggestion <= r.min_over_10 * (1 + 1e-12)
    lrs = r.lrs
    assert lrs[0] == pytest.approx(1e-5) and all(b > a for a, b in zip(lrs, lrs[1:]))  # exponential sweep
    assert lrs[1] / lrs[0] == pytest.approx((100 / 1e-5) ** (1 / 99))
    assert "passed 4x its minimum" in r.stop_reason or "non-finite" in r.stop_reason  # it diverged at the top and stopped
    assert len(r.lrs) < 100


def test_stops_on_a_non_finite_loss():
    X, y = _problem()
    torch.manual_seed(0)
    trainer = Trainer(MLP(8, [32], 2), optimizer="sgd", momentum=0.0, lr=0.1)
    r = lr_find(trainer, TensorBatches(X, y, batch_size=32), start_lr=1e3, end_lr=1e12, steps=50)
    assert not math.isfinite(r.losses[-1]) or "passed" in r.stop_reason
    assert len(r.lrs) < 50


def test_argument_errors():
    trainer = Trainer(MLP(8, [4], 2))
    with pytest.raises(TrainwiseError, match="0 < start_lr < end_lr, got 1 .. 0.1"):
        lr_find(trainer, [], start_lr=1.0, end_lr=0.1)
    with pytest.raises(TrainwiseError, match="at least 5 steps"):
        lr_find(trainer, [], steps=2)


def test_lr_auto_in_fit_uses_the_suggestion_and_saves_the_curve(tmp_path):
    r = trainwise.fit("breast-cancer", lr="auto", run_dir=tmp_path / "r", quiet=True, epochs=3, checkpoint=False,
                      schedule="none")
    found = r.summary["lr_finder"]["suggestion"]
    assert r.summary["lr"] == found and r.history[0]["lr"] == found and 1e-7 <= found <= 10
    points = pd.read_csv(tmp_path / "r" / "lr_find.csv")
    assert list(points.columns) == ["step", "lr", "loss", "smoothed"] and len(points) == r.summary["lr_finder"]["steps"]
    assert (tmp_path / "r" / "lr_find.png").stat().st_size > 1000
    assert "lr: auto" in (tmp_path / "r" / "config.yaml").read_text()  # rerunning the config re-runs the finder


def test_cli_lr_find_and_bad_lr(tmp_path, cli):
    code, out, err = cli("lr-find", "--data", "iris", "--run-dir", str(tmp_path / "lf"), "--steps", "40")
    assert code == 0, err
    assert out.startswith("suggested lr ") and (tmp_path / "lf" / "lr_find.png").is_file()
    assert len(pd.read_csv(tmp_path / "lf" / "lr_find.csv")) <= 40
    code, _, err = cli("fit", "--lr", "fast")
    assert code == 2 and "'fast' is neither a number nor 'auto'" in err
    code, _, err = cli("fit", "--lr", "-1")
    assert code == 2 and "must be > 0" in err


def _hand_written_sweep(trainer, batches, start_lr, end_lr, steps):
    """The LR finder's former loop, kept as the reference the Trainer-driven sweep must reproduce bit for bit."""
    factor, losses, it = (end_lr / start_lr) ** (1 / (steps - 1)), [], iter(batches)
    trainer.model.train()
    for i in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        for g in trainer.optimizer.param_groups:
            g["lr"] = start_lr * factor ** i
        loss = trainer.loss_fn(trainer.forward(x), y)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_sweep_reproduces_the_hand_written_loop_exactly_across_epochs(optimizer):
    X, y = _problem(100)  # 4 batches of 32: 30 steps cycle through the data 8 times
    made = []
    for _ in range(2):
        torch.manual_seed(0)
        made.append((Trainer(MLP(8, [16], 2, dropout=0.2), optimizer=optimizer), TensorBatches(X, y, batch_size=32, seed=1)))
    (t, b), (ref_t, ref_b) = made
    r = lr_find(t, b, start_lr=1e-6, end_lr=1e-3, steps=30)  # too low an end to diverge: all 30 steps run
    assert r.losses == _hand_written_sweep(ref_t, ref_b, 1e-6, 1e-3, 30)
    assert r.stop_reason.startswith("reached end_lr 0.001 after 30 steps") and len(r.lrs) == 30


def test_sweep_stops_mid_epoch_after_its_steps():
    X, y = _problem()  # 16 batches per epoch
    torch.manual_seed(0)
    r = lr_find(Trainer(MLP(8, [16], 2)), TensorBatches(X, y, batch_size=32), start_lr=1e-6, end_lr=1e-5, steps=7)
    assert len(r.lrs) == 7 and r.lrs[-1] == pytest.approx(1e-5)


class _AllHooks(Callback):
    def __init__(self):
        self.calls = 0

    def on_fit_start(self, trainer): self.calls += 1
    def on_epoch_start(self, trainer, *, epoch): self.calls += 1
    def on_after_backward(self, trainer, *, loss): self.calls += 1
    def on_batch_end(self, trainer, *, step, loss): self.calls += 1
    def on_epoch_end(self, trainer, *, epoch, logs): self.calls += 1
    def on_fit_end(self, trainer): self.calls += 1


def test_sweep_leaves_the_trainers_record_and_callbacks_alone(tmp_path):
    X, y = _problem()
    torch.manual_seed(0)
    hooks, stopper = _AllHooks(), EarlyStopping(patience=1)
    csv = MetricsCSV(tmp_path / "metrics.csv")
    t = Trainer(MLP(8, [16], 2), callbacks=[hooks, stopper, csv])
    batches, val = TensorBatches(X, y, batch_size=32), TensorBatches(X, y, batch_size=512, shuffle=False)
    t.fit(batches, val, epochs=1)
    record = (t.epoch, t.step, list(t.history), t.status, t.stop_reason, t.train_time_s, t.train_samples,
              t.steps_per_epoch, t.max_epochs, t.callbacks, hooks.calls, stopper.state_dict(), (tmp_path / "metrics.csv").read_text())
    r = lr_find(t, batches, steps=40)
    assert len(r.lrs) > 10
    assert record == (t.epoch, t.step, t.history, t.status, t.stop_reason, t.train_time_s, t.train_samples,
                      t.steps_per_epoch, t.max_epochs, t.callbacks, hooks.calls, stopper.state_dict(), (tmp_path / "metrics.csv").read_text())
    t.fit(batches, val, epochs=2)  # and the trainer goes on as if the sweep had not happened
    assert t.epoch == 2 and len(t.history) == 2 and hooks.calls == record[10] + 2 + 2 + 2 * 16  # fit, epoch, 16 steps


def test_grad_scaler_state_is_restored():
    X, y = _problem()
    torch.manual_seed(0)
    t = Trainer(MLP(8, [16], 2), optimizer="sgd", momentum=0.0)
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    before = t.scaler.state_dict()
    r = lr_find(t, TensorBatches(X, y, batch_size=32), start_lr=1e3, end_lr=1e30, steps=50)  # blows up: inf grads
    assert len(r.lrs) < 50 and t.scaler.state_dict() == before


def test_lr_find_needs_an_optimizer():
    with pytest.raises(TrainwiseError, match="the LR finder needs an optimizer.*optimizer=None"):
        lr_find(Trainer(MLP(8, [4], 2), optimizer=None), [])


def test_ctrl_c_during_the_sweep_restores_and_propagates():
    X, y = _problem()

    class Interrupting:
        def __init__(self):
            self.inner, self.served = TensorBatches(X, y, batch_size=32), 0

        def __iter__(self):
            for batch in self.inner:
                self.served += 1
                if self.served == 5:
                    raise KeyboardInterrupt
                yield batch

    torch.manual_seed(0)
    t = Trainer(MLP(8, [16], 2))
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(KeyboardInterrupt):
        lr_find(t, Interrupting(), steps=50)
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items()) and t.status == "not_started"


def _sweep(smoothed):
    from trainwise.train.lr_finder import LRFinderResult, _suggest
    lrs = [1e-7 * 10 ** (8 * i / (len(smoothed) - 1)) for i in range(len(smoothed))]
    r = LRFinderResult(lrs=lrs, losses=list(smoothed), smoothed=list(smoothed), stop_reason="swept")
    _suggest(r)
    return r


def test_no_suggestion_without_a_clear_descent():
    """The benchmark's failures: a loss that never fell, or one lucky batch among the first steps, made the
    finder suggest 1e-8 (below its own start) and `auto` train a chance-level model."""
    flat = _sweep([2.0] * 60 + [2.0 + 0.5 * i for i in range(20)])
    assert flat.suggestion is None and "no suggestion: the smoothed loss did not fall clearly" in flat.stop_reason
    early_dip = _sweep([2.0, 1.5, 1.9] + [2.0] * 57 + [3.0 + i for i in range(20)])  # the dip is inside the burn-in
    assert early_dip.suggestion is None
    good = _sweep([2.3] * 30 + [2.3 - 0.05 * i for i in range(30)] + [0.8 + 0.3 * i for i in range(20)])
    assert good.suggestion is not None and good.suggestion >= good.lrs[0]
    assert good.suggestion <= good.min_over_10


def test_lr_auto_without_a_suggestion_trains_at_the_default_and_says_so(monkeypatch, tmp_path):
    from trainwise.train import lr_finder
    monkeypatch.setattr(lr_finder, "_suggest", lambda r: setattr(r, "stop_reason", "no suggestion: flat"))
    r = trainwise.fit("iris", lr="auto", epochs=2, quiet=True, run_dir=str(tmp_path / "r"))
    assert r.history[0]["lr"] < 3e-3 and r.summary["lr_finder"]["suggestion"] is None  # warming up towards 3e-3
    assert r.summary["lr_finder"]["stop_reason"] == "no suggestion: flat"
    assert r.trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(3e-3)


def test_a_resumed_lr_auto_run_reports_the_rate_it_was_trained_at(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    run = tmp_path / "r"
    first = trainwise.fit("iris", lr="auto", epochs=6, quiet=True, run_dir=str(run), callbacks=[CtrlC()])
    found = first.summary["lr"]
    assert first.summary["status"] == "interrupted" and found > 0
    done = trainwise.fit(resume=str(run), quiet=True)
    assert done.summary["lr"] == pytest.approx(found)  # the peak of the schedule, not the warmup's first epoch
    assert done.history[0]["lr"] < found  # (which the first epoch's row shows: the warmup)
