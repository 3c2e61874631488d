"""Failures that say so: divergence, SIGTERM, a second signal during shutdown, one writer per run directory,
leftover temp files, strict JSON, exit codes."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import trainwise
from trainwise import TrainwiseError
from trainwise.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from trainwise.runs import RunLock, clean_temp, write_json

from .test_resume import _without_time

WINE = ["--data", "wine", "--epochs", "40", "--dropout", "0.3", "--schedule", "step", "--step-size", "3",
        "--patience", "4", "--batch-norm", "--clip-norm", "1.0", "--quiet"]


def _strict_json(path: Path):
    def refuse(name):
        raise AssertionError(f"{path} holds a bare {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_divergence_in_the_first_epoch_fails_without_weights_or_test(tmp_path, cli):
    run = tmp_path / "r"
    code, out, err = cli("fit", "--optimizer", "sgd", "--lr", "1e3", "--schedule", "none", "--batch-size", "16", "--run-dir", str(run), "--quiet")
    assert code == EXIT_FAILED == 3
    s = _strict_json(run / "summary.json")
    assert s["status"] == "failed" and s["best_epoch"] is None and s["test"] is None and s["test_evaluations"] == 0
    assert s["diverged_at"]["epoch"] == 1 and s["diverged_at"]["batch"] >= 1
    assert f"at step {s['diverged_at']['batch']} (epoch 1, batch {s['diverged_at']['batch']} of 79)" in s["stop_reason"]
    assert "--lr 100" in s["stop_reason"] and "--clip-norm 1.0" in s["stop_reason"]
    assert "training failed: training diverged" in err
    assert not (run / "model.safetensors").exists()  # no all-NaN "best" weights
    assert (run / "metrics.csv").is_file() and (run / "curves.png").is_file()  # what happened is still there
    assert "no weights were kept" in next(d["evidence"] for d in s["diagnostics"] if d["code"] == "non_finite_loss")

    code, out, err = cli("predict", str(run), str(tmp_path / "x.csv"))
    assert code == EXIT_BAD_INPUT and "failed in training and has no trained weights" in err
    code, out, err = cli("fit", "--resume", str(run))
    assert code == EXIT_BAD_INPUT and "continuing it would continue the failure" in err and "NEW_DIR" in err


def test_divergence_after_good_epochs_rolls_back_and_tests_the_good_weights(tmp_path):
    class Poison(trainwise.Callback):
        def on_epoch_start(self, trainer, *, epoch):
            if epoch == 3:
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("nan"))

    r = trainwise.fit("iris", run_dir=tmp_path / "r", epochs=10, quiet=True, callbacks=[Poison()])
    s = r.summary
    assert s["status"] == "early_stopped" and s["epochs_run"] == 3 and s["best_epoch"] in (1, 2)
    assert "non-finite at step" in s["stop_reason"] and "(epoch 3, batch 1 of" in s["stop_reason"]
    assert s["test"] is not None and all(torch.isfinite(p).all() for p in r.model.parameters())
    _strict_json(tmp_path / "r" / "summary.json")  # epoch 3's NaN losses are null there, and listed


def test_strict_json_writes_null_and_says_where(tmp_path):
    write_json(tmp_path / "s.json", {"test": {"test/loss": float("nan"), "test/r2": float("-inf")}, "ok": 1.5,
                                     "rows": [1.0, float("inf")]})
    s = _strict_json(tmp_path / "s.json")
    assert s["test"] == {"test/loss": None, "test/r2": None} and s["ok"] == 1.5 and s["rows"] == [1.0, None]
    assert s["non_finite"] == {"test.test/loss": "nan", "test.test/r2": "-inf", "rows[1]": "inf"}


TERM_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import trainwise, trainwise.api as api
    from trainwise.cli import main

    class TermAt(trainwise.Callback):
        def on_epoch_start(self, trainer, *, epoch):
            if epoch == 4:
                os.kill(os.getpid(), signal.SIGTERM)
        def on_fit_end(self, trainer):
            if {second!r} and trainer.status == "interrupted":
                os.kill(os.getpid(), signal.SIGINT)  # impatient user: a second signal while the run is saved

    train_run = api.train_run
    api.train_run = lambda setup, **kw: train_run(setup, **{{**kw, "callbacks": [*kw.get("callbacks", ()), TermAt()]}})
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("second", [False, True], ids=["sigterm", "sigterm-then-ctrl-c"])
def test_sigterm_checkpoints_exits_143_and_resumes_identically(tmp_path, cli, second):
    full = tmp_path / "full"
    assert cli("fit", *WINE, "--run-dir", str(full))[0] == EXIT_OK
    run = tmp_path / "term"
    proc = subprocess.run([sys.executable, "-c", TERM_SCRIPT.format(second=second), "fit", *WINE, "--run-dir", str(run)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == EXIT_TERMINATED == 143, proc.stderr
    s = _strict_json(run / "summary.json")  # readable, even after the second signal
    assert s["status"] == "interrupted" and s["epochs_run"] == 3 and s["test"] is None
    assert ("saving the run" in proc.stderr) == second
    code, _, err = cli("evaluate", str(run))
    assert code == EXIT_BAD_INPUT and "is unfinished (status 'interrupted'" in err and f"--resume {run}" in err
    code, _, err = cli("fit", "--resume", str(run), "--quiet")
    assert code == EXIT_OK, err
    assert _without_time(run / "metrics.csv") == _without_time(full / "metrics.csv")
    assert (run / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()


def test_ctrl_c_exits_130(tmp_path, cli, monkeypatch):
    import trainwise.api as api

    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    train_run = api.train_run
    monkeypatch.setattr(api, "train_run", lambda setup, **kw: train_run(setup, **{**kw, "callbacks": [CtrlC()]}))
    code, _, _ = cli("fit", "--data", "iris", "--epochs", "5", "--run-dir", str(tmp_path / "r"), "--quiet")
    assert code == EXIT_INTERRUPTED == 130
    assert _strict_json(tmp_path / "r" / "summary.json")["status"] == "interrupted"


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, cli):
    run = tmp_path / "r"
    run.mkdir()
    lock = RunLock(run)  # as a live `trainwise fit` holds it
    code, _, err = cli("fit", "--data", "iris", "--epochs", "2", "--run-dir", str(run), "--quiet")
    assert code == EXIT_BAD_INPUT and "is in use by another trainwise process" in err and f"pid {os.getpid()}" in err
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing of its own was written
    lock.release()
    assert cli("fit", "--data", "iris", "--epochs", "2", "--run-dir", str(run), "--quiet")[0] == EXIT_OK
    lock = RunLock(run)
    code, _, err = cli("fit", "--resume", str(run), "--epochs", "4", "--quiet")  # resume of a live run
    assert code == EXIT_BAD_INPUT and "in use by another trainwise process" in err
    assert _strict_json(run / "summary.json")["test_evaluations"] == 1
    lock.release()


def test_two_concurrent_fits_on_one_directory(tmp_path):
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "trainwise.cli", "fit", "--data", "digits", "--epochs", "3", "--run-dir", str(run), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [EXIT_OK, EXIT_BAD_INPUT], results
    err = next(e for c, e in results if c == EXIT_BAD_INPUT)
    assert "in use by another trainwise process" in err or "already holds a run" in err
    assert _strict_json(run / "summary.json")["test_evaluations"] == 1


def test_a_lock_left_by_a_killed_process_is_not_in_the_way(tmp_path, cli):
    run = tmp_path / "r"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from trainwise.runs import RunLock; "
                               "l = RunLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(run)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(TrainwiseError, match=f"pid {holder.pid}"):
        RunLock(run)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (run / ".lock").is_file()  # the file stays; its lock went with the process
    assert cli("fit", "--data", "iris", "--epochs", "2", "--run-dir", str(run), "--quiet")[0] == EXIT_OK


def test_temp_files_of_a_killed_write_are_cleaned_on_resume(tmp_path, cli):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    run = tmp_path / "r"
    trainwise.fit("iris", run_dir=run, epochs=4, quiet=True, callbacks=[CtrlC()])
    leftovers = [run / ".metrics.csv.k3j9x.tmp", run / "checkpoints" / ".last.safetensors.a1b2.tmp"]
    for p in leftovers:
        p.write_bytes(b"half a file")
    assert cli("fit", "--resume", str(run), "--quiet")[0] == EXIT_OK
    assert not any(p.exists() for p in leftovers)
    assert clean_temp(run) == []


def test_runs_from_a_path_data_set_go_under_runs(tmp_path, monkeypatch, small_csv):
    monkeypatch.chdir(tmp_path)
    r = trainwise.fit(str(small_csv), target="label", epochs=2, quiet=True, to_disk=True)
    assert r.run_dir.parent == Path("runs") and r.run_dir.name.startswith(small_csv.stem + "-")


def test_a_full_disk_mid_run_exits_2_naming_the_file_and_keeps_the_checkpoint(tmp_path, cli, monkeypatch):
    """ENOSPC while a checkpoint is written at epoch 3: exit 2, the message names the file and the fix, the
    checkpoint of epoch 2 stays whole and the run resumes once there is space again."""
    import errno

    import trainwise.runs as runs
    real_fsync, calls = os.fsync, {"checkpoint": 0}

    def fsync(fd):
        if "last.safetensors" in os.readlink(f"/proc/self/fd/{fd}"):
            calls["checkpoint"] += 1
            if calls["checkpoint"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    run = tmp_path / "r"
    monkeypatch.setattr(runs.os, "fsync", fsync)
    code, out, err = cli("fit", *WINE[:-1], "--epochs", "6", "--run-dir", str(run), "--quiet")
    assert code == EXIT_BAD_INPUT, err
    assert f"cannot write '{run / 'checkpoints' / 'last.safetensors'}': No space left on device" in err
    assert "free space on that disk" in err and "internal error" not in err
    assert not list(run.rglob("*.tmp"))
    state = runs.load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert state["epoch"] == 2
    monkeypatch.setattr(runs.os, "fsync", real_fsync)
    code, out, err = cli("fit", "--resume", str(run), "--quiet")
    assert code == EXIT_OK, err
    assert json.loads((run / "summary.json").read_text())["epochs_run"] >= 3
