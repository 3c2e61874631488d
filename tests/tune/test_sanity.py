"""Start with a model that can overfit: the sanity check and its verdicts."""
import numpy as np
import pytest

from trainwise import TrainwiseError
from trainwise.tune import sanity


def test_a_capable_model_overfits_a_tiny_subset():
    r = sanity("digits", batches=2, steps=300)  # batch size auto: 32 for digits
    assert r.can_learn and r.samples == 64 and r.final_loss <= 0.05 < r.initial_loss
    assert r.initial_loss == pytest.approx(np.log(10), rel=0.1)  # untrained: about ln(10) for 10 classes
    assert r.verdict.startswith(f"the model can learn: training loss {r.final_loss:.3g} after {r.steps} steps on 64")
    assert r.curve[0] == (0, r.initial_loss) and r.curve[-1][1] == r.final_loss and r.steps <= 300


def test_regularization_is_off_during_the_check():
    # heavy dropout and weight decay would stop a model from fitting 32 rows; sanity switches them off
    r = sanity("wine", dropout=0.9, weight_decay=10.0, l2=1.0, steps=300)
    assert r.can_learn


def test_a_hopeless_setup_gets_a_plain_no():
    r = sanity("digits", lr=1e-7, steps=50)
    assert not r.can_learn and r.steps == 50
    assert r.verdict.startswith("it cannot: training loss")
    assert "check the learning rate (--lr 1e-07" in r.verdict and "the labels" in r.verdict and "the loss" in r.verdict


def test_random_labels_on_a_tiny_linear_model_cannot_be_learned():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 2)), rng.integers(0, 5, 200)
    r = sanity(X, y, model="linear", lr=0.05, steps=200, batches=4)
    assert not r.can_learn and r.final_loss > 1.0


def test_bad_arguments():
    with pytest.raises(TrainwiseError, match="sanity needs batches >= 1.*got 0"):
        sanity("iris", batches=0)


def test_cli_sanity_exit_codes(cli):
    code, out, _ = cli("sanity", "--data", "iris", "--lr", "0.01")
    assert code == 0 and out.startswith("the model can learn")
    code, out, _ = cli("sanity", "--data", "iris", "--lr", "1e-8", "--steps", "20")
    assert code == 3 and out.startswith("it cannot")
