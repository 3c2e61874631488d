"""Vectorized populations: K restarts trained as one stacked model equal K runs trained one by one.

Tolerance (stated in the README): metrics within rtol 1e-5, member outputs within 1e-4; search trials with
their own lr / weight decay / momentum (`MemberSteps`) within rtol 1e-4. Where it is not
exact: a batched matrix product sums some layer shapes in another order than a single one (differences from
1e-9 in a gradient), and a loss averaged per member differs from the fused mean in its last bit. Dropout
masks, data order, initialization and optimizer arithmetic are exactly the member's own.
"""
import io

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn

import trainwise
from trainwise.diagnose.doctor import HealthTracker
from trainwise.models import MLP
from trainwise.options import ACTIVATIONS
from trainwise.train.metrics import MetricAccumulator
from trainwise.train.stacked import PopulationLoss, PopulationMetrics, StackedBatches, StackedMLP, reindex_optimizer

RTOL = 1e-5


def _pair(**options):
    """The same restarts vectorized and one by one (in memory)."""
    base = dict(quiet=True, checkpoint=False) | options
    return trainwise.fit(**base, vectorize=True), trainwise.fit(**base, vectorize=False)


def _assert_same_runs(vec, seq):
    a, b = vec.summary["restarts"], seq.summary["restarts"]
    assert a["seeds"] == b["seeds"] and a["chosen_seed"] == b["chosen_seed"]
    for ra, rb in zip(a["runs"], b["runs"]):
        assert (ra["seed"], ra["epochs_run"], ra["best_epoch"]) == (rb["seed"], rb["epochs_run"], rb["best_epoch"])
        assert ra["best"] == pytest.approx(rb["best"], rel=RTOL, abs=1e-7)
        assert ra["metrics"] == pytest.approx(rb["metrics"], rel=RTOL, abs=1e-7)
    assert vec.summary["test"] == pytest.approx(seq.summary["test"], rel=RTOL, abs=1e-7)
    assert [d["code"] for d in vec.summary["diagnostics"]] == [d["code"] for d in seq.summary["diagnostics"]]
    trackers = [next(c for c in r.trainer.callbacks if isinstance(c, HealthTracker)) for r in (vec, seq)]
    norms = [t.grad_norms_ for t in trackers]  # the doctor's samples
    assert len(norms[0]) == len(vec.history) and np.allclose(norms[0], norms[1], rtol=1e-4, atol=1e-7)
    stats = [t.stats() for t in trackers]
    for key in ("dead_fraction", "saturation"):
        assert stats[0][key] == pytest.approx(stats[1][key], abs=1e-6)
    for ha, hb in zip(vec.history, seq.history):
        assert {k: v for k, v in ha.items() if k != "time/epoch_s"} == \
            pytest.approx({k: v for k, v in hb.items() if k != "time/epoch_s"}, rel=RTOL, abs=1e-7)


@pytest.mark.parametrize("options", [
    dict(data="digits", model="mlp:32,16", epochs=4, restarts=3),                         # dropout 0.1 (default)
    dict(data="digits", model="mlp:32", epochs=6, restarts=4, patience=1, min_delta=0.0),  # members stop apart
    dict(data="wine", model="mlp:16", epochs=5, restarts=3, optimizer="sgd", lr=0.05, schedule="step", step_size=2,
         nesterov=True, weight_decay=1e-3),
    dict(data="iris", model="mlp:8,8", epochs=5, restarts=2, optimizer="adamw", schedule="cosine", warmup_epochs=1,
         weight_decay=0.01, dropout=0.3),
    dict(data="breast-cancer", model="mlp:16", epochs=4, restarts=3, optimizer="rmsprop", lr=1e-3, schedule="onecycle",
         metrics="none"),  # (binary problems get F1, AUROC, ... by default, which are not stacked: they would train one by one)
    dict(data="diabetes", model="mlp:16", epochs=4, restarts=3, schedule="exponential", dropout=0.0),
    dict(data="diabetes", model="linear", epochs=3, restarts=2, loss="huber"),
    dict(data="wine", model="mlp:16,8", epochs=4, restarts=3, l1=1e-3, l2=1e-2, clip_norm=0.5),  # per-member clip norm
    dict(data="wine", model="mlp:16", epochs=4, restarts=2, l2=1e-2, penalize="all", clip_value=0.05, clip_norm=1.0,
         batch_norm=True),
])
def test_vectorized_restarts_equal_restarts_one_by_one(options):
    vec, seq = _pair(**options)
    _assert_same_runs(vec, seq)


def test_members_that_stop_leave_the_stack_and_keep_their_best_weights():
    vec, seq = _pair(data="digits", model="mlp:32", epochs=8, restarts=4, patience=1, min_delta=0.0, lr=0.01)
    epochs = [r["epochs_run"] for r in vec.summary["restarts"]["runs"]]
    assert len(set(epochs)) > 1  # they did stop at different epochs: the stack shrank on the way
    _assert_same_runs(vec, seq)
    X = torch.as_tensor(vec.data.arrays["test"][0])
    assert torch.allclose(vec.model.eval()(X), seq.model.eval()(X), atol=1e-4)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_stacks(activation):
    _assert_same_runs(*_pair(data="iris", model="mlp:8", epochs=2, restarts=2, activation=activation))


@pytest.mark.parametrize("activation", ["elu", "selu"])
def test_elu_and_selu_restarts_are_trained_stacked(activation):
    # they did stack (not a fall-back to one by one, which would match trivially); selu's LeCun-normal init
    # is each member's own, drawn from its seed as alone
    out = io.StringIO()
    from trainwise.api import fit

    vec = fit(data="wine", model="mlp:16,8", epochs=3, restarts=2, activation=activation, checkpoint=False,
              console=Console(file=out, width=200))
    assert "training 2 members (seeds 0..1) as one stacked model" in out.getvalue()
    _assert_same_runs(vec, trainwise.fit(data="wine", model="mlp:16,8", epochs=3, restarts=2, activation=activation,
                                         checkpoint=False, quiet=True, vectorize=False))


def test_batch_norm_members_agree_within_the_stated_tolerance():
    # the linear bias right before a batch norm gets a gradient that is pure rounding noise (the norm removes
    # it), which Adam scales up to steps of size lr, alone as much as stacked; the noise differs, and it
    # reaches the eval-mode outputs through the running mean. Hence the looser tolerance: 1e-2.
    vec, seq = _pair(data="wine", model="mlp:16,8", epochs=4, restarts=3, batch_norm=True)
    X = torch.as_tensor(vec.data.arrays["test"][0])
    assert vec.summary["restarts"]["chosen_seed"] == seq.summary["restarts"]["chosen_seed"]
    assert torch.allclose(vec.model.eval()(X), seq.model.eval()(X), atol=1e-2)
    for ra, rb in zip(vec.summary["restarts"]["runs"], seq.summary["restarts"]["runs"]):
        assert ra["metrics"] == pytest.approx(rb["metrics"], rel=1e-2)


def test_vectorized_restarts_write_the_same_files(tmp_path):
    for vectorize in (True, False):
        trainwise.fit("wine", model="mlp:16", epochs=3, restarts=2, quiet=True, vectorize=vectorize, run_dir=tmp_path / str(vectorize))
    # the same files, but for where the checkpoints are: one for the stack, or one per restart (one by one)
    for seed in (0, 1):
        a, b = (tmp_path / str(v) / "restarts" / f"seed-{seed}" for v in (True, False))
        assert sorted([p.name for p in a.iterdir()] + ["checkpoints"]) == sorted(p.name for p in b.iterdir())
        assert a.joinpath("metrics.csv").read_text().splitlines()[0] == b.joinpath("metrics.csv").read_text().splitlines()[0]
    assert sorted(p.name for p in (tmp_path / "True").iterdir()) == sorted([p.name for p in (tmp_path / "False").iterdir()] + ["checkpoints"])
    assert [p.name for p in (tmp_path / "True" / "checkpoints").iterdir()] == ["population-0.safetensors"]
    assert trainwise.load_config(tmp_path / "True" / "config.yaml").vectorize is True


def test_what_does_not_stack_runs_one_by_one_and_says_why():
    out = io.StringIO()
    from trainwise.api import fit

    r = fit(data="iris", model="mlp:8", epochs=2, restarts=2, accumulate=2, checkpoint=False,
            console=Console(file=out, width=200))
    assert "training the 2 members one by one: gradient accumulation is not vectorized yet" in out.getvalue()
    assert len(r.summary["restarts"]["runs"]) == 2


def test_the_stack_prints_one_line_per_epoch_and_each_members_stop():
    out = io.StringIO()
    from trainwise.api import fit

    fit(data="iris", model="mlp:8", epochs=3, restarts=2, checkpoint=False, console=Console(file=out, width=200))
    text = out.getvalue()
    assert "training 2 members (seeds 0..1) as one stacked model" in text
    assert "epoch    3: 2 members" in text and "best val/accuracy" in text


# --- the parts ---

def test_stacked_mlp_computes_each_members_output_and_keeps_members():
    torch.manual_seed(0)
    members = [MLP(5, [4], 3, activation="tanh", batch_norm=True) for _ in range(3)]
    stacked = StackedMLP(members).eval()
    x = torch.randn(3, 7, 5)
    out = stacked(x)
    for k, m in enumerate(members):
        assert torch.allclose(out[k], m.eval()(x[k]), atol=1e-6)
        assert set(stacked.member_state(k)) == set(m.state_dict())
    stacked.keep([2, 0])
    assert stacked.size == 2 and torch.allclose(stacked(x[[2, 0]])[0], members[2](x[2]), atol=1e-6)


def test_stacked_mlp_refuses_what_it_cannot_stack():
    with pytest.raises(trainwise.TrainwiseError, match="its layer Conv2d does not stack"):
        StackedMLP([nn.Sequential(nn.Conv2d(1, 2, 3))])


def test_population_loss_and_metrics_match_one_member_at_a_time():
    torch.manual_seed(0)
    out, y = torch.randn(3, 10, 4), torch.randint(0, 4, (3, 10))
    losses = PopulationLoss(nn.CrossEntropyLoss())(out, y)
    assert torch.allclose(losses, torch.stack([nn.functional.cross_entropy(out[k], y[k]) for k in range(3)]))
    pop = PopulationMetrics("multiclass", torch.device("cpu"), size=3)
    pop.update(out, y, losses)
    logs = pop.compute("val")
    for k in range(3):
        one = MetricAccumulator("multiclass", torch.device("cpu"))
        one.update(out[k], y[k], losses[k])
        assert {n: logs[f"{n}[{k}]"] for n in ("val/loss", "val/accuracy")} == pytest.approx(one.compute("val"))
    assert logs["val/loss"] == pytest.approx(np.mean([logs[f"val/loss[{k}]"] for k in range(3)]))
    w = torch.tensor([1.0, 2.0, 0.5, 4.0])  # class weights: each member's weighted mean, as torch computes it alone
    weighted = PopulationLoss(nn.CrossEntropyLoss(weight=w))(out, y)
    assert torch.allclose(weighted, torch.stack([nn.functional.cross_entropy(out[k], y[k], weight=w) for k in range(3)]))
    with pytest.raises(trainwise.TrainwiseError, match="is not split per member"):
        PopulationLoss(nn.CrossEntropyLoss(reduction="sum"))


def test_stacked_batches_give_each_member_its_own_order_from_one_copy_of_the_data():
    X, y = torch.arange(10.0)[:, None], torch.arange(10)
    stacked = StackedBatches(X, y, batch_size=4, seeds=[3, 4])
    alone = [trainwise.TensorBatches(X, y, batch_size=4, seed=s) for s in (3, 4)]
    for (xs, ys), *singles in zip(stacked, *alone):
        for k, (xa, ya) in enumerate(singles):
            assert torch.equal(xs[k], xa) and torch.equal(ys[k], ya)
    assert stacked.X is X  # held once


def test_reindex_optimizer_moves_each_kept_members_state():
    w = nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.randn(3, 2)
    opt.step()
    before = opt.state[w]["exp_avg"].clone()
    new = nn.Parameter(w.detach()[[2, 0]])
    reindex_optimizer(opt, [w], [new], [2, 0], 3)
    assert opt.param_groups[0]["params"] == [new] and torch.equal(opt.state[new]["exp_avg"], before[[2, 0]])


def _search_pair(tmp_path, space, **options):
    """The same random search with its trials stacked and one by one; results.csv of each (by trial)."""
    from trainwise.tune.search import tune

    out = {}
    for vec in (True, False):
        tune(space, method="random", trials=4, out=tmp_path / str(vec), retrain=False, vectorize=vec,
             **({"monitor": "val/loss"} | options))
        out[vec] = pd.read_csv(tmp_path / str(vec) / "results.csv").sort_values("trial").reset_index(drop=True)
    return out[True], out[False]


@pytest.mark.parametrize("options", [
    dict(optimizer="adam"),                                      # coupled weight decay
    dict(optimizer="adamw", schedule="cosine", warmup_epochs=1),  # decoupled, a schedule's factor on each member's lr
    dict(optimizer="sgd", momentum=0.9, schedule="onecycle"),
    dict(optimizer="rmsprop", patience=1, min_delta=0.0),        # members stop apart: the stack shrinks
])
def test_search_trials_differing_in_lr_weight_decay_and_dropout_train_stacked_as_alone(tmp_path, options):
    space = {"lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2},
             "weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
             "dropout": {"type": "uniform", "low": 0.05, "high": 0.5}}
    vec, seq = _search_pair(tmp_path, space, data="wine", model="mlp:16", epochs=5, **options)
    assert vec["stacked"].tolist() == [4] * 4 and "stacked" not in seq
    assert vec["status"].tolist() == seq["status"].tolist() and vec["epochs"].tolist() == seq["epochs"].tolist()
    for col in ("lr", "weight_decay", "dropout"):
        assert vec[col].tolist() == seq[col].tolist()
    assert np.allclose(vec["best_val/loss"], seq["best_val/loss"], rtol=1e-4)
    for trial in range(4):  # every epoch of every trial, its lr included
        a, b = (pd.read_csv(tmp_path / str(v) / f"trial-{trial}" / "metrics.csv").drop(columns="time/epoch_s")
                for v in (True, False))
        assert list(a.columns) == list(b.columns)
        assert np.allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-4, atol=1e-6), trial


def test_search_trials_that_differ_in_more_than_per_member_values_are_grouped(tmp_path):
    """A grid over lr x batch size: the trials of one batch size are stacked together, the batch sizes apart."""
    from trainwise.tune.search import tune

    space = {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2, "num": 2},
             "batch_size": {"type": "categorical", "choices": [16, 32]}}
    r = tune(space, method="grid", out=tmp_path / "g", retrain=False, data="iris", model="mlp:8", epochs=2, monitor="val/loss")
    rows = r["results"].sort_values("trial")
    assert rows["stacked"].tolist() == [2, 2, 2, 2]
    seq = tune(space, method="grid", out=tmp_path / "s", retrain=False, data="iris", model="mlp:8", epochs=2,
               vectorize=False, monitor="val/loss")["results"].sort_values("trial")
    assert np.allclose(rows["best_val/loss"], seq["best_val/loss"], rtol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_search_trials_differing_in_momentum_train_stacked_as_alone(tmp_path, optimizer, nesterov):
    """(RMSprop has no Nesterov momentum: the flag changes nothing there, stacked or alone.)"""
    space = {"momentum": {"type": "uniform", "low": 0.0, "high": 0.95}, "lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2}}
    vec, seq = _search_pair(tmp_path, space, data="iris", model="mlp:8", epochs=4, optimizer=optimizer, nesterov=nesterov,
                            weight_decay=1e-3)
    assert vec["stacked"].tolist() == [4] * 4
    assert np.allclose(vec["best_val/loss"], seq["best_val/loss"], rtol=1e-4)


def test_members_that_do_not_stack_train_one_by_one_and_say_why(tmp_path):
    from trainwise.tune.search import tune

    buf = io.StringIO()
    space = {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}
    r = tune(space, method="random", trials=2, out=tmp_path / "m", retrain=False, data="iris", model="mlp:8", epochs=2,
             accumulate=2, console=Console(file=buf, width=200))
    assert "stacked" not in r["results"] and len(r["results"]) == 2
    assert "training the 2 members one by one: gradient accumulation is not vectorized yet" in buf.getvalue()


def test_search_trials_differing_in_penalties_train_stacked_as_alone(tmp_path):
    """l1/l2 per member, some members with none (whose metrics.csv then has no penalty column, as alone)."""
    from trainwise.tune.search import tune

    space = {"l1": {"type": "categorical", "choices": [0.0, 1e-3]}, "l2": {"type": "categorical", "choices": [0.0, 1e-2]}}
    out = {}
    for vec in (True, False):
        tune(space, method="grid", out=tmp_path / str(vec), retrain=False, vectorize=vec, data="wine", model="mlp:16",
             epochs=4, clip_norm=1.0, monitor="val/loss")
        out[vec] = pd.read_csv(tmp_path / str(vec) / "results.csv").sort_values("trial")
    assert out[True]["stacked"].tolist() == [4] * 4
    assert np.allclose(out[True]["best_val/loss"], out[False]["best_val/loss"], rtol=1e-4)
    for trial in range(4):
        a, b = (pd.read_csv(tmp_path / str(v) / f"trial-{trial}" / "metrics.csv").drop(columns="time/epoch_s")
                for v in (True, False))
        assert list(a.columns) == list(b.columns), trial  # train/penalty only where the trial has a penalty
        assert np.allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-4, atol=1e-6), trial


def test_the_plateau_schedule_follows_each_members_own_metric(tmp_path):
    options = dict(data="wine", model="mlp:16", epochs=8, restarts=3, schedule="plateau", schedule_patience=0, lr=0.02,
                   patience=20, quiet=True, checkpoint=False)
    vec = trainwise.fit(**options, run_dir=tmp_path / "vec")
    seq = trainwise.fit(**options, run_dir=tmp_path / "seq", vectorize=False)
    _assert_same_runs(vec, seq)
    lrs = {}
    for seed in vec.summary["restarts"]["seeds"]:
        a, b = (pd.read_csv(tmp_path / w / "restarts" / f"seed-{seed}" / "metrics.csv")["lr"] for w in ("vec", "seq"))
        assert np.allclose(a, b, rtol=1e-6)
        lrs[seed] = tuple(a)
    assert all(len(set(v)) > 1 for v in lrs.values())  # every member's LR was lowered on the way ...
    assert len(set(lrs.values())) > 1                   # ... each at its own epochs


def test_lr_auto_runs_each_members_own_range_test_then_stacks():
    vec, seq = _pair(data="wine", model="mlp:16", epochs=4, restarts=3, lr="auto", schedule="none")
    _assert_same_runs(vec, seq)
    assert vec.summary["lr_finder"]["suggestion"] == pytest.approx(seq.summary["lr_finder"]["suggestion"], rel=1e-6)
    assert vec.history[0]["lr"] == pytest.approx(vec.summary["lr_finder"]["suggestion"], rel=1e-6)


def test_search_trials_differing_in_the_seed_train_one_by_one(tmp_path):
    """The config's seed also decides the data split: trials over it are not one population."""
    from trainwise.tune.search import tune

    r = tune({"seed": {"type": "categorical", "choices": [0, 1]}, "lr": {"type": "categorical", "choices": [1e-3, 1e-2]}},
             method="grid", out=tmp_path / "s", retrain=False, data="iris", model="mlp:8", epochs=2)
    rows = r["results"].sort_values("trial")
    assert rows["status"].tolist() == ["complete"] * 4
    assert rows["stacked"].tolist() == [2, 2, 2, 2]  # the two lrs of each seed together


def test_a_stacked_group_that_fails_on_input_falls_back_to_one_by_one(tmp_path, monkeypatch):
    """With catch (search trials), an input error inside the stacked training (one member's LR finder finding
    no LR, say) does not end the search: the group's trials run alone, each with its own outcome."""
    import trainwise.population as population
    from trainwise.tune.search import tune

    def fails(*args, **kwargs):
        raise trainwise.TrainwiseError("a member's input error")

    monkeypatch.setattr(population, "train_stacked", fails)
    buf = io.StringIO()
    r = tune({"lr": {"type": "categorical", "choices": [1e-3, 1e-2]}}, method="grid", out=tmp_path / "f", retrain=False,
             data="iris", model="mlp:8", epochs=2, console=Console(file=buf, width=200))
    assert r["results"]["status"].tolist() == ["complete", "complete"] and "stacked" not in r["results"]
    assert "the stacked members stopped (a member's input error); training them one by one" in buf.getvalue()


def test_binary_restarts_with_their_default_metrics_stack_and_match():
    # F1, AUROC, ... (on by default for two classes) are computed per member from its own outputs, as alone
    out = io.StringIO()
    from trainwise.api import fit

    vec = fit(data="breast-cancer", model="mlp:16", epochs=3, restarts=3, checkpoint=False, console=Console(file=out, width=200))
    assert "training 3 members (seeds 0..2) as one stacked model" in out.getvalue()
    seq = trainwise.fit(data="breast-cancer", model="mlp:16", epochs=3, restarts=3, checkpoint=False, quiet=True, vectorize=False)
    assert "val/auroc" in vec.history[0] and "val/f1" in vec.summary["restarts"]["runs"][0]["metrics"]
    _assert_same_runs(vec, seq)


@pytest.mark.parametrize("options", [dict(data="iris", class_weight="1,2,5"), dict(data="breast-cancer", class_weight="balanced"),
                                     dict(data="breast-cancer", class_weight="1,3", loss="bce_with_logits")])
def test_class_weighted_restarts_stack_and_match(options):
    out = io.StringIO()
    from trainwise.api import fit

    common = dict(model="mlp:16", epochs=3, restarts=3, checkpoint=False, **options)
    vec = fit(console=Console(file=out, width=200), **common)
    assert "as one stacked model" in out.getvalue()
    _assert_same_runs(vec, trainwise.fit(quiet=True, vectorize=False, **common))
