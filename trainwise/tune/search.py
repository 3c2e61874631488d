"""Hyperparameter search over one search-space definition: grid, random, or Optuna (TPE + median pruning).

A space maps any `fit` option to a distribution::

    lr:         {type: loguniform, low: 1.0e-4, high: 1.0e-2}     # grid: `num` points (default 3), log-spaced
    momentum:   {type: uniform, low: 0.85, high: 0.99}           # the lecture's range
    epochs:     {type: int, low: 10, high: 40, step: 10}
    model:      {type: categorical, choices: ["mlp:128,64", "mlp:256,128"]}

Trials are ranked by the best validation value of ``monitor``; the test split is never used during the search.
At the end the best configuration is written as ``best_config.yaml`` and retrained once with `fit`, which
evaluates the test split once. Each trial's folder holds its config, metrics.csv, summary, weights and report;
no plots (matplotlib costs more than a stacked trial's training; the retrained best has them all).

Trials known up front (grid, random) that differ only in per-member values (lr, weight decay, momentum,
dropout, L1/L2: `trainwise.vectorized`) train together as one stacked model; results.csv then says how many were
``stacked`` and gives each trial its share of their wall time as ``seconds``.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..api import fit
from ..config import RunConfig, read_yaml_mapping
from ..errors import TrainwiseError, check_choice
from ..frames import pandas
from ..pipeline import check_run, monitor_of, setup_run
from ..population import Member, rank, run_population
from ..report.writer import RunWriter
from ..runs import check_output_dir
from ..train.callbacks import tie_breaker
from ..train.trainer import Callback, Trainer
from .workers import (
    HEARTBEAT_S,
    Claims,
    check_shared,
    claim_test_look,
    counted,
    fail_dead,
    finished_at,
    load_or_create,
    mark_finished,
    may_finish,
    open_storage,
    ready_to_finish,
    refuse_finished,
    release_test_look,
    run_workers,
    worker_id,
)

__all__ = ["load_space", "grid_points", "sample_random", "tune", "METHODS"]

METHODS = ("grid", "random", "optuna")
PRUNERS = ("median", "none")  # optuna: stop a trial whose epoch is worse than the median of earlier trials' at that epoch
_TYPES = ("loguniform", "uniform", "int", "categorical")


def load_space(space: str | Path | dict) -> tuple[dict[str, dict], dict[str, Any]]:
    """(space, fixed options) from a YAML file or a dict; a ``space:`` / ``fixed:`` layout or a bare space.

    >>> s, fixed = load_space({"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}, "fixed": {"epochs": 5}})
    >>> sorted(s), fixed
    (['lr'], {'epochs': 5})
    """
    where = "search space"
    if not isinstance(space, dict):
        where = f"search space '{space}'"
        space = read_yaml_mapping(space, where, "write a YAML file like `lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}`")
    space = dict(space)
    fixed = dict(space.pop("fixed", None) or {})
    space = dict(space.pop("space", space))
    if not space:
        raise TrainwiseError(f"{where} has no parameters", hint="give at least one, e.g. lr: {type: loguniform, low: 1e-4, high: 1e-2}")
    for name, spec in space.items():
        _check_param(name, spec, where)
    RunConfig.build({**fixed, **{k: _example(v) for k, v in space.items()}}, source=where)  # names and values are fit's
    return space, fixed


def _check_param(name: str, spec: Any, where: str) -> None:
    if not isinstance(spec, dict) or "type" not in spec:
        raise TrainwiseError(f"{where}: parameter '{name}' must be a mapping with a type",
                             hint=f"e.g. {name}: {{type: uniform, low: 0.0, high: 0.5}}")
    kind = spec["type"]
    try:
        check_choice(f"type of '{name}'", kind, _TYPES)
    except TrainwiseError as e:
        raise TrainwiseError(f"{where}: {e.args[0]}", hint=e.hint) from None
    if kind == "categorical":
        if not spec.get("choices"):
            raise TrainwiseError(f"{where}: '{name}' needs a non-empty choices list", hint=f"{name}: {{type: categorical, choices: [a, b]}}")
        return
    if "low" not in spec or "high" not in spec or not float(spec["low"]) < float(spec["high"]):
        raise TrainwiseError(f"{where}: '{name}' needs low < high (got {spec.get('low')} .. {spec.get('high')})",
                             hint=f"{name}: {{type: {kind}, low: ..., high: ...}}")
    if kind == "loguniform" and float(spec["low"]) <= 0:
        raise TrainwiseError(f"{where}: '{name}' is log-uniform, so low must be > 0 (got {spec['low']})", hint="e.g. low: 1.0e-5")


def _example(spec: dict) -> Any:
    return spec["choices"][0] if spec["type"] == "categorical" else (
        int(spec["low"]) if spec["type"] == "int" else float(spec["low"]))


def grid_points(space: dict[str, dict]) -> list[dict[str, Any]]:
    """Every combination: ``num`` points per continuous range (log-spaced for log-uniform), int ranges by ``step``.

    >>> [p["lr"] for p in grid_points({"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}})]
    [0.0001, 0.001, 0.01]
    """
    axes = []
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "categorical":
            values = list(spec["choices"])
        elif kind == "int":
            values = list(range(int(spec["low"]), int(spec["high"]) + 1, int(spec.get("step", 1))))
        elif kind == "loguniform":
            values = [float(f"{v:.6g}") for v in np.geomspace(float(spec["low"]), float(spec["high"]), int(spec.get("num", 3)))]
        else:
            values = [float(f"{v:.6g}") for v in np.linspace(float(spec["low"]), float(spec["high"]), int(spec.get("num", 3)))]
        axes.append([(name, v) for v in values])
    return [dict(combo) for combo in itertools.product(*axes)]


def sample_random(space: dict[str, dict], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` independent draws (log-uniform as 10**uniform(log10 low, log10 high), like the lecture's lr).

    >>> pts = sample_random({"momentum": {"type": "uniform", "low": 0.85, "high": 0.99}}, 50)
    >>> all(0.85 <= p["momentum"] <= 0.99 for p in pts)
    True
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        point = {}
        for name, spec in space.items():
            kind = spec["type"]
            if kind == "categorical":
                point[name] = spec["choices"][int(rng.integers(len(spec["choices"])))]
            elif kind == "int":
                step = int(spec.get("step", 1))
                point[name] = int(spec["low"]) + step * int(rng.integers((int(spec["high"]) - int(spec["low"])) // step + 1))
            elif kind == "loguniform":
                point[name] = float(10 ** rng.uniform(math.log10(float(spec["low"])), math.log10(float(spec["high"]))))
            else:
                point[name] = float(rng.uniform(float(spec["low"]), float(spec["high"])))
        out.append(point)
    return out


class _Report(Callback):
    """Reports the monitored validation value to an Optuna trial every epoch; stops the run when it is pruned."""

    def __init__(self, trial, monitor: str):
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.request_stop(f"pruned by Optuna's median pruner at epoch {epoch}")


class _Deadline(Callback):
    """Stops a trial at the end of the epoch in which the search's time budget ran out."""

    def __init__(self, deadline: float):
        self.deadline, self.fired = deadline, False

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if time.perf_counter() > self.deadline:
            self.fired = True
            trainer.request_stop(f"the search's time budget ran out during epoch {epoch}")


def _trial_outcome(mr, writer: RunWriter) -> dict[str, Any]:
    """A trained trial's summary (written to its folder) and what the results table needs of it."""
    r = mr.result
    summary = r.summary()
    writer.write_summary(r, summary)
    tie = tie_breaker(r.stopper.monitor)  # kept in the results, to order trials with equal accuracies
    return {"best": r.stopper.best_ if r.stopper.best_epoch_ else float("nan"), "epochs": r.trainer.epoch,
            "status": r.trainer.status, "monitor": r.stopper.monitor, "mode": r.stopper.mode, "summary": summary,
            "tie": {f"best_{tie}": r.best.get(tie, float("nan"))} if tie and r.stopper.best_epoch_ else {}}


def tune(space: str | Path | dict, *, method: str = "random", trials: int | None = None, out: str | Path | None = None,
         storage: str | None = None, study_name: str | None = None, seed: int = 0, retrain: bool = True,
         timeout: float | None = None, enqueue: list[dict[str, Any]] = (), console=None, workers: int = 1,
         worker_only: bool = False, finish: bool = False, heartbeat: float = HEARTBEAT_S, sampler_seed: int | None = None,
         pruner: str = "median", claims: Claims | None = None, **options: Any) -> dict[str, Any]:
    """Search ``space`` with ``method``; returns {"results": rows, "best": params, "best_config": path,
    "test": metrics of the retrained best (or None)}. ``options`` are fixed `fit` options (data, epochs, ...).
    ``trials``: how many (default: every point of a grid, 10 for random and optuna; a grid with more points
    than ``trials`` is refused). ``timeout`` (seconds) ends the search early; ``enqueue`` lists parameter sets
    to try first.

    Beyond one process (Optuna; `trainwise.tune.workers`): ``workers`` > 1 starts that many worker processes
    on one study (``storage``, default Optuna's journal file ``study.journal`` in the output folder; created here, once,
    before they start), each with its own sampler seed; the best trial is retrained and the test split looked
    at once, here, after them. The same call again resumes the study (only missing trials run).
    ``worker_only``: run ``trials`` trials of the shared study ``storage`` / ``study_name`` and stop, no test
    look (one of several machines); ``finish``: run none, retrain and test the shared study's best trial, once.
    ``heartbeat``: seconds between a running trial's heartbeats (a dead worker's trial is failed after 3).
    ``pruner`` (optuna): 'median' (Optuna's median pruner, after 3 trials and 3 epochs) or 'none'.
    ``claims``: set by a ``workers`` search for its workers: the trials they share, taken on demand.
    """
    pd = pandas()
    check_choice("method", method, METHODS)
    check_choice("pruner", pruner, PRUNERS)
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise TrainwiseError(f"trials must be a whole number >= 1, got {trials!r}", hint="e.g. --trials 20")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise TrainwiseError(f"--workers must be a whole number >= 1, got {workers!r}", hint="e.g. --workers 2")
    shared = workers > 1 or worker_only or finish
    if (storage or shared) and method != "optuna":
        what = "--storage" if storage else "--workers" if workers > 1 else "--worker-only" if worker_only else "--finish"
        raise TrainwiseError(f"{what} shares an Optuna study; method '{method}' does not use one",
                             hint=f"use --method optuna with {what} (grid and random trials train stacked in one process)")
    if (worker_only or finish) and not (storage and study_name):
        raise TrainwiseError(f"{'--worker-only' if worker_only else '--finish'} works on a shared study: give --storage URL and --study-name NAME",
                             hint="e.g. --storage postgresql+psycopg2://USER@HOST/DB --study-name digits-search")
    if worker_only and finish:
        raise TrainwiseError("--worker-only and --finish exclude each other",
                             hint="run the workers with --worker-only, then one `trainwise tune --finish` when they are done")
    given_space = space
    space, fixed = load_space(space)
    base = {**fixed, **options, "quiet": True, "checkpoint": False, "seed": seed}
    base_cfg = RunConfig.build({**base, **{k: _example(v) for k, v in space.items()}}, source="option")
    if base_cfg.mlflow:
        raise TrainwiseError("--mlflow logs the runs of `trainwise fit`; cv, tune and auto do not log to MLflow yet",
                             hint="drop --mlflow here; train the chosen configuration with `trainwise fit --config ... --mlflow`")
    seed = base["seed"] = base_cfg.seed  # validated: the command line gives it as text
    grid = grid_points(space) if method == "grid" else []
    if method == "grid" and trials is not None and trials < len(grid) + len(enqueue):
        # the first points of the product differ only in the last parameter: spread the trials over the grid instead
        picked = np.sort(np.random.default_rng(seed).choice(len(grid), max(trials - len(enqueue), 0), replace=False))
        note = (f"the grid has {len(grid)} points but trials={trials}: trying {len(picked)} of them, drawn at random "
                f"(seed {seed}); leave --trials out to run every point")
        if console is not None:
            console.print(note)
        else:
            warnings.warn(note, UserWarning, stacklevel=2)
        grid = [grid[i] for i in picked]
    trials = trials or (len(grid) + len(enqueue) if method == "grid" else 10)
    check_output_dir(out, "--run-dir")
    first_setup = setup_run(base_cfg)
    check_run(first_setup)  # the space's first point and the data: input errors before any folder exists
    monitor, mode = monitor_of(first_setup.cfg)
    direction = "minimize" if mode == "min" else "maximize"
    if finish:  # before any folder exists: a study that is not there, still running or finished already
        ready_to_finish(storage, study_name, heartbeat)
    elif (storage and study_name) or (workers > 1 and out):  # a storage that does not open, a study of another kind
        check_shared(storage or str((Path(out) / "study.journal").resolve()), study_name or "search", direction, heartbeat=heartbeat)
    writer = RunWriter(out) if out else RunWriter.create(None, f"{base_cfg.data}-tune")
    out_dir = writer.run_dir
    rows: list[dict[str, Any]] = []
    if workers > 1:
        storage = storage or str((out_dir / "study.journal").resolve())
        study_name = study_name or "search"

    deadline = time.perf_counter() + timeout if timeout else math.inf

    def member(number: int, params: dict[str, Any], callbacks=()) -> Member:
        cfg = RunConfig.build({**base, **params}, source=f"trial {number}")
        clock = _Deadline(deadline)  # a trial running when the budget ends stops too: the budget holds
        return Member(f"trial-{number}", cfg=cfg, writer=writer.sub(f"trial-{number}", plots=False),
                      callbacks=[*callbacks, clock], info={"number": number, "params": params, "clock": clock})

    def record(_i: int, mr) -> dict[str, Any]:
        out = _record(_i, mr)
        trainer = mr.result.trainer if mr.result is not None else None
        if trainer is not None and trainer.status == "interrupted" and isinstance(trainer.ended_by, KeyboardInterrupt):
            raise trainer.ended_by  # Ctrl-C / SIGTERM stops the search, not only this trial
        return out

    def _record(_i: int, mr) -> dict[str, Any]:
        number, params, clock = mr.member.info["number"], mr.member.info["params"], mr.member.info["clock"]
        if mr.error is None:
            r = _trial_outcome(mr, mr.member.writer)
            pruned = any(getattr(c, "pruned", False) for c in mr.member.callbacks)
            status = "pruned" if pruned else "timeout" if clock.fired else (
                "complete" if r["status"] in ("completed", "early_stopped") else "failed")
            row = {"trial": number, **params, "best_" + r["monitor"]: r["best"], **r["tie"], "epochs": r["epochs"], "status": status}
        else:
            r, row = None, {"trial": number, **params, "epochs": 0, "status": "failed", "error": str(mr.error)}
        row["seconds"] = round(mr.info["seconds"], 2)
        if mr.info.get("stacked"):
            row["stacked"] = mr.info["stacked"]  # trained with this many others as one model: seconds is its share
        rows.append(row)
        if console is not None:
            console.print(f"trial {number}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "trial"))
        return {"row": row, "result": r}

    def run(number: int, params: dict[str, Any], callbacks=()) -> dict[str, Any]:
        mr = run_population([member(number, params, callbacks)], catch=True)[0]
        return record(0, mr)

    incomplete = None  # why the search stops short of its test look (workers died)
    if finish:
        rows = _optuna_rows(storage, study_name, [], monitor)
    elif workers > 1:
        study = load_or_create(open_storage(storage, heartbeat=heartbeat), study_name, direction)
        refuse_finished(open_storage(storage, heartbeat=heartbeat), study_name, storage, "start a new search with another "
                        "--run-dir (the test split was looked at once; more trials chosen after that look would not be honest)", study)
        fail_dead(study)  # a resume: running trials of this machine's workers that are gone (a killed search)
        if not study.trials:
            for params in enqueue:  # tried first, by whichever worker asks first
                study.enqueue_trial(params)
        remaining = max(0, trials - counted(study))
        # each worker its own sampler seed, new ones on a resume (the study's size is in it): distinct trials
        seeds = [seed * 1000 + 97 * len(study.trials) + i + 1 for i in range(workers)]
        job = dict(space=given_space, method="optuna", out=str(out_dir), storage=storage, study_name=study_name, seed=seed,
                   timeout=timeout, heartbeat=heartbeat, pruner=pruner, **options)
        try:
            dead = run_workers(tune, remaining, workers, job, sampler_seeds=seeds, console=console,
                               here=lambda own_claims, own_seed: _optuna(space, run, remaining, storage, study_name, own_seed, mode,
                                                                         monitor, timeout, (), heartbeat, pruner, own_claims))
        except KeyboardInterrupt:
            if console is not None:
                console.print(f"interrupted: the study '{study_name}' is kept in {storage}; the same command goes on with it")
            raise
        lost = fail_dead(study, set(dead))
        if lost and console is not None:
            console.print(f"trials {', '.join(map(str, lost))} ran in a worker that died: marked failed (their parameters "
                          "are tried again once on the next run)")
        done = counted(study)
        if dead and done < trials:
            incomplete = (f"{len(dead)} of {workers} workers stopped early ({done} of {trials} trials done): run "
                          "the same command to train the missing ones; the best is retrained and tested after that")
        elif dead and console is not None:  # the others took the trials it would have run: nothing is missing
            console.print(f"{len(dead)} of {workers} workers stopped early; the others ran all {trials} trials")
        rows = _optuna_rows(storage, study_name, [], monitor)
    elif method == "optuna":
        # a worker on a shared study samples with a seed of its own (given by the coordinator, or drawn from
        # this process's id): two workers with one seed would propose the same trials
        own_seed = sampler_seed if sampler_seed is not None else seed if not storage else \
            int.from_bytes(hashlib.sha256(f"{seed}:{worker_id()}".encode()).digest()[:4], "little")
        _optuna(space, run, trials, storage, study_name, own_seed, mode, monitor, timeout, enqueue, heartbeat, pruner, claims)
        rows = _optuna_rows(storage, study_name, rows, monitor) if storage else rows
    else:  # every point known up front: trials that differ only in per-member values train as one stacked model
        points = list(enqueue) + (grid if method == "grid" else sample_random(space, trials, seed))
        run_population([member(i, params) for i, params in enumerate(points[:trials])], catch=True, console=console,
                       on_done=record, stop=lambda: time.perf_counter() > deadline)
    if worker_only:  # one of several workers (or machines): the trials are in the study, the test look is --finish's
        return {"results": pd.DataFrame(rows), "out": out_dir, "best": None, "best_config": None, "test": None,
                "incomplete": incomplete}
    key = f"best_{monitor}"
    frame = pd.DataFrame(rows)
    if key not in frame:
        frame[key] = np.nan
    tie = f"best_{tie_breaker(monitor)}" if tie_breaker(monitor) else None  # equal accuracies: lower validation loss first
    frame = frame.iloc[rank(frame[key].tolist(), mode, frame[tie].tolist() if tie in frame else None)]
    writer.write_text("results.csv", frame.to_csv(index=False))
    complete = frame[(frame["status"] == "complete") & frame[key].notna()]
    result: dict[str, Any] = {"results": frame, "out": out_dir, "best": None, "best_config": None, "test": None,
                              "incomplete": incomplete}
    if incomplete:
        if console is not None:
            console.print(incomplete)
        return result
    if complete.empty:
        raise TrainwiseError(f"no trial completed (see {out_dir / 'results.csv'})",
                             hint="check the space and the data with one `trainwise fit`; with a time limit, allow more time")
    best_params = {k: plain(complete.iloc[0][k]) for k in space}
    best_cfg = RunConfig.build({**base, **best_params, "quiet": False}, source="best trial")
    writer.write_text("best_config.yaml", best_cfg.model_copy(update={"checkpoint": True}).saved_yaml())
    result.update(best=best_params, best_config=out_dir / "best_config.yaml")
    if retrain and storage and not finish and not may_finish(storage, study_name, console):
        retrain = False  # another process looks at the test split (or already did)
    if retrain and storage and not claim_test_look(open_storage(storage), study_name, str(out_dir / "best")):
        # the study's one look: another process claimed it between the checks and now
        raise TrainwiseError(f"study '{study_name}' in {storage} is being finished by another process: "
                             f"{finished_at(open_storage(storage), study_name)}", hint="read that run's summary.json when it is done")
    if retrain:
        final = None
        try:
            final = fit(config=best_cfg.model_copy(update={"quiet": True, "run_dir": str(out_dir / "best")}))
        finally:
            if storage and (final is None or final.test is None):
                release_test_look(open_storage(storage), study_name)  # stopped before its look: another may take it
        result["test"] = final.test
        if storage and final.test is not None:  # the study's one look at the test split: no other process takes another
            mark_finished(open_storage(storage), study_name, str(out_dir / "best"))
    writer.write_json("summary.json", {"method": method, "trials": len(frame), "monitor": monitor, "mode": mode,
                                          "best": best_params, "best_value": float(complete.iloc[0][key]),
                                          "test": result["test"], "test_evaluations": int(result["test"] is not None)})
    return result


def _optuna(space, run, trials, storage, study_name, seed, mode, monitor, timeout=None, enqueue=(),
            heartbeat: float = HEARTBEAT_S, pruner: str = "median", claims: Claims | None = None) -> None:
    import optuna  # heavy and optional: loaded only for --method optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = open_storage(storage, heartbeat=heartbeat) if storage else None
    study = load_or_create(rdb, study_name, "minimize" if mode == "min" else "maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                           pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3) if pruner == "median"
                           else optuna.pruners.NopPruner())
    me = worker_id()
    after_look = "the test split was looked at once; trials chosen after that look would not be honest: start a new search"

    def objective(trial):
        trial.set_user_attr("worker", me)
        params = {}
        for name, spec in space.items():
            kind = spec["type"]
            if kind == "categorical":
                params[name] = trial.suggest_categorical(name, list(spec["choices"]))
            elif kind == "int":
                params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
            else:
                params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=kind == "loguniform")
        reporter = _Report(trial, monitor)
        try:
            out = run(trial.number, params, [reporter])
        except Exception as e:  # noqa: BLE001 - any failure of the trial itself (out of memory, ...) is its own
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")  # recorded, counted: a worker does not retry it forever
            raise RuntimeError(f"{type(e).__name__}: {e}") from e
        trial.set_user_attr("row", {k: plain(v) for k, v in out["row"].items()})  # for the results table of any process
        if out["row"]["status"] == "failed":
            trial.set_user_attr("error", out["row"].get("error", "the run failed"))  # its own failure: it counts as done
            raise RuntimeError(out["row"].get("error", "trial failed"))  # recorded by Optuna as FAIL
        if reporter.pruned or out["row"]["status"] == "timeout":  # a cut-short trial is not a finished result
            raise optuna.TrialPruned()
        return out["result"]["best"]

    for params in enqueue:
        study.enqueue_trial(params)
    if not storage:
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(RuntimeError,))
        return
    # a shared study: ``trials`` trials of this worker that count (a retried dead worker's trial may be one), or
    # with ``claims`` (the workers of one machine) trials taken one at a time from those the workers share
    deadline = time.perf_counter() + timeout if timeout else math.inf
    done = 0
    while done < trials and time.perf_counter() < deadline and (claims is None or claims.take()):
        refuse_finished(rdb, study.study_name, storage, after_look, study)  # finished while this worker ran: it stops
        study.optimize(objective, n_trials=1, catch=(RuntimeError,))
        last = max((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == me), key=lambda t: t.number)
        counts = last.state.name in ("COMPLETE", "PRUNED") or "error" in last.user_attrs
        done += counts
        if claims is not None and not counts:
            claims.give_back()


def _optuna_rows(storage, study_name, rows, monitor) -> list[dict[str, Any]]:
    """All trials of a shared study (every worker's), in the same row format."""
    import optuna  # heavy and optional: loaded only for --method optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    mine = {r["trial"]: r for r in rows}
    out = []
    for t in study.trials:
        status = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
        row = dict(mine.get(t.number) or t.user_attrs.get("row") or {"trial": t.number, **t.params, f"best_{monitor}": t.value})
        row["status"] = status
        if t.state.name == "FAIL" and "error" not in t.user_attrs:
            row["error"] = "its worker stopped during the trial (killed, interrupted or lost); its parameters are tried again once"
        if "worker" in t.user_attrs and t.state.name != "WAITING":  # (a retried trial waiting: copied attributes)
            row["worker"] = t.user_attrs["worker"]
        out.append(row)
    return out


def plain(v: Any) -> Any:
    """A numpy scalar from a results table as a plain Python value."""
    return v.item() if hasattr(v, "item") else v


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
