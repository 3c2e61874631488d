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
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..errors import TrainwiseError

__all__ = ["open_storage", "load_or_create", "counted", "worker_id", "run_workers", "Claims", "fail_dead", "HEARTBEAT_S", "finished_at",
           "refuse_finished", "claim_test_look", "release_test_look", "mark_finished", "check_shared", "ready_to_finish", "may_finish"]

HEARTBEAT_S = 10  # seconds between a running trial's heartbeats; stale after 3 of them


def worker_id() -> str:
    """This process, as trials record it (user attribute ``worker``): ``host:pid``, and where the system says
    when the process started, ``@start`` (so a later process that got the same pid is not taken for it)."""
    start = _start_time(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}" + (f"@{start}" if start else "")


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux's /proc), or None where it cannot be read."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read of a tiny file
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22 (starttime), counted after the command name


def open_storage(url: str, *, heartbeat: float = HEARTBEAT_S):
    """The Optuna storage at ``url`` (one per process and URL): a path ending in ``.journal`` is Optuna's
    journal file (what ``--workers`` uses on one machine: appends, ~10x faster than SQLite per trial; its
    workers' deaths are seen by the coordinating process), anything else a database (RDB) with heartbeats.
    A forked worker opens its own: the process id is part of the cache's key, and the parent's storages stay
    referenced in the cache, so the worker never closes the database connections it shares with the parent."""
    return _open_storage(url, heartbeat, os.getpid())


@functools.lru_cache(maxsize=8)
def _open_storage(url: str, heartbeat: float, pid: int):
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
    """Whether ``worker`` (``host:pid[@start]``) ran on this machine and is gone: no such pid, or the pid now
    belongs to a process that started at another time."""
    who, _, start = worker.partition("@")
    host, _, pid = who.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user has that pid now: not the worker, which ran as us
        return bool(start)
    return bool(start) and _start_time(int(pid)) not in (None, start)


def fail_dead(study, workers: set[str] = frozenset()) -> list[int]:
    """Mark failed the running trials of ``workers`` (``host:pid`` of processes known to be dead) and of any
    process of this machine that is gone (a killed coordinator's workers); their parameters are tried again
    once (queued), as for a stale heartbeat. Returns their numbers."""
    from optuna.exceptions import UpdateFinishedTrialError  # heavy and optional: loaded only for --method optuna
    from optuna.trial import TrialState

    storage, numbers = study._storage, []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        if not (worker.partition("@")[0] in workers or _dead_here(worker)):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # it ended meanwhile (another process failed it first): nothing to do
            continue
        numbers.append(t.number)
        if "retry_of" not in t.user_attrs:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return numbers


def _worker(search: Callable[..., Any], kwargs: dict[str, Any], threads: int) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a forked worker has the command's handlers: Ctrl-C and
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # SIGTERM act on it as on a spawned one (the coordinator reports)
    torch.set_num_threads(threads)  # the workers share the machine's cores
    try:
        search(**kwargs)
    except TrainwiseError as e:
        print(f"trainwise tune worker: error: {e}", flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


class Claims:
    """The trials a ``--workers`` search has still to start, shared by its processes on one machine: a worker
    takes the next one when it is free, so one whose trials end early (pruned, early-stopped) runs more of them
    and none waits idle at the end while another works through a fixed share."""

    def __init__(self, ctx, trials: int):
        self._left = ctx.Value("i", trials)

    def take(self) -> bool:
        """Claim one trial; False when none is left. (A worker killed inside this microsecond-long lock would leave it
        held and the others waiting: the kill a search is tested with lands in a trial, where the claim is simply
        lost and the run reported incomplete.)"""
        with self._left.get_lock():
            if self._left.value <= 0:
                return False
            self._left.value -= 1
            return True

    def give_back(self) -> None:
        """A claimed trial that does not count (it ended without a result): it is claimed again."""
        with self._left.get_lock():
            self._left.value += 1


def run_workers(search: Callable[..., Any], trials: int, workers: int, kwargs: dict[str, Any], *, sampler_seeds: list[int],
                here: Callable[[Claims, int], None] | None = None, console=None) -> list[str]:
    """Run ``workers`` workers, ``search(**kwargs, trials=trials, worker_only=True, claims=...)`` (`tune`), each with
    its own sampler seed and in a process of its own, sharing ``trials`` trials on demand (`Claims`); with
    ``here``, one worker runs in this process instead (``here(claims, seed)``, while the others start: a process
    start costs seconds, mostly importing torch). Waits for all; returns the ids (``host:pid``) of the worker
    processes that died (killed, or failed). Interrupted (Ctrl-C), the workers are interrupted too and waited
    for; the interrupt goes on."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    # A forked worker starts at once; a spawned one is a fresh interpreter that imports torch again (~2.5 s here,
    # a quarter of 16 short trials). Forking is safe where each worker computes on one thread, as torch's
    # DataLoader workers do (no OpenMP pool is used after the fork), no other thread runs in this process and CUDA
    # is not in use (a forked process cannot use it); Linux only (macOS forks are unsafe, Python spawns there).
    forked = sys.platform.startswith("linux") and threads == 1 and threading.active_count() == 1 and not torch.cuda.is_initialized()
    ctx = multiprocessing.get_context("fork" if forked else "spawn")
    claims = Claims(ctx, trials)
    procs = []
    own = here is not None and trials > 0
    for seed in sampler_seeds[1 if here is not None else 0:min(workers, trials)]:  # no more workers than trials
        job = {**kwargs, "trials": trials, "worker_only": True, "sampler_seed": seed, "claims": claims}
        p = ctx.Process(target=_worker, args=(search, job, threads), daemon=False)
        p.start()
        procs.append(p)
    if console is not None:
        console.print(f"{len(procs) + own} workers ({'this process and ' if own else ''}pids "
                      f"{', '.join(str(p.pid) for p in procs) or '-'}), {trials} trials between them, each "
                      "taken by the next free worker")
    try:
        if own:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                here(claims, sampler_seeds[0])
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


# --- the one look at a shared study's test split ---
_FINISHED = "trainwise_test_looked_at"  # the study's user attribute: where its best trial was retrained and tested


def _claim_name(study_name: str) -> str:
    # a study of its own whose creation is the claim: the storage lets only one process create a name
    return f"{study_name}::test-look"


def finished_at(storage, study_name: str, study=None) -> str | None:
    """Where the study's best trial was retrained and tested, or is being (a claim), or None."""
    import optuna  # heavy and optional: loaded only for --method optuna

    study = study or optuna.load_study(study_name=study_name, storage=storage)
    if _FINISHED in study.user_attrs:
        return study.user_attrs[_FINISHED]
    try:
        claim = optuna.load_study(study_name=_claim_name(study_name), storage=storage)
    except KeyError:
        return None
    return claim.user_attrs.get("where", "another process (starting)") + " (retraining it now, or stopped while it did)"


def refuse_finished(storage, study_name: str, url: str, hint: str, study=None) -> None:
    """A study whose best trial was retrained and tested (or is being) takes no more trials and no second look."""
    where = finished_at(storage, study_name, study)
    if where is not None:
        raise TrainwiseError(f"study '{study_name}' in {url} was finished already: its best trial was retrained "
                             f"and tested in {where}", hint=hint)


def claim_test_look(storage, study_name: str, where: str) -> bool:
    """Claim the study's one test look for this process, atomically (two processes finishing at once: one wins)."""
    import optuna  # heavy and optional: loaded only for --method optuna

    try:
        claim = optuna.create_study(storage=storage, study_name=_claim_name(study_name))
    except optuna.exceptions.DuplicatedStudyError:
        return False
    claim.set_user_attr("where", f"{where} (by {worker_id()})")
    return True


def release_test_look(storage, study_name: str) -> None:
    """Give the claim back: the retraining stopped before it looked at the test split."""
    import optuna  # heavy and optional: loaded only for --method optuna

    optuna.delete_study(study_name=_claim_name(study_name), storage=storage)


def mark_finished(storage, study_name: str, where: str) -> None:
    import optuna  # heavy and optional: loaded only for --method optuna

    optuna.load_study(study_name=study_name, storage=storage).set_user_attr(_FINISHED, where)


def check_shared(url: str, study_name: str, direction: str, *, heartbeat: float = HEARTBEAT_S) -> None:
    """A shared study's input errors, before any folder or file of a search is made: the storage opens (a
    journal file is not created here), and a study already in it minimizes or maximizes as this search would
    and was not finished."""
    import optuna  # heavy and optional: loaded only for --method optuna

    if url.endswith(".journal") and not os.path.isfile(url):
        return
    storage = open_storage(url, heartbeat=heartbeat)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return
    if study.direction.name.lower() != direction:
        raise TrainwiseError(f"study '{study_name}' in {url} was created to {study.direction.name.lower()}, but this search "
                             f"would {direction}", hint="give another --study-name, or the --monitor the study was created with")
    refuse_finished(storage, study_name, url, "start a new search with another --study-name (or --run-dir): the test split "
                                              "was looked at once; trials chosen after that look would not be honest", study)


def ready_to_finish(url: str, study_name: str, heartbeat: float) -> None:
    """``--finish`` may run: the study exists, no trial is still running (a dead worker's is failed here once
    its heartbeat is stale) and its test split was not looked at yet."""
    import optuna  # heavy and optional: loaded only for --method optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url if url.endswith(".journal") else None
    if path is not None and not os.path.isfile(path):
        raise TrainwiseError(f"--storage '{url}': there is no study file '{path}'",
                             hint="give the storage the workers used (--finish runs no trials of its own)")
    storage = open_storage(url, heartbeat=heartbeat)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise TrainwiseError(f"there is no study '{study_name}' in {url}", hint="give the --study-name the workers used") from None
    refuse_finished(storage, study_name, url, "read that run's summary.json; another test look would no longer be "
                                              "an honest estimate", study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if not url.endswith(".journal"):
            optuna.storages.fail_stale_trials(study)
    fail_dead(study)
    running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    if running:
        raise TrainwiseError(f"trials {', '.join(map(str, running))} of study '{study_name}' are still running",
                             hint="run --finish when the workers are done (a dead worker's trial is failed "
                                  f"{int(3 * heartbeat)} s after its last heartbeat)")


def may_finish(url: str, study_name: str, console) -> bool:
    """Whether this process (which ran trials of a shared study) should retrain and test its best: not if
    another process did or does already, or if other workers' trials are still running."""
    import optuna  # heavy and optional: loaded only for --method optuna

    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    why = None
    where = finished_at(storage, study_name, study)
    if where is not None:
        why = f"the study was finished already ({where})"
    elif study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        why = "other workers' trials are still running"
    if why and console is not None:
        console.print(f"not retraining the best trial: {why}; when all workers are done, run "
                      f"trainwise tune --finish --storage {url} --study-name {study_name} (once)")
    return why is None
