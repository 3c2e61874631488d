"""Search beyond one process: worker processes on one Optuna study, a study shared through a database.

The engine is Optuna's: a study in an RDB storage (SQLite on one machine, PostgreSQL or MySQL across
machines) holds every trial; each worker asks it for the next trial with its own sampler seed, so trials are
distinct. On one machine (``--workers``) the study is Optuna's journal file; the coordinating process sees a
worker die and marks its running trial failed at once (a resume does the same for a killed coordinator's
workers). In a database shared by machines workers send a heartbeat while a trial runs
(`optuna.storages.RDBStorage`'s): a trial whose worker died (SIGKILL, a lost machine) is marked failed once
its heartbeat is older than the grace period, by the next worker that starts a trial or by ``--finish``.
Either way its parameters are tried again once (`optuna.storages.RetryHeartbeatStaleTrialCallback`, or
queued again here).

Which trials count towards ``--trials``: those that ended complete, pruned, or failed with an error of their
own (user attribute ``error``); a trial killed with its worker or interrupted does not, so running the same
command again (a resume) trains only what is missing.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import socket
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..errors import TrainwiseError

__all__ = ["open_storage", "load_or_create", "counted", "worker_id", "run_workers", "fail_dead", "HEARTBEAT_S"]

HEARTBEAT_S = 10  # seconds between a running trial's heartbeats; stale after 3 of them


def worker_id() -> str:
    """This process, as trials record it (user attribute ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@functools.lru_cache(maxsize=8)
def open_storage(url: str, *, heartbeat: float = HEARTBEAT_S):
    """The Optuna storage at ``url`` (one per process and URL): a path ending in ``.journal`` is Optuna's
    journal file (what ``--workers`` uses on one machine: appends, ~10x faster than SQLite per trial; its
    workers' deaths are seen by the coordinating process), anything else a database (RDB) with heartbeats."""
    import optuna  # heavy and optional: loaded only for --method optuna

    if url.endswith(".journal"):
        from optuna.storages.journal import JournalFileBackend  # (optuna: loaded only when used)

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words: not the user's concern
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=max(1, int(heartbeat)), grace_period=max(2, int(3 * heartbeat)),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1), **kwargs)
    except Exception as e:  # noqa: BLE001 - a bad URL, a missing driver, a server that does not answer
        raise TrainwiseError(f"--storage '{url}' cannot be opened ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                             hint="give a database URL Optuna understands: sqlite:///study.db, or "
                                  "postgresql+psycopg2://USER@HOST:PORT/DB with the server running and psycopg2 installed") from None


def load_or_create(storage, name: str, direction: str, sampler=None, pruner=None):
    """The study ``name`` in ``storage``: created once (by one process: the coordinator, or the first worker
    to come), then loaded; a study of the other direction is refused."""
    import optuna  # heavy and optional: loaded only for --method optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                sampler=sampler, pruner=pruner)
    if study.direction.name.lower() != direction:
        raise TrainwiseError(f"study '{name}' {direction}s nothing: it was created to {study.direction.name.lower()}",
                             hint="give another --study-name, or the --monitor the study was created with")
    return study


def counted(study) -> int:
    """Trials that count towards ``--trials``: ended complete or pruned, or failed by an error of their own."""
    from optuna.trial import TrialState  # heavy and optional: loaded only for --method optuna

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "error" in t.user_attrs))


def _dead_here(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_dead(study, workers: set[str] = frozenset()) -> list[int]:
    """Mark failed the running trials of ``workers`` (``host:pid`` of processes known to be dead) and of any
    process of this machine that is gone (a killed coordinator's workers); their parameters are tried again
    once (queued), as for a stale heartbeat. Returns their numbers."""
    from optuna.trial import TrialState  # heavy and optional: loaded only for --method optuna

    storage, numbers = study._storage, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        if (worker in workers or _dead_here(worker)) and storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            numbers.append(t.number)
            if "retry_of" not in t.user_attrs:
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return numbers


def _worker(search: Callable[..., Any], kwargs: dict[str, Any], threads: int) -> None:
    torch.set_num_threads(threads)  # the workers share the machine's cores
    try:
        search(**kwargs)
    except TrainwiseError as e:
        print(f"trainwise tune worker: error: {e}", flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def run_workers(search: Callable[..., Any], quotas: list[int], kwargs: dict[str, Any], *, sampler_seeds: list[int],
                here: Callable[[int, int], None] | None = None, console=None) -> list[str]:
    """Run one worker per quota: ``search(**kwargs, trials=quota, worker_only=True)`` (`tune`) with its own
    sampler seed, each in a fresh process; with ``here``, the first quota runs in this process instead
    (``here(quota, seed)``, while the others start: a process start costs seconds, mostly importing torch).
    Waits for all; returns the ids (``host:pid``) of the worker processes that died (killed, or failed).
    Interrupted (Ctrl-C), the workers are interrupted too and waited for; the interrupt goes on."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    threads = max(1, (os.cpu_count() or 1) // len(quotas))
    procs = []
    own = quotas[0] if here is not None else 0
    for quota, seed in list(zip(quotas, sampler_seeds))[1 if here is not None else 0:]:
        if quota > 0:
            p = ctx.Process(target=_worker, args=(search, {**kwargs, "trials": quota, "worker_only": True, "sampler_seed": seed}, threads),
                            daemon=False)
            p.start()
            procs.append(p)
    if console is not None:
        console.print(f"{len(procs) + bool(own)} workers ({'this process and ' if own else ''}pids "
                      f"{', '.join(str(p.pid) for p in procs) or '-'}), {sum(quotas)} trials between them")
    try:
        if own:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                here(own, sampler_seeds[0])
            finally:
                torch.set_num_threads(before)
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
        raise
    host = socket.gethostname()
    return [f"{host}:{p.pid}" for p in procs if p.exitcode != 0]
