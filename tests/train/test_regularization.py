"""Penalties (the seed's numbers exactly), weight decay vs L2, dropout and batch norm in train/eval."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import trainwise
from trainwise import MLP, TensorBatches, Trainer, TrainwiseError
from trainwise.train import Penalty, elastic_net_penalty, l1_penalty, l2_penalty, penalized_parameters


def _const_linear(value=2.0):
    net = nn.Linear(4, 1, bias=False)
    nn.init.constant_(net.weight, value)
    return net


def test_seed_numbers_numpy():
    v = np.array([1, -2, 3, -4])
    assert l1_penalty(v, 0.5) == 5 and l1_penalty(v, 1) == 10
    w = np.array([0.5, -1, 1.5, -2])
    assert l2_penalty(w, 0.5) == 3.75 and l2_penalty(w, 1) == 7.5
    assert elastic_net_penalty(v, 0.5, 0.0) == 5 and elastic_net_penalty(w, 0.0, 1) == 7.5
    assert elastic_net_penalty(w, 1, 1) == 5.0 + 7.5
    assert l1_penalty([1, -2, 3, -4], 0.5) == 5  # plain lists too


def test_seed_numbers_tensor_and_module():
    assert l1_penalty(torch.tensor([1.0, -2, 3, -4]), 1).item() == 10
    assert l2_penalty(torch.tensor([0.5, -1, 1.5, -2]), 0.5).item() == 3.75
    net = _const_linear()
    assert l1_penalty(net, 1).item() == 8 and l1_penalty(net, 0.5).item() == 4
    assert l2_penalty(net, 1).item() == 16 and l2_penalty(net, 0.25).item() == 4
    assert l1_penalty(net, 1).requires_grad  # usable as a loss term


def test_biases_and_norm_layers_are_excluded_unless_asked():
    model = MLP(4, [8], 3, batch_norm=True)
    shapes = sorted(tuple(p.shape) for p in penalized_parameters(model))
    assert shapes == [(3, 8), (8, 4)]
    assert len(penalized_parameters(model, "all")) == len(list(model.parameters())) == 6
    nn.init.constant_(model[1].bias, 5.0)  # a bias does not count by default
    assert l1_penalty(model, 1).item() == pytest.approx(model[1].weight.abs().sum().item() + model[4].weight.abs().sum().item())
    with pytest.raises(TrainwiseError, match="penalize.*'everything'"):
        penalized_parameters(model, "everything")


def test_penalty_errors_name_the_fix():
    with pytest.raises(TrainwiseError, match=r"cannot compute a penalty of a str.*HINT: pass a numpy array"):
        l1_penalty("weights", 1)
    with pytest.raises(TrainwiseError, match="no parameters to act on.*--penalize all"):
        Penalty(nn.BatchNorm1d(3), l1=1.0)


def _batches(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    return X, (X[:, 0] - X[:, 1] > 0).long()


def test_penalty_is_logged_and_kept_out_of_the_data_loss():
    X, y = _batches()
    def run(penalty_on):
        torch.manual_seed(0)
        model = MLP(4, [8], 2)
        pen = Penalty(model, l1=0.01, l2=0.02) if penalty_on else None
        # a vanishing LR keeps weights fixed, so the logged mean penalty must equal the penalty of the model
        t = Trainer(model, optimizer="sgd", lr=1e-12, momentum=0.0, penalty=pen)
        logs = t.fit(TensorBatches(X, y, batch_size=16), epochs=1)[0]
        return model, logs
    model, logs = run(True)
    expected = (l1_penalty(model, 0.01) + l2_penalty(model, 0.02)).item()
    assert logs["train/penalty"] == pytest.approx(expected, rel=1e-6)
    _, plain = run(False)
    assert "train/penalty" not in plain and logs["train/loss"] == pytest.approx(plain["train/loss"], rel=1e-6)


def test_l1_through_fit_shrinks_weights_and_logs_penalty(tmp_path):
    base = trainwise.fit("iris", epochs=30, quiet=True, early_stopping=False, run_dir=tmp_path / "a", lr=0.01)
    l1 = trainwise.fit("iris", epochs=30, quiet=True, early_stopping=False, run_dir=tmp_path / "b", lr=0.01, l1=0.01)
    assert l1_penalty(l1.model, 1).item() < 0.5 * l1_penalty(base.model, 1).item()
    frame = pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert "train/penalty" in frame and frame["train/penalty"].iloc[-1] < frame["train/penalty"].iloc[0]
    assert "train/penalty" not in pd.read_csv(tmp_path / "a" / "metrics.csv")


def test_sgd_weight_decay_equals_explicit_l2_of_half_strength():
    # coupled decay: weight_decay=λ adds λ·w to the gradient, the gradient of (λ/2)·Σw²
    X, y = _batches()
    def run(**kw):
        torch.manual_seed(0)
        model = MLP(4, [8], 2)
        pen = Penalty(model, l2=kw.pop("l2"), penalize="all") if "l2" in kw else None
        Trainer(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, **kw), penalty=pen).fit(
            TensorBatches(X, y, batch_size=16), epochs=3)
        return torch.cat([p.detach().flatten() for p in model.parameters()])
    decayed, penalized, plain = run(weight_decay=0.2), run(l2=0.1), run()
    torch.testing.assert_close(decayed, penalized, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(decayed, plain)


@pytest.mark.parametrize("options", [{"optimizer": "adam", "weight_decay": 0.5}, {"optimizer": "adamw", "weight_decay": 5.0},
                                     {"optimizer": "adam", "l2": 0.05}, {"optimizer": "sgd", "weight_decay": 0.05}])
def test_each_decay_shrinks_weights(tmp_path, options):
    common = dict(epochs=20, quiet=True, early_stopping=False, lr=0.01, dropout=0.0, checkpoint=False)
    base = trainwise.fit("wine", run_dir=tmp_path / "base", optimizer=options["optimizer"], **common)
    shrunk = trainwise.fit("wine", run_dir=tmp_path / "shrunk", **options, **common)
    norm = lambda m: l2_penalty(m, 1).item()  # noqa: E731
    assert norm(shrunk.model) < 0.8 * norm(base.model)


def test_dropout_active_in_training_and_off_in_evaluation():
    torch.manual_seed(0)
    model = MLP(20, [200], 2, dropout=0.5)
    x = torch.randn(8, 20)
    hidden = nn.Sequential(*list(model)[:3])  # flatten, linear, relu
    with_dropout = nn.Sequential(*list(model)[:4])
    model.train()
    a, b = model(x), model(x)
    assert not torch.equal(a, b)  # a fresh mask per call
    dropped = with_dropout(x)
    kept = hidden(x)
    zeroed = (dropped == 0) & (kept != 0)
    assert 0.35 < zeroed.float().sum().item() / (kept != 0).sum().item() < 0.65
    torch.testing.assert_close(dropped[~zeroed], kept[~zeroed] * 2)  # survivors scaled by 1/(1-p)
    model.eval()
    assert torch.equal(model(x), model(x)) and torch.equal(with_dropout(x), hidden(x))


def test_trainer_evaluation_disables_dropout_and_freezes_batch_norm_statistics():
    X, y = _batches()
    torch.manual_seed(0)
    model = MLP(4, [16], 2, dropout=0.5, batch_norm=True)
    t = Trainer(model, lr=0.01)
    val = TensorBatches(X + 3.0, y, batch_size=32, shuffle=False)  # shifted: would move running stats a lot
    bn = model[2]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    first, second = t.evaluate(val), t.evaluate(val)
    assert first == second  # deterministic: no dropout
    assert all(torch.equal(a, b) for a, b in zip(before, (bn.running_mean, bn.running_var, bn.num_batches_tracked)))
    t.train_epoch(TensorBatches(X, y, batch_size=16))
    assert bn.num_batches_tracked.item() == 4 and not torch.equal(before[0], bn.running_mean)
    assert model.training  # evaluate restores the mode it found
