"""One population of runs: one comparison, one selection, one mean ± std format."""
import math

import pytest

from trainwise.config import RunConfig
from trainwise.pipeline import setup_run
from trainwise.population import Member, is_better, run_population, select_best, spread
from trainwise.train.callbacks import EarlyStopping


def test_is_better_is_strict_and_ignores_nan():
    assert is_better(1.0, 2.0, "min") and not is_better(2.0, 1.0, "min") and not is_better(1.0, 1.0, "min")
    assert is_better(2.0, 1.0, "max") and not is_better(math.nan, 1.0, "max") and is_better(1.0, math.nan, "min")
    assert is_better(5.0, None, "min")


def test_early_stopping_uses_the_same_comparison_with_its_threshold():
    es = EarlyStopping("val/loss", patience=2, min_delta=0.1)
    es.best_ = 1.0
    assert not es.improved(0.95) and es.improved(0.89) and not es.improved(math.nan)


def test_select_best_takes_the_first_on_ties_and_skips_nan():
    assert select_best([3.0, 1.0, 1.0, math.nan], "min") == 1
    assert select_best([math.nan, 0.2, 0.9, 0.9], "max") == 2
    assert select_best([math.nan], "min") is None


def test_spread_is_mean_population_std_and_values():
    s = spread([{"a": 1.0, "b": 0.0}, {"a": 2.0, "b": 0.0}, {"a": 6.0, "b": 3.0}], ["a"])
    assert s == {"a": {"mean": 3.0, "std": pytest.approx(math.sqrt(14 / 3)), "values": [1.0, 2.0, 6.0]}}


def test_members_sharing_a_setup_train_on_one_split_with_their_own_seeds():
    setup = setup_run(RunConfig(data="iris", epochs=3, quiet=True))
    members = [Member(f"seed-{s}", setup=setup, seed=s) for s in (0, 1, 0)]
    started = []
    out = run_population(members, on_start=lambda i, m: started.append(m.name))
    assert started == ["seed-0", "seed-1", "seed-0"]
    losses = [[row["train/loss"] for row in r.result.history] for r in out]
    assert losses[0] == losses[2] != losses[1]  # same seed, same run; another seed, another run
    assert all(r.result.test is None for r in out)  # members never look at the test split unless asked


def test_a_member_error_is_recorded_when_caught_and_raised_otherwise():
    bad = Member("bad", cfg=RunConfig(data="iris", batch_size=10_000, epochs=1, quiet=True))
    out = run_population([bad], catch=True)
    assert out[0].result is None and "batch_size=10000 is larger than the training split" in str(out[0].error)
    with pytest.raises(Exception, match="larger than the training split"):
        run_population([bad])
