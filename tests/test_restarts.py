"""--restarts N: N seeds on one split, the best kept by the monitored metric, test evaluated once."""
import json

import numpy as np
import pytest

import trainwise
from trainwise import TrainwiseError

from .test_resume import _without_time


def test_restarts_keep_the_best_seed_and_report_the_spread(tmp_path, monkeypatch):
    calls = []
    original = trainwise.Trainer.evaluate

    def counting(self, batches, *, prefix="val"):
        calls.append(prefix)
        return original(self, batches, prefix=prefix)

    monkeypatch.setattr(trainwise.Trainer, "evaluate", counting)
    r = trainwise.fit("wine", run_dir=tmp_path / "r", restarts=3, seed=5, epochs=15, quiet=True, monitor="val/loss")
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
    assert "terminated (SIGTERM)" in summary["stop_reason"] and f"resume it: trainwise fit --resume {run}" in summary["stop_reason"]
    assert summary["restarts"] == {"seeds": [0, 1, 2], "interrupted_seed": 0}


# dropout (each member's own generator), a schedule, clipping and members stopping at different epochs: state everywhere
KILL_OPTIONS = dict(data="wine", epochs=40, quiet=True, dropout=0.3, schedule="step", step_size=3, patience=4,
                    clip_norm=1.0, restarts=3)
KILLER = """
import os, signal, sys, time, trainwise
from pathlib import Path
from trainwise.runs import load_checkpoint
run, vectorize = Path(sys.argv[1]), sys.argv[2] == "1"
# the checkpoint that must be on disk before the kill: the stack's, or the second restart's (one by one)
target = run / ("checkpoints/population-0.safetensors" if vectorize else "restarts/seed-1/checkpoints/last.safetensors")
class KillAfter(trainwise.Callback):
    starts = 0
    def on_fit_start(self, trainer):
        KillAfter.starts += 1
    def on_epoch_start(self, trainer, *, epoch):
        if epoch == 4 and (vectorize or KillAfter.starts == 2):  # epoch 3 done; its checkpoint is written meanwhile
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if load_checkpoint(target)["epoch"] == 3:
                        break
                except trainwise.TrainwiseError:
                    pass
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
trainwise.fit(run_dir=run, callbacks=[KillAfter()], vectorize=vectorize, **{options!r})
"""


@pytest.mark.parametrize("vectorize", [True, False])
def test_killed_restarts_resume_to_byte_identical_restarts(tmp_path, cli, vectorize):
    import subprocess
    import sys

    full = trainwise.fit(run_dir=tmp_path / "full", vectorize=vectorize, **KILL_OPTIONS)
    epochs = [r["epochs_run"] for r in full.summary["restarts"]["runs"]]
    assert len(set(epochs)) > 1 and min(epochs) > 4  # members stop apart, after the kill
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER.format(options=KILL_OPTIONS), str(killed), "1" if vectorize else "0"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -9, proc.stderr
    assert not (killed / "summary.json").exists()
    if vectorize:  # one checkpoint holds the whole population
        assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["population-0.safetensors"]
        assert not (killed / "restarts" / "seed-0" / "checkpoints").exists()
    else:  # the first restart finished, the second was killed after epoch 3, the third never started
        assert (killed / "restarts" / "seed-0" / "model.safetensors").is_file()
        assert not (killed / "restarts" / "seed-2" / "metrics.csv").exists()

    code, out, err = cli("fit", "--resume", str(killed), "--quiet")
    assert code == 0, err
    for seed in (0, 1, 2):
        a, b = tmp_path / "full" / "restarts" / f"seed-{seed}", killed / "restarts" / f"seed-{seed}"
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(), seed
        assert _without_time(a / "metrics.csv") == _without_time(b / "metrics.csv"), seed
    resumed = json.loads((killed / "summary.json").read_text())
    for key in ("status", "stop_reason", "epochs_run", "best_epoch", "best", "test", "seed", "test_evaluations"):
        assert resumed[key] == full.summary[key], key
    assert resumed["restarts"] == full.summary["restarts"] | {"resumed": True}
    assert (killed / "model.safetensors").read_bytes() == (tmp_path / "full" / "model.safetensors").read_bytes()
    code, out, err = cli("fit", "--resume", str(killed), "--quiet")  # finished: nothing to resume
    assert code == 2 and "already finished" in err


def test_restarts_resume_refuses_a_damaged_population_checkpoint_and_other_epochs(tmp_path, cli):
    from trainwise.runs import load_checkpoint, save_checkpoint

    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):  # a restarts run passes the interrupt on (exit 130)
        trainwise.fit("iris", run_dir=run, restarts=2, epochs=6, quiet=True, callbacks=[CtrlC()], schedule="none")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and f"resume it: trainwise fit --resume {run}" in summary["stop_reason"]
    code, out, err = cli("fit", "--resume", str(run), "--epochs", "9", "--quiet")
    assert code == 2 and "resume with their own 6 epochs" in err
    path = run / "checkpoints" / "population-0.safetensors"
    good = path.read_bytes()
    state = load_checkpoint(path)
    state["callbacks"]["0:_Driver"]["members"].pop()
    save_checkpoint(path, state)
    code, out, err = cli("fit", "--resume", str(run), "--quiet")
    assert code == 2 and f"'{path}' is not a valid trainwise file: it holds 1 members, but this population has 2" in err
    path.write_bytes(good)
    code, out, err = cli("fit", "--resume", str(run), "--quiet")
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 6


def test_restarts_killed_after_every_member_stopped_resume_to_the_same_summary(tmp_path, cli):
    run = tmp_path / "r"
    full = trainwise.fit("wine", run_dir=run, restarts=2, epochs=60, patience=3, quiet=True)
    assert all(r["epochs_run"] < 60 for r in full.summary["restarts"]["runs"])  # both stopped early
    model = (run / "model.safetensors").read_bytes()
    (run / "summary.json").unlink()  # killed after training, before the summary (e.g. during the test look)
    code, out, err = cli("fit", "--resume", str(run), "--quiet")
    assert code == 0, err
    resumed = json.loads((run / "summary.json").read_text())
    for key in ("status", "stop_reason", "epochs_run", "best_epoch", "best", "test", "seed"):
        assert resumed[key] == full.summary[key], key
    assert resumed["restarts"] == full.summary["restarts"] | {"resumed": True}
    assert (run / "model.safetensors").read_bytes() == model


def test_equal_accuracies_choose_the_restart_with_the_lower_validation_loss():
    r = trainwise.fit("iris", restarts=4, epochs=30, quiet=True, seed=0)
    runs = r.summary["restarts"]["runs"]
    accs = [run["metrics"]["val/accuracy"] for run in runs]
    top = [run for run, a in zip(runs, accs) if a == max(accs)]
    assert len(top) >= 2  # the case this test is about: several restarts share the best accuracy
    assert r.summary["restarts"]["chosen_seed"] == min(top, key=lambda run: run["metrics"]["val/loss"])["seed"]


def test_a_population_checkpoint_of_the_old_weight_layout_resumes_as_the_new_one(tmp_path, cli):
    """Stacked linear weights were held as (K, out, in) until 2026-12-06 (layout 1) and are (K, in, out) now: a
    checkpoint without a layout is converted on resume (weights and Adam's moments), so an interrupted run of the
    old release goes on exactly as one of this release. mlp:16,16 has a square 16x16 layer, where loading the
    old layout unconverted would not fail but train on transposed weights."""
    import shutil

    from trainwise.runs import load_checkpoint, save_checkpoint

    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    new = tmp_path / "new"
    with pytest.raises(KeyboardInterrupt):
        trainwise.fit("iris", model="mlp:16,16", run_dir=new, restarts=2, epochs=5, quiet=True, callbacks=[CtrlC()],
                      schedule="none", early_stopping=False)
    old = tmp_path / "old"
    shutil.copytree(new, old)
    path = old / "checkpoints" / "population-0.safetensors"
    state = load_checkpoint(path)
    assert state["callbacks"]["0:_Driver"].pop("layout") == 2
    keys = list(state["model"])  # no buffers here: the model's keys are its parameters, in the optimizer's order
    flipped = 0
    for i, key in enumerate(keys):
        if key.endswith(".weight"):
            state["model"][key] = state["model"][key].transpose(1, 2).contiguous()
            for name, v in state["optimizer"]["state"][i].items():
                if v.ndim == 3:
                    state["optimizer"]["state"][i][name] = v.transpose(1, 2).contiguous()
                    flipped += 1
    assert flipped == 6 and state["model"]["layers.3.weight"].shape == (2, 16, 16)  # 3 layers x 2 moments; the square one
    save_checkpoint(path, state)
    for run in (new, old):
        code, out, err = cli("fit", "--resume", str(run), "--quiet")
        assert code == 0, err
    a, b = (json.loads((r / "summary.json").read_text()) for r in (new, old))
    assert a["epochs_run"] == b["epochs_run"] == 5
    assert [r["best"] for r in a["restarts"]["runs"]] == [r["best"] for r in b["restarts"]["runs"]]
    assert a["test"] == b["test"]
    for seed in (0, 1):
        assert (new / "restarts" / f"seed-{seed}" / "model.safetensors").read_bytes() == \
               (old / "restarts" / f"seed-{seed}" / "model.safetensors").read_bytes()
