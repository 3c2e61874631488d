"""Search spaces, grid/random/Optuna search, and a study shared by two worker processes over SQLite."""
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from trainwise import TrainwiseError
from trainwise.tune import grid_points, load_space, sample_random, tune

SPACE = {"space": {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
                   "dropout": {"type": "categorical", "choices": [0.0, 0.2]}},
         "fixed": {"epochs": 6, "data": "iris"}}


def test_grid_points_cover_every_combination():
    pts = grid_points({"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2, "num": 3},
                       "epochs": {"type": "int", "low": 10, "high": 30, "step": 10},
                       "model": {"type": "categorical", "choices": ["mlp:8", "mlp:16"]}})
    assert len(pts) == 18 and len({tuple(p.items()) for p in pts}) == 18
    assert sorted({p["lr"] for p in pts}) == [1e-4, 1e-3, 1e-2] and sorted({p["epochs"] for p in pts}) == [10, 20, 30]


def test_random_samples_are_seeded_and_in_range():
    space = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}, "momentum": {"type": "uniform", "low": 0.85, "high": 0.99},
             "batch_size": {"type": "int", "low": 16, "high": 64, "step": 16}}
    a, b = sample_random(space, 200, seed=1), sample_random(space, 200, seed=1)
    assert a == b and a != sample_random(space, 200, seed=2)
    lrs = np.log10([p["lr"] for p in a])
    assert lrs.min() >= -4 and lrs.max() <= -2 and abs(lrs.mean() + 3) < 0.15  # uniform in log space
    assert all(0.85 <= p["momentum"] <= 0.99 for p in a) and {p["batch_size"] for p in a} == {16, 32, 48, 64}


@pytest.mark.parametrize("space, message", [
    ({"lr": {"type": "logunifrom", "low": 1, "high": 2}}, "did you mean 'loguniform'"),
    ({"lr": {"type": "uniform", "low": 2, "high": 1}}, "needs low < high"),
    ({"lr": {"type": "loguniform", "low": 0, "high": 1}}, "low must be > 0"),
    ({"learning_rate": {"type": "uniform", "low": 0.1, "high": 0.2}}, "did you mean 'lr'"),
    ({"dropout": {"type": "categorical", "choices": []}}, "non-empty choices"),
])
def test_bad_spaces_say_what_to_fix(space, message):
    with pytest.raises(TrainwiseError, match=message):
        load_space(space)


@pytest.mark.parametrize("method", ["grid", "random", "optuna"])
def test_each_method_writes_the_table_and_the_best_config(tmp_path, method):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    if method == "grid":  # 4 of the 3 x 2 grid's 6 points: drawn at random, with a warning (not its first corner)
        with pytest.warns(UserWarning, match="the grid has 6 points but trials=4: trying 4 of them"):
            r = tune(path, method=method, trials=4, out=tmp_path / "t", monitor="val/loss")
    else:
        r = tune(path, method=method, trials=4, out=tmp_path / "t", monitor="val/loss")
    table = pd.read_csv(tmp_path / "t" / "results.csv")
    assert len(table) == 4 and set(table["status"]) <= {"complete", "pruned", "failed"}
    assert {"trial", "lr", "dropout", "best_val/loss", "epochs", "status"} <= set(table.columns)
    done = table[table["status"] == "complete"]["best_val/loss"].tolist()
    assert done == sorted(done)  # best first
    best = yaml.safe_load((tmp_path / "t" / "best_config.yaml").read_text())
    assert best["lr"] == pytest.approx(table[table["status"] == "complete"].iloc[0]["lr"]) and best["epochs"] == 6
    for trial in table["trial"]:
        summary = (tmp_path / "t" / f"trial-{trial}" / "summary.json").read_text()
        assert '"test": null' in summary  # the search never looks at the test split
    assert r["test"] is not None  # the best configuration, retrained once
    assert '"test_evaluations": 1' in (tmp_path / "t" / "best" / "summary.json").read_text()
    if method == "grid":  # 4 distinct grid points, spread over both values of the last parameter
        grid = [(p["lr"], p["dropout"]) for p in grid_points(load_space(path)[0])]
        tried = list(zip(table["lr"], table["dropout"]))
        assert len(set(tried)) == 4 and set(tried) <= set(grid) and set(tried) != set(grid[:4])


WORKER = """
import sys
from trainwise.tune import tune
tune({space!r}, method="optuna", trials=3, out=sys.argv[1], storage=sys.argv[2], study_name="shared", seed=int(sys.argv[3]),
     retrain=False, monitor="val/loss")
"""


def test_two_workers_share_one_sqlite_study(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage, direction="minimize")  # created once, as a team would
    procs = [subprocess.Popen([sys.executable, "-c", WORKER.format(space=SPACE), str(tmp_path / "out"), storage, str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=storage)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(6))  # every trial of both workers, each exactly once
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    dirs = sorted(p.name for p in (tmp_path / "out").glob("trial-*"))
    assert dirs == [f"trial-{i}" for i in range(6)]  # no two workers wrote the same trial
    table = pd.read_csv(tmp_path / "out" / "results.csv")  # the last worker to finish lists the whole study
    assert len(table) >= 3 and table["trial"].is_unique


def test_cli_tune_and_errors(tmp_path, cli):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    code, out, err = cli("tune", "--space", str(path), "--method", "random", "--trials", "2", "--run-dir", str(tmp_path / "c"),
                         "--no-retrain")
    assert code == 0, err
    assert "best: {" in out and "'lr': " in out and (tmp_path / "c" / "best_config.yaml").is_file() and not (tmp_path / "c" / "best").exists()
    code, _, err = cli("tune", "--space", str(path), "--method", "grid", "--storage", "sqlite:///x.db", "--study-name", "s")
    assert code == 2 and "does not use one" in err
    code, _, err = cli("tune", "--space", str(tmp_path / "none.yaml"))
    assert code == 2 and "does not exist" in err


def test_space_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("- lr\n- dropout\n")
    with pytest.raises(TrainwiseError, match=r"search space '.*space.yaml' must hold a mapping.*HINT: write a YAML file like"):
        load_space(path)


@pytest.mark.parametrize("vectorize", [True, False])
def test_a_time_limit_stops_the_running_trial_too(tmp_path, vectorize):
    """One by one, the first trial runs out the budget and the others never start; stacked, the three
    trials train at once and all are cut short."""
    space = {"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2}}
    with pytest.raises(TrainwiseError, match="no trial completed.*with a time limit, allow more time"):
        tune(space, method="random", trials=3, timeout=1.0, out=tmp_path / "t", data="digits", epochs=500,
             early_stopping=False, vectorize=vectorize)
    rows = pd.read_csv(tmp_path / "t" / "results.csv")
    assert rows["status"].tolist() == ["timeout"] * (3 if vectorize else 1)
    assert ((1 <= rows["epochs"]) & (rows["epochs"] < 500)).all()  # cut short, not run out
    assert ("stacked" in rows) == vectorize


@pytest.mark.parametrize("options, message", [
    (dict(method="random", workers=2), "--workers shares an Optuna study; method 'random' does not use one"),
    (dict(method="optuna", worker_only=True), "--worker-only works on a shared study: give --storage URL and --study-name"),
    (dict(method="optuna", workers=0), "--workers must be a whole number >= 1, got 0"),
    (dict(method="optuna", worker_only=True, finish=True, storage="sqlite:///x.db", study_name="s"), "exclude each other"),
    (dict(method="optuna", finish=True, study_name="s"), "there is no study file"),
])
def test_shared_study_options_are_checked_before_anything_is_written(tmp_path, options, message):
    if options.get("finish") and "storage" not in options:
        options["storage"] = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(TrainwiseError, match=message):
        tune({"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}, data="iris", epochs=2, out=tmp_path / "out", **options)
    assert not (tmp_path / "out").exists() and not (tmp_path / "missing.db").exists()


def _journal(tmp_path, direction="maximize", name="s"):  # the default monitor on iris: val/accuracy
    import optuna

    from trainwise.tune.workers import open_storage

    url = str(tmp_path / "study.journal")
    storage = open_storage(url)
    return url, storage, optuna.create_study(study_name=name, storage=storage, direction=direction)


def test_the_test_look_is_claimed_by_one_process_only_and_given_back_when_it_did_not_happen(tmp_path):
    from trainwise.tune.workers import claim_test_look, finished_at, mark_finished, release_test_look

    url, storage, _ = _journal(tmp_path)
    assert finished_at(storage, "s") is None
    assert claim_test_look(storage, "s", "/runs/a/best") is True
    assert claim_test_look(storage, "s", "/runs/b/best") is False  # the storage lets one process create the claim
    assert finished_at(storage, "s").startswith("/runs/a/best (by ")
    release_test_look(storage, "s")
    assert finished_at(storage, "s") is None and claim_test_look(storage, "s", "/runs/b/best") is True
    mark_finished(storage, "s", "/runs/b/best")
    assert finished_at(storage, "s") == "/runs/b/best"


@pytest.mark.parametrize("options", [dict(finish=True), dict(worker_only=True), dict()])
def test_a_claimed_study_takes_no_finish_and_no_more_trials_from_any_process(tmp_path, options):
    from trainwise.tune.workers import claim_test_look

    url, storage, _ = _journal(tmp_path)
    claim_test_look(storage, "s", "/elsewhere/best")
    with pytest.raises(TrainwiseError, match=r"study 's' in .* was finished already: its best trial was retrained and tested in "
                                             r"/elsewhere/best \(by .*\) \(retraining it now, or stopped while it did\)"):
        tune(SPACE["space"], method="optuna", trials=2, data="iris", epochs=2, out=tmp_path / "out", storage=url,
             study_name="s", **options)
    assert not (tmp_path / "out").exists()


def test_a_shared_study_of_the_other_direction_is_refused_before_any_folder(tmp_path):
    url, _, _ = _journal(tmp_path, direction="minimize")
    with pytest.raises(TrainwiseError, match=r"study 's' in .* was created to minimize, but this search would maximize"):
        tune(SPACE["space"], method="optuna", trials=2, data="iris", epochs=2, out=tmp_path / "out", storage=url,
             study_name="s", worker_only=True)
    assert not (tmp_path / "out").exists()


def test_dead_workers_are_told_from_a_later_process_with_the_same_pid(tmp_path):
    import os
    import socket

    from optuna.trial import TrialState

    from trainwise.tune.workers import fail_dead, worker_id

    _, storage, study = _journal(tmp_path)
    me, host = worker_id(), socket.gethostname()
    for who in (me, f"{host}:{os.getpid()}@1", f"{host}:{os.getpid()}"):  # alive; pid reused; old id without a start
        study.ask().set_user_attr("worker", who)
    assert "@" in me and fail_dead(study) == [1]  # only the trial of the process that started at another time
    states = [t.state for t in study.get_trials()]
    assert states[:3] == [TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING]
    assert study.get_trials()[3].user_attrs == {"retry_of": 1}  # its parameters queued again


def test_failing_a_trial_that_ended_meanwhile_is_not_an_error(tmp_path, monkeypatch):
    from optuna.exceptions import UpdateFinishedTrialError

    from trainwise.tune.workers import fail_dead

    _, storage, study = _journal(tmp_path)
    study.ask().set_user_attr("worker", "gone:1")

    def ended(*_a, **_k):
        raise UpdateFinishedTrialError("finished")
    monkeypatch.setattr(study._storage, "set_trial_state_values", ended)
    assert fail_dead(study, {"gone:1"}) == []


def test_a_search_ranks_trials_by_an_extra_metric_it_monitors(tmp_path, cli):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    code, out, err = cli("tune", "--space", str(path), "--method", "random", "--trials", "3", "--run-dir", str(tmp_path / "f1"),
                         "--metrics", "f1_macro", "--monitor", "val/f1_macro", "--no-retrain")
    assert code == 0, err
    results = pd.read_csv(tmp_path / "f1" / "results.csv")
    assert "best_val/f1_macro" in results and results["best_val/f1_macro"].between(0, 1).all()
    best = yaml.safe_load((tmp_path / "f1" / "best_config.yaml").read_text())
    top = results.loc[results["best_val/f1_macro"].idxmax()]  # f1: higher is better
    assert best["lr"] == pytest.approx(top["lr"]) and best["dropout"] == top["dropout"]
    for trial in results["trial"]:  # each trial's run watched the metric the search ranks by
        summary = json.loads((tmp_path / "f1" / f"trial-{trial}" / "summary.json").read_text())
        assert summary["monitor"] == "val/f1_macro" and "val/f1_macro" in summary["best"]


def test_a_worker_that_died_holding_no_trial_leaves_the_search_complete(tmp_path, monkeypatch):
    import multiprocessing

    from rich.console import Console

    import trainwise.tune.search as search
    from trainwise.tune.workers import Claims

    def one_died_early(_search, trials, workers, job, *, sampler_seeds, here, console):
        here(Claims(multiprocessing.get_context("fork"), trials), sampler_seeds[0])  # this process ran every trial
        return ["elsewhere:12345"]  # and the other worker died (at its start: it held no trial)

    monkeypatch.setattr(search, "run_workers", one_died_early)
    out = io.StringIO()
    r = tune(SPACE, method="optuna", trials=2, workers=2, out=tmp_path / "s", console=Console(file=out, width=300))
    assert r["incomplete"] is None and r["test"] is not None  # nothing missing: the best is retrained and tested
    assert "1 of 2 workers stopped early; the others ran all 2 trials" in out.getvalue()
