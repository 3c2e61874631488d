"""--restarts N: N seeds on one split, the best kept by the monitored metric, test evaluated once."""
import json

import numpy as np
import pytest

import trainwise
from trainwise import TrainwiseError


def test_restarts_keep_the_best_seed_and_report_the_spread(tmp_path, monkeypatch):
    calls = []
    original = trainwise.Trainer.evaluate

    def counting(self, batches, *, prefix="val"):
        calls.append(prefix)
        return original(self, batches, prefix=prefix)

    monkeypatch.setattr(trainwise.Trainer, "evaluate", counting)
    r = trainwise.fit("wine", run_dir=tmp_path / "r", restarts=3, seed=5, epochs=15, quiet=True)
    assert calls.count("test") == 1  # the test split is touched once, for the chosen model
    rs = r.summary["restarts"]
    assert rs["seeds"] == [5, 6, 7] and rs["monitor"] == "val/loss"
    bests = [run["best"] for run in rs["runs"]]
    assert rs["chosen_seed"] == rs["seeds"][int(np.argmin(bests))] == r.summary["seed"]
    values = [run["metrics"]["val/loss"] for run in rs["runs"]]
    assert values == bests and len(set(values)) == 3  # different seeds, different runs
    assert rs["spread"]["val/loss"]["mean"] == pytest.approx(np.mean(values))
    assert rs["spread"]["val/loss"]["std"] == pytest.approx(np.std(values))
    assert set(rs["spread"]) == {"val/loss", "val/accuracy"}
    for seed in (5, 6, 7):  # each restart keeps its own curves
        assert (tmp_path / "r" / "restarts" / f"seed-{seed}" / "metrics.csv").is_file()
        assert (tmp_path / "r" / "restarts" / f"seed-{seed}" / "curves.png").is_file()
    chosen = tmp_path / "r" / "restarts" / f"seed-{rs['chosen_seed']}"
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == (chosen / "metrics.csv").read_bytes()
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == (chosen / "model.safetensors").read_bytes()
    assert r.test is not None and json.loads((tmp_path / "r" / "summary.json").read_text())["restarts"] == rs
    # the chosen model is the saved one: evaluating the run reproduces the summary's test metrics
    assert r.summary["test_evaluations"] == 1
    assert trainwise.evaluate(tmp_path / "r", force_test=True) == pytest.approx(r.test)


def test_restarts_with_accuracy_monitor_pick_the_max(tmp_path):
    r = trainwise.fit("iris", run_dir=tmp_path / "r", restarts=2, epochs=5, quiet=True, monitor="val/accuracy")
    rs = r.summary["restarts"]
    assert rs["chosen_seed"] == rs["seeds"][int(np.argmax([x["best"] for x in rs["runs"]]))]


def test_restarts_refuse_a_model_instance():
    import torch

    with pytest.raises(TrainwiseError, match="restarts need a fresh model per seed.*HINT: pass model as a spec"):
        trainwise.fit("iris", model=torch.nn.Linear(4, 3), restarts=2, quiet=True)


def test_cli_restarts_print_mean_and_std(tmp_path, cli):
    code, out, err = cli("fit", "--data", "iris", "--restarts", "2", "--epochs", "3", "--quiet", "--run-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert "2 restarts: val/loss" in out and " ± " in out and "kept seed" in out


@pytest.mark.parametrize("vectorize", [True, False])
def test_sigterm_during_restarts_exits_143_with_an_interrupted_summary(tmp_path, vectorize):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "trainwise", "fit", "--data", "digits", "--restarts", "3", "--epochs", "300",
                             "--patience", "300", "--quiet", "--run-dir", str(run), "--vectorize" if vectorize else "--no-vectorize"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "restarts" / "seed-0" / "metrics.csv").is_file() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "trainwise fit: terminated" in err and "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["test"] is None and summary["test_evaluations"] == 0
    assert "terminated (SIGTERM)" in summary["stop_reason"] and "cannot be resumed: start the run again" in summary["stop_reason"]
    assert summary["restarts"] == {"seeds": [0, 1, 2], "interrupted_seed": 0}
