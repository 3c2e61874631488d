"""``auto`` settings resolved from the data once it is known, and saved resolved."""
import pytest
import yaml

import trainwise
from trainwise.config import RunConfig
from trainwise.errors import TrainwiseError
from trainwise.pipeline import setup_run
from trainwise.train.auto_settings import auto_batch_size, auto_patience


def test_auto_batch_size_gives_about_fifty_steps_an_epoch_within_16_to_128():
    assert [auto_batch_size(n) for n in (1, 105, 800, 1257, 2100, 3500, 9000, 42000)] == [1, 16, 16, 32, 32, 64, 128, 128]


def test_auto_patience_is_a_tenth_of_the_budget_at_least_ten():
    assert [auto_patience(e) for e in (1, 50, 100, 200, 1000)] == [10, 10, 10, 20, 100]


def test_setup_resolves_autos_and_the_run_saves_them(tmp_path):
    cfg = RunConfig(data="digits", batch_size="auto", patience="auto", monitor="auto", epochs=150)
    setup = setup_run(cfg)
    assert (setup.cfg.batch_size, setup.cfg.patience, setup.cfg.monitor) == (32, 15, "val/accuracy")  # 1257 train rows
    trainwise.fit("iris", batch_size="auto", patience="auto", monitor="auto", epochs=2, quiet=True, run_dir=str(tmp_path / "r"))
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (saved["batch_size"], saved["patience"], saved["monitor"]) == (16, 10, "val/accuracy")


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("batch_size", "big"), ("patience", 1.5), ("patience", True)])
def test_int_or_auto_settings_refuse_other_values(key, value):
    with pytest.raises(TrainwiseError, match=f"invalid option value {key}=.*neither a whole number >= 1 nor 'auto'") as e:
        RunConfig.build({key: value}, source="option")
    assert "whole number > 0" in e.value.hint and "or auto" in e.value.hint


def test_auto_batch_never_exceeds_the_training_rows_and_the_estimator_fits_tiny_data():
    import numpy as np

    from trainwise.sklearn import TrainwiseClassifier
    from trainwise.train.auto_settings import resolve_auto
    assert resolve_auto(RunConfig(), "classification", 10)["batch_size"] == 10
    X, y = np.random.default_rng(0).normal(size=(12, 3)), np.array([0, 1] * 6)
    clf = TrainwiseClassifier(model="mlp:4", epochs=1).fit(X, y)  # 10 training rows: one batch of 10
    assert clf.predict(X).shape == (12,)


def test_the_consecutive_rule_watches_val_loss_with_the_notes_patience():
    from trainwise.train.auto_settings import resolve_auto
    auto = resolve_auto(RunConfig(early_stop_rule="consecutive"), "classification", 1000)
    assert (auto["monitor"], auto["patience"]) == ("val/loss", 3)
    given = resolve_auto(RunConfig(early_stop_rule="consecutive", monitor="val/accuracy", patience=5), "classification", 1000)
    assert (given["monitor"], given["patience"]) == ("val/accuracy", 5)


def test_a_mode_for_the_auto_monitor_is_refused():
    with pytest.raises(TrainwiseError, match="mode=min was given for monitor=auto") as e:
        RunConfig.build({"mode": "min"}, source="option")
    assert "--monitor val/loss --mode min" in e.value.hint
