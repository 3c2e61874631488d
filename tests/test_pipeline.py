"""The one path from config to parts: an in-memory run writes nothing and equals a written one; every entry
point builds its parts through `pipeline.setup_run`."""
from __future__ import annotations

import os

import numpy as np
import pytest

import trainwise
from trainwise import pipeline
from trainwise.config import RunConfig
from trainwise.report.writer import RunWriter


def test_fit_without_run_dir_touches_no_disk_and_matches_a_written_run(tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    mem = trainwise.fit("iris", epochs=6, quiet=True)
    assert mem.run_dir is None and os.listdir(work) == []
    disk = trainwise.fit("iris", epochs=6, quiet=True, run_dir=tmp_path / "run")
    assert [{k: v for k, v in r.items() if k != "time/epoch_s"} for r in mem.history] == \
           [{k: v for k, v in r.items() if k != "time/epoch_s"} for r in disk.history]
    assert mem.test == disk.test and mem.summary["best_epoch"] == disk.summary["best_epoch"]
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"config.yaml", "metrics.csv", "summary.json", "model.safetensors",
                                                              "model.json", "preprocess.json", "curves.png", "report.html"}


def test_train_run_returns_the_result_in_memory():
    setup = pipeline.setup_run(RunConfig(data="wine", epochs=4, quiet=True))
    result = pipeline.train_run(setup)
    assert result.ok and len(result.history) == 4 and result.best_epoch == result.stopper.best_epoch_
    assert set(result.test) == {"test/accuracy", "test/loss"}
    assert np.array(result.confusion).sum() == len(setup.prep.arrays["test"][1])
    summary = result.summary()
    assert summary["test_evaluations"] == 1 and summary["best"] == {k: v for k, v in result.history[result.best_epoch - 1].items()
                                                                    if k.startswith("val/")}


def test_failed_test_look_is_skipped_for_an_unfinished_run():
    setup = pipeline.setup_run(RunConfig(data="iris", epochs=2, quiet=True))
    result = pipeline.train_run(setup, evaluate_test=False)
    result.trainer.status = "interrupted"
    assert result.evaluate_test() is None and result.test is None


@pytest.mark.parametrize("entry", ["fit", "restarts", "cv", "sanity", "tune", "tune-one-by-one"])
def test_every_entry_point_builds_its_parts_through_the_pipeline(entry, tmp_path, monkeypatch):
    calls = []
    original = pipeline.setup_run

    def spy(cfg, *args, **kwargs):
        calls.append(cfg)
        return original(cfg, *args, **kwargs)

    for module in ("trainwise.pipeline", "trainwise.api", "trainwise.population", "trainwise.tune.cv",
                   "trainwise.tune.sanity", "trainwise.tune.search"):
        mod = __import__(module, fromlist=["x"])
        if hasattr(mod, "setup_run"):
            monkeypatch.setattr(mod, "setup_run", spy)
    common = {"epochs": 2, "quiet": True}
    if entry == "fit":
        trainwise.fit("iris", **common)
        expected = 1
    elif entry == "restarts":
        trainwise.fit("iris", restarts=3, **common)
        expected = 1  # one split shared by every restart
    elif entry == "cv":
        trainwise.tune.cross_validate("iris", folds=3, run_dir=tmp_path / "cv", **common)
        expected = 4  # the task probe and one per fold
    elif entry == "sanity":
        trainwise.tune.sanity("iris", steps=5)
        expected = 1
    else:
        vectorize = entry == "tune"
        trainwise.tune.tune({"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}, method="grid", trials=2,
                            out=tmp_path / "t", retrain=False, data="iris", vectorize=vectorize, **common)
        # the input-error probe (before the output folder exists), then one per trial, or one for the two
        # trials stacked (they differ only in lr: they share the prepared data)
        expected = 2 if vectorize else 3
    assert len(calls) == expected and all(isinstance(c, RunConfig) for c in calls)


def test_writer_refuses_a_folder_that_holds_a_run(tmp_path):
    trainwise.fit("iris", epochs=2, quiet=True, run_dir=tmp_path / "r")
    with pytest.raises(trainwise.TrainwiseError, match="already holds a run"):
        RunWriter.create(tmp_path / "r", "iris")
