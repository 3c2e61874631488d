"""Search beyond one process: --workers on one study (journal file), a killed worker, the same command resuming,
and a study shared through a real PostgreSQL server (--worker-only, --finish)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from trainwise.tune.workers import open_storage

pytestmark = pytest.mark.slow

SPACE = "lr: {type: loguniform, low: 1.0e-3, high: 3.0e-2}\nweight_decay: {type: loguniform, low: 1.0e-6, high: 1.0e-3}\n"
REPO = Path(__file__).resolve().parents[2]


def _tune(tmp_path, *extra):
    (tmp_path / "space.yaml").write_text(SPACE)
    return [sys.executable, "-m", "trainwise", "tune", "--space", str(tmp_path / "space.yaml"), "--method", "optuna",
            "--data", "digits", "--model", "mlp:32", "--batch-size", "64", *extra]


def _study(storage, name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _pid(worker: str) -> int:
    """The pid in a worker id ``host:pid@start``."""
    return int(worker.partition("@")[0].rpartition(":")[2])


def _kill_a_worker_mid_trial(storage, name, spare=None, timeout=120):
    """SIGKILL the worker of the first running trial (after it reported an epoch; not process ``spare``): its
    trial's number and parameters."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            running = [t for t in _study(storage, name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
                       if t.intermediate_values and "worker" in t.user_attrs
                       and _pid(t.user_attrs["worker"]) != spare]
        except (KeyError, ValueError):
            running = []
        if running:
            pid = _pid(running[0].user_attrs["worker"])
            os.kill(pid, signal.SIGKILL)
            return running[0].number, running[0].params
        time.sleep(0.2)
    raise AssertionError("no trial started running in time")


def test_workers_share_one_study_a_killed_one_is_failed_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "search"
    cmd = _tune(tmp_path, "--trials", "4", "--workers", "2", "--epochs", "25", "--patience", "100", "--out", str(out))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    storage = str((out / "study.journal").resolve())
    deadline = time.time() + 60
    while not Path(storage).is_file() and time.time() < deadline:
        time.sleep(0.2)
    killed, params = _kill_a_worker_mid_trial(storage, "search", spare=proc.pid)  # a worker, not the coordinator
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 3, stderr  # a worker died: no test look yet, the missing trials first
    assert f"trials {killed} ran in a worker that died: marked failed" in stdout
    assert "1 of 2 workers stopped early" in stdout and "run the same command" in stdout
    study = _study(storage, "search")
    states = {t.number: t.state.name for t in study.trials}
    assert states[killed] == "FAIL" and "RUNNING" not in states.values()
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1 and retry[0].state.name == "WAITING" and retry[0].system_attrs["fixed_params"] == params
    assert not (out / "summary.json").exists() and not (out / "best").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)  # the same command: resume
    assert again.returncode == 0, again.stderr
    study = _study(storage, "search")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4 and len({tuple(sorted(t.params.items())) for t in done}) == 4  # distinct trials
    assert any(t.user_attrs.get("retry_of") == killed for t in done)  # the killed trial's parameters, tried again
    # the coordinator is a worker itself, the others are processes of their own: 2 + 2 over the two runs
    assert len({t.user_attrs["worker"] for t in study.trials if t.state.name != "WAITING"}) >= 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_evaluations"] == 1 and summary["test"] is not None and (out / "best" / "summary.json").is_file()
    for t in done:
        assert (out / f"trial-{t.number}" / "summary.json").is_file()
    assert len((out / "results.csv").read_text().splitlines()) == 1 + len(study.trials)  # every trial, failed ones too
    third = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)  # finished: refused
    assert third.returncode == 2 and "was finished already" in third.stderr


def _claiming_search(trials, worker_only, sampler_seed, claims, log, pause):
    """A stand-in for `tune` in a worker: takes trials from ``claims`` until none is left, ``pause`` s each."""
    assert worker_only and trials in (1, 40)
    while claims.take():
        time.sleep(pause)
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")


def test_workers_take_trials_on_demand_so_a_slow_one_runs_fewer(tmp_path):
    from trainwise.tune.workers import run_workers

    log = tmp_path / "taken.txt"
    # this process's worker is 50x slower than the other: with fixed shares each would run 20 of the 40 trials
    dead = run_workers(_claiming_search, 40, 2, {"log": str(log), "pause": 0.01}, sampler_seeds=[1, 2],
                       here=lambda claims, seed: _claiming_search(40, True, seed, claims, str(log), 0.5))
    assert dead == []
    taken = log.read_text().split()
    here, other = taken.count(str(os.getpid())), len(taken) - taken.count(str(os.getpid()))
    assert len(taken) == 40 and len(set(taken)) == 2  # every trial run once, by both workers
    assert 1 <= here < 20 and here < other, (here, other)  # (a spawned worker starts seconds late: still fewer)
    one = tmp_path / "one.txt"  # one trial left: no second process is started for it
    assert run_workers(_claiming_search, 1, 2, {"log": str(one), "pause": 0.0}, sampler_seeds=[1, 2],
                       here=lambda claims, seed: _claiming_search(1, True, seed, claims, str(one), 0.0)) == []
    assert one.read_text().split() == [str(os.getpid())]


def test_spawned_workers_share_the_trials_too(tmp_path):
    import threading

    from trainwise.tune.workers import run_workers

    log, busy = tmp_path / "taken.txt", threading.Event()
    other_thread = threading.Thread(target=busy.wait, daemon=True)  # another thread running: workers are spawned, not forked
    other_thread.start()
    try:
        dead = run_workers(_claiming_search, 40, 2, {"log": str(log), "pause": 0.01}, sampler_seeds=[1, 2],
                           here=lambda claims, seed: _claiming_search(40, True, seed, claims, str(log), 0.3))
    finally:
        busy.set()
    taken = log.read_text().split()
    assert dead == [] and len(taken) == 40  # every trial once: the count is shared with a fresh interpreter too
    assert 1 <= taken.count(str(os.getpid())) < 40  # both took trials (this one 0.3 s each: the fresh one catches up)


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server on a loopback port (scripts/postgres.sh installs it from the distribution's packages)."""
    import shutil
    import tempfile

    pytest.importorskip("psycopg2", reason="psycopg2 (the test extra's psycopg2-binary) is not installed")
    where = tempfile.mkdtemp(prefix="trainwise-pg-")  # not under pytest's root-only folder: the server runs as postgres
    port = str(20000 + os.getpid() % 20000)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "start", str(where), port],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 77:
        shutil.rmtree(where, ignore_errors=True)
        pytest.skip(f"PostgreSQL cannot be installed here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    yield proc.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), "stop", str(where)], check=True, timeout=120)
    shutil.rmtree(where, ignore_errors=True)


def test_workers_on_two_machines_share_a_postgresql_study_and_one_process_finishes(tmp_path, postgres):
    shared = ["--storage", postgres, "--study-name", "pg-search", "--heartbeat", "1", "--epochs", "25", "--patience", "100"]
    worker = _tune(tmp_path, *shared, "--worker-only", "--trials", "2")
    a = subprocess.Popen(worker + ["--out", str(tmp_path / "machine-a")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(worker + ["--out", str(tmp_path / "machine-b")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, params = _kill_a_worker_mid_trial(postgres, "pg-search")
    for p in (a, b):
        p.communicate(timeout=300)
    assert sorted([a.returncode, b.returncode]) == [-9, 0]
    time.sleep(3.5)  # the killed worker's heartbeat is now stale (3 heartbeats)
    c = subprocess.run(worker + ["--out", str(tmp_path / "machine-c")], capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stderr  # its first trial start fails the stale one; the retry is tried first
    study = _study(postgres, "pg-search")
    states = {t.number: t.state.name for t in study.trials}
    assert states[killed] == "FAIL" and "RUNNING" not in states.values() and "WAITING" not in states.values()
    retry = [t for t in study.trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert len(retry) == 1 and retry[0].params == params and retry[0].state.name in ("COMPLETE", "PRUNED")
    for d in ("machine-a", "machine-b", "machine-c"):
        assert not (tmp_path / d / "best").exists() and not (tmp_path / d / "summary.json").exists()  # no test look

    finish = _tune(tmp_path, *shared, "--finish", "--out", str(tmp_path / "final"))
    done = subprocess.run(finish, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "final" / "summary.json").read_text())
    assert summary["test_evaluations"] == 1 and summary["trials"] == len(study.trials)
    assert _study(postgres, "pg-search").user_attrs["trainwise_test_looked_at"] == str(tmp_path / "final" / "best")
    again = subprocess.run(finish, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "was finished already" in again.stderr


def test_forked_workers_on_a_postgresql_study_record_every_trial_once(tmp_path, postgres):
    """`--workers 2` with a database: the second worker is forked from the coordinator, which has the database
    open; it opens its own connection and the coordinator's keeps working (it records and finishes)."""
    out = tmp_path / "search"
    p = subprocess.run(_tune(tmp_path, "--storage", postgres, "--study-name", "pg-forked", "--workers", "2", "--trials", "4",
                             "--epochs", "3", "--pruner", "none", "--out", str(out)), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    study = _study(postgres, "pg-forked")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both workers ran trials
    assert json.loads((out / "summary.json").read_text())["test_evaluations"] == 1
