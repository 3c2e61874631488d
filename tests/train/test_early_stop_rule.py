"""The lecture notes' early-stopping rule (`--early-stop-rule consecutive`): stop after `patience` consecutive
epochs in which the monitored value got worse than the epoch before."""
from __future__ import annotations

import csv
import json
import math

import pytest

import trainwise
from trainwise.errors import TrainwiseError
from trainwise.train.callbacks import EarlyStopping


class _Trainer:  # what EarlyStopping touches: the model's weights and request_stop
    def __init__(self):
        import torch
        self.model, self.stop = torch.nn.Linear(1, 1), None

    def request_stop(self, reason):
        self.stop = reason


def _feed(es, values):
    t = _Trainer()
    for epoch, v in enumerate(values, 1):
        es.on_epoch_end(t, epoch=epoch, logs={es.monitor: v})
        if t.stop:
            return epoch, t.stop
    return None, None


def test_consecutive_rule_counts_rises_in_a_row_not_distance_from_best():
    # val/loss: rises at epochs 3, 5, 6 (a fall at 4 resets the count), then 7: the third rise in a row
    values = [1.0, 0.8, 0.9, 0.85, 0.9, 0.95, 1.0, 0.5]
    epoch, reason = _feed(EarlyStopping(patience=3, rule="consecutive"), values)
    assert epoch == 7
    assert reason == "val/loss rose in 3 consecutive epochs (best 0.8 at epoch 2)"
    # the patience rule on the same values stops at epoch 6: 4 epochs (3..6) without beating 0.8 - 0.001
    epoch, reason = _feed(EarlyStopping(patience=4), values)
    assert epoch == 6 and reason.startswith("val/loss did not improve by more than 0.001 for 4 epochs")


def test_consecutive_rule_ignores_min_delta_and_handles_max_mode_and_nan():
    es = EarlyStopping(monitor="val/accuracy", patience=2, rule="consecutive", min_delta=0.5)
    assert _feed(es, [0.5, 0.6, 0.59, 0.58]) == (4, "val/accuracy fell in 2 consecutive epochs (best 0.5 at epoch 1)")  # best: by min_delta
    # a NaN is worse than anything; a tiny rise still counts (the notes compare raw values)
    assert _feed(EarlyStopping(patience=2, rule="consecutive"), [1.0, 1.0000001, math.nan])[0] == 3
    # equal values are not a rise
    assert _feed(EarlyStopping(patience=1, rule="consecutive"), [1.0, 1.0, 1.0]) == (None, None)


def test_consecutive_rule_state_round_trips():
    es = EarlyStopping(patience=3, rule="consecutive")
    _feed(es, [1.0, 1.1, 1.2])
    state = es.state_dict()
    assert (state["wait"], state["previous"]) == (2, 1.2)
    again = EarlyStopping(patience=3, rule="consecutive")
    again.load_state_dict(state)
    assert _feed(again, [1.3]) == (1, "val/loss rose in 3 consecutive epochs (best 1 at epoch 1)")
    with pytest.raises(ValueError, match="previous='x'"):
        again.load_state_dict({**state, "previous": "x"})


def test_unknown_rule_is_an_error_naming_it():
    with pytest.raises(TrainwiseError, match="early_stop_rule") as e:
        trainwise.fit("iris", epochs=1, quiet=True, early_stop_rule="consecutiv")
    assert "consecutive" in str(e.value)


def test_notes_toy_regression_stops_after_three_consecutive_rises(tmp_path):
    """The notes' set-up: toy regression, a 1-6-1 sigmoid network, Adam lr 0.05, batch 1, up to 201 epochs,
    patience 3. The run must stop exactly at the first epoch that ends three rises of val/loss in a row."""
    run = tmp_path / "run"
    trainwise.fit("toy-regression", model="mlp:6", activation="sigmoid", dropout=0.0, lr=0.05, batch_size=1,
                  epochs=201, patience=3, early_stop_rule="consecutive", quiet=True, run_dir=str(run))
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    val = [float(r["val/loss"]) for r in rows]
    rises = [0]
    for prev, cur in zip(val, val[1:]):
        rises.append(rises[-1] + 1 if cur > prev else 0)
    first = rises.index(3) + 1  # the epoch (1-based) that completes three rises in a row
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "early_stopped" and len(rows) == first < 201
    assert summary["stop_reason"].startswith("val/loss rose in 3 consecutive epochs")
    best = min(range(len(val)), key=val.__getitem__) + 1
    assert summary["best_epoch"] == best  # the best weights are still restored


def _feed_logs(es, rows):
    t = _Trainer()
    for epoch, logs in enumerate(rows, 1):
        es.on_epoch_end(t, epoch=epoch, logs=logs)
        if t.stop:
            return epoch, t.stop
    return None, None


def test_accuracy_ties_are_broken_by_the_lower_loss_without_resetting_patience():
    es = EarlyStopping(monitor="val/accuracy", patience=3)
    rows = [{"val/accuracy": a, "val/loss": loss} for a, loss in
            [(0.8, 0.5), (0.9, 0.4), (0.9, 0.3), (0.9, 0.35), (0.85, 0.2), (0.9, 0.25)]]
    assert _feed_logs(es, rows)[0] == 5  # epochs 3-5 did not beat 0.9: patience runs out at 5
    assert (es.best_epoch_, es.best_, es.best_tie_) == (3, 0.9, 0.3)  # epoch 3: as accurate as 2, lower loss
    assert es.state_dict()["best_tie"] == 0.3
    # a continuous monitor has no tie-breaker
    assert EarlyStopping(monitor="val/loss").tie_ is None


def test_monitor_auto_watches_accuracy_for_classification_and_loss_for_regression(tmp_path):
    r = trainwise.fit("iris", monitor="auto", epochs=3, quiet=True, run_dir=str(tmp_path / "c"))
    assert r.summary["monitor"] == "val/accuracy"
    assert "monitor: val/accuracy" in (tmp_path / "c" / "config.yaml").read_text()  # saved resolved
    assert trainwise.fit("diabetes", monitor="auto", epochs=2, quiet=True).summary["monitor"] == "val/loss"
    with pytest.raises(TrainwiseError, match="early stopping monitors a validation metric but the validation fraction is 0"):
        trainwise.fit("iris", monitor="auto", split="0.8,0,0.2", epochs=1, quiet=True)


def test_a_tie_does_not_move_the_anchor_of_improvement():
    # one-sample steps on a large validation split: each beats the last by less than min_delta (0.001) but the
    # run has still improved by more than that over two epochs: patience restarts then, as without ties
    es = EarlyStopping(monitor="val/accuracy", patience=3)
    rows = [{"val/accuracy": a, "val/loss": 1.0 - a} for a in (0.9000, 0.9008, 0.9016, 0.9024, 0.9032, 0.9040)]
    assert _feed_logs(es, rows) == (None, None)
    assert es.best_epoch_ == 6 and es.wait_ == 1  # 0.9016 reset it at epoch 3, 0.9032 at epoch 5
