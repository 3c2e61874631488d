"""Checkpoints every epoch and exact resume: a run killed after epoch k and resumed ends byte-identical."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trainwise
from trainwise import TrainwiseError
from trainwise.runs import decode_state, encode_state, load_checkpoint

# options that put state everywhere: dropout (global RNG), a schedule, early-stopping counters, clipping, BN
OPTIONS = dict(data="wine", epochs=40, quiet=True, dropout=0.3, schedule="step", step_size=3, patience=4,
               batch_norm=True, clip_norm=1.0, monitor="val/loss")
KILLER = """
import os, signal, sys, trainwise
class KillAfter(trainwise.Callback):
    def on_epoch_start(self, trainer, *, epoch):
        if epoch == {k} + 1:  # epoch k is complete; its checkpoint (written while epoch k+1 trains) too, once on disk
            for c in trainer.callbacks:
                if isinstance(c, trainwise.train.Checkpoint):
                    c.wait()
            os.kill(os.getpid(), signal.SIGKILL)
trainwise.fit(run_dir=sys.argv[1], callbacks=[KillAfter()], **{options!r})
"""


def _without_time(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    col = lines[0].split(",").index("time/epoch_s")
    return [",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines]


def test_killed_run_resumes_to_byte_identical_weights_and_metrics(tmp_path, cli):
    full = trainwise.fit(run_dir=tmp_path / "full", **OPTIONS)
    assert full.summary["status"] == "early_stopped" and full.summary["epochs_run"] > 6  # counters matter
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER.format(k=3, options=OPTIONS), str(killed)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # really killed: no summary, no final weights
    assert not (killed / "summary.json").exists() and not (killed / "model.safetensors").exists()
    assert load_checkpoint(killed / "checkpoints" / "last.safetensors")["epoch"] == 3
    assert len(_without_time(killed / "metrics.csv")) == 1 + 3

    code, out, err = cli("fit", "--resume", str(killed), "--quiet")
    assert code == 0, err
    assert (killed / "model.safetensors").read_bytes() == (tmp_path / "full" / "model.safetensors").read_bytes()
    assert _without_time(killed / "metrics.csv") == _without_time(tmp_path / "full" / "metrics.csv")
    resumed = json.loads((killed / "summary.json").read_text())
    for key in ("status", "stop_reason", "epochs_run", "best_epoch", "best", "test"):
        assert resumed[key] == full.summary[key], key
    assert resumed["resumed_from_epoch"] == 3


def test_interrupted_run_resumes_in_process_and_can_train_longer(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    opts = dict(data="iris", quiet=True, schedule="exponential", gamma=0.9, early_stopping=False)
    full = trainwise.fit(run_dir=tmp_path / "full", epochs=6, **opts)
    part = trainwise.fit(run_dir=tmp_path / "part", epochs=4, callbacks=[CtrlC()], **opts)
    assert part.summary["status"] == "interrupted" and part.summary["epochs_run"] == 2
    done = trainwise.fit(resume=tmp_path / "part", quiet=True)
    assert done.summary["status"] == "completed" and done.summary["epochs_run"] == 4
    more = trainwise.fit(resume=tmp_path / "part", epochs=6, quiet=True)  # a finished run, trained longer
    assert more.summary["epochs_run"] == 6
    assert _without_time(tmp_path / "part" / "metrics.csv") == _without_time(tmp_path / "full" / "metrics.csv")
    assert all(torch.equal(a, b) for a, b in zip(more.model.state_dict().values(), full.model.state_dict().values()))


def test_best_checkpoint_holds_the_best_epoch(tmp_path):
    r = trainwise.fit("wine", run_dir=tmp_path / "r", epochs=12, quiet=True, patience=50)
    best = load_checkpoint(tmp_path / "r" / "checkpoints" / "best.safetensors")
    last = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.safetensors")
    assert best["epoch"] == r.summary["best_epoch"] and last["epoch"] == 12
    # restore_best: the run's final weights are the best checkpoint's model weights
    for k, v in r.model.state_dict().items():
        assert torch.equal(best["model"][k], v)
    assert set(last) >= {"model", "optimizer", "scaler", "callbacks", "rng", "data", "history", "epoch", "step"}
    assert last["callbacks"]["0:EarlyStopping"]["best_epoch"] == r.summary["best_epoch"]


def test_checkpoint_encoding_round_trips_without_pickle():
    state = {"a": torch.arange(3), "nested": [{"t": (1, 2.5, "x")}, None, True], 7: float("inf"),
             "g": torch.Generator().manual_seed(3).get_state()}
    data = encode_state(state)
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # safetensors: a JSON header, raw bytes
    assert set(header) == {"__metadata__", "t0", "t1"} and header["t0"]["dtype"] == "I64"
    back = decode_state(data)
    assert torch.equal(back["a"], state["a"]) and back["nested"] == [{"t": (1, 2.5, "x")}, None, True]
    assert back[7] == float("inf") and torch.equal(back["g"], state["g"])
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        encode_state({"x": object()})


def test_an_early_stopped_run_is_not_resumed_and_the_hint_says_start_one_with_more_patience(tmp_path):
    r = trainwise.fit("iris", run_dir=tmp_path / "early", epochs=60, patience=1, quiet=True, schedule="none")
    assert r.summary["status"] == "early_stopped"
    with pytest.raises(TrainwiseError, match=r"already finished \(early_stopped.*HINT: early stopping ended it, so more epochs "
                                             r"would end at once; .*--run-dir NEW_DIR --patience N \(or --no-early-stopping; in Python: "
                                             r"trainwise.fit\(\.\.\., run_dir=NEW_DIR, patience=N\)\)"):
        trainwise.fit(resume=tmp_path / "early", epochs=200)


def test_resume_errors_say_what_to_do(tmp_path):
    r = trainwise.fit("iris", run_dir=tmp_path / "done", epochs=3, quiet=True, schedule="none")  # resumed with other --epochs
    with pytest.raises(TrainwiseError, match=r"already finished \(completed.*HINT: .*give --epochs above 3"):
        trainwise.fit(resume=tmp_path / "done")
    with pytest.raises(TrainwiseError, match="cannot change lr.*only --epochs and --quiet"):
        trainwise.fit(resume=r.run_dir, lr=0.1)
    with pytest.raises(TrainwiseError, match="is not a trainwise run directory"):
        trainwise.fit(resume=tmp_path / "nowhere")
    (tmp_path / "done" / "checkpoints" / "last.safetensors").write_bytes(b"garbage")
    with pytest.raises(TrainwiseError, match="last.safetensors' cannot be read.*HINT: the file is damaged"):
        trainwise.fit(resume=r.run_dir, epochs=5)
    nock = trainwise.fit("iris", run_dir=tmp_path / "nock", epochs=2, quiet=True, checkpoint=False, schedule="none")
    with pytest.raises(TrainwiseError, match="does not exist.*checkpoints on"):
        trainwise.fit(resume=nock.run_dir, epochs=5)
    assert not (tmp_path / "nock" / "checkpoints").exists()


def test_cli_resume_rejects_config_and_changes(tmp_path, cli):
    code, _, err = cli("fit", "--resume", str(tmp_path), "--config", "x.yaml")
    assert code == 2 and "--resume and --config cannot be combined" in err
    os.makedirs(tmp_path / "r")
    code, _, err = cli("fit", "--resume", str(tmp_path / "r"), "--batch-size", "8")
    assert code == 2 and "cannot change batch_size" in err


def test_resume_cannot_stretch_a_schedule_that_spans_the_run(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_start(self, trainer, *, epoch):
            if epoch == 2:
                raise KeyboardInterrupt

    trainwise.fit("iris", run_dir=tmp_path / "r", epochs=5, quiet=True, schedule="onecycle", callbacks=[CtrlC()])
    with pytest.raises(TrainwiseError, match="onecycle schedule, which spans its 5 epochs"):
        trainwise.fit(resume=tmp_path / "r", epochs=9)
    assert trainwise.fit(resume=tmp_path / "r", quiet=True).summary["epochs_run"] == 5


def test_resume_before_the_first_checkpoint_says_to_start_again(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            raise KeyboardInterrupt  # before the checkpoint of epoch 1 is written

    trainwise.fit("iris", run_dir=tmp_path / "r", epochs=5, quiet=True, callbacks=[CtrlC()])
    with pytest.raises(TrainwiseError, match="has no checkpoint yet.*HINT: start it again: trainwise fit --config"):
        trainwise.fit(resume=tmp_path / "r")


def test_augmented_image_run_resumes_exactly(tmp_path, fashion_dir):
    """The augmenter's generator is part of the checkpoint: a resumed run draws the same augmentations."""
    opts = dict(data="fashion-mnist", data_dir=str(fashion_dir), model="cnn:4", augment="flip,rotate=10,crop=0.8,jitter=0.2",
                quiet=True, early_stopping=False, schedule="none")  # resumed with other --epochs
    full = trainwise.fit(run_dir=tmp_path / "full", epochs=3, **opts)
    trainwise.fit(run_dir=tmp_path / "part", epochs=1, **opts)
    more = trainwise.fit(resume=tmp_path / "part", epochs=3, quiet=True)
    assert _without_time(tmp_path / "part" / "metrics.csv") == _without_time(tmp_path / "full" / "metrics.csv")
    assert all(torch.equal(a, b) for a, b in zip(more.model.state_dict().values(), full.model.state_dict().values()))
