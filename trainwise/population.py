"""A population of runs: restarts, CV folds, search trials and ensemble members are all members of one.

A `Member` is "the same run with one thing changed": a config (or a shared `RunSetup`), a training seed,
a writer for its own folder, extra callbacks. `run_population` trains the members (one after another
today; vectorized or in worker processes later, with no change to callers), `is_better` is the one
comparison of two monitored values, `select_best` picks the best member, `rank` orders them (search results,
the ensemble's top trials) and `spread` reports mean ± std in one format everywhere.

>>> is_better(0.2, 0.3, "min"), is_better(0.2, 0.3, "max")
(True, False)
>>> spread([{"val/loss": 1.0}, {"val/loss": 3.0}], ["val/loss"])
{'val/loss': {'mean': 2.0, 'std': 1.0, 'values': [1.0, 3.0]}}
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .data import RawData
from .errors import TrainwiseError
from .pipeline import RunResult, RunSetup, setup_run, train_run, vary
from .runs import load_checkpoint
from .train import Callback
from .train.callbacks import is_better
from .train.state import load_trainer_state
from .vectorized import PER_MEMBER, stack_reason, train_stacked

__all__ = ["Member", "MemberResult", "run_population", "is_better", "select_best", "rank", "spread"]


def select_best(values: Sequence[float | None], mode: str, tie: Sequence[float | None] | None = None) -> int | None:
    """Index of the best value, or None when none is usable. Equal values are ordered by ``tie`` (lower is
    better: the same split's loss for an accuracy, see `tie_breaker`), then by position.

    >>> select_best([0.9, 0.95, 0.95], "max"), select_best([0.9, 0.95, 0.95], "max", tie=[0.3, 0.4, 0.2])
    (1, 2)
    """
    order = rank(values, mode, tie)
    return order[0] if order and is_better(values[order[0]], None, mode) else None


def rank(values: Sequence[float | None], mode: str, tie: Sequence[float | None] | None = None) -> list[int]:
    """Indices best first; equal values by ``tie`` (lower first; a missing tie value last), then by position;
    values that are None or NaN go last, in their order.

    >>> rank([0.3, float("nan"), 0.1, 0.3], "min"), rank([0.3, None, 0.1], "max"), rank([1, 1, 0], "max", tie=[0.5, 0.2, 0.1])
    ([2, 0, 3, 1], [0, 2, 1], [1, 0, 2])
    """
    usable = [i for i, v in enumerate(values) if is_better(v, None, mode)]
    rest = [i for i in range(len(values)) if i not in set(usable)]

    def second(i: int) -> float:
        t = tie[i] if tie is not None else None
        return t if t is not None and t == t else float("inf")  # a missing or NaN tie value orders last

    return sorted(usable, key=lambda i: ((values[i] if mode == "min" else -values[i]), second(i))) + rest


def spread(rows: Sequence[dict[str, float]], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Mean, (population) standard deviation and the values of each metric in ``keys`` over ``rows``."""
    return {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows])),
                "values": [r[k] for r in rows]} for k in keys}


@dataclass
class Member:
    """One run of a population. ``setup``: a shared set-up (restarts share one split); otherwise one is built
    from ``cfg`` (and ``raw``: a fold's rows as its given splits). ``seed``: the training seed (default the
    config's). ``writer``: where its files go (None: in memory). ``evaluate_test``: look at its test split."""

    name: str
    cfg: RunConfig | None = None
    setup: RunSetup | None = None
    raw: RawData | None = None
    seed: int | None = None
    writer: Any = None
    callbacks: Sequence[Callback] = ()
    evaluate_test: bool = False
    checkpoint: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class MemberResult:
    """A member's run (``result``), or the input error that stopped it (``error``)."""

    member: Member
    result: RunResult | None = None
    error: TrainwiseError | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the caller recorded about it (e.g. its summary)

    @property
    def best(self) -> float:
        """The best monitored value (NaN when it never had a finite one)."""
        if self.result is None or not self.result.stopper.best_epoch_:
            return float("nan")
        return self.result.stopper.best_


def run_population(members: Sequence[Member], *, data: Any = None, y: Any = None, console=None,
                   catch: bool = False, on_start: Callable[[int, Member], None] | None = None,
                   on_done: Callable[[int, MemberResult], None] | None = None,
                   stop: Callable[[], bool] | None = None, checkpoints: str | Path | None = None,
                   resume: bool = False) -> list[MemberResult]:
    """Train every member. Members that share one set-up and differ only in their seed (restarts), or whose
    configs differ only in per-member values (search trials: `vectorized.PER_MEMBER`), are trained as
    one stacked model when the config allows it (``vectorize``, see `trainwise.vectorized`); otherwise, or
    when something in them does not stack (said in one line), one after another. ``catch``: record a member's
    input error and go on (search trials) instead of raising it (restarts, folds). ``on_start(i, member)`` is
    called before each one, ``on_done(i, member_result)`` after it (it may raise to stop the population);
    ``stop()``, checked before each member or stacked group starts, ends the population there (a time budget:
    the members not started are left out). Each result's ``info["seconds"]`` is its wall time (a stacked
    group's divided among its members, ``info["stacked"]`` of them).

    ``checkpoints`` (a folder): every stacked group writes its whole state there after each epoch
    (``population-<its first member's index>.safetensors``), and a member trained alone its own checkpoint
    in its writer's folder; with ``resume`` each group and member continues from its checkpoint where there
    is one (a finished one ends at once, with its result as it was), exactly as if never stopped."""
    done: dict[int, MemberResult] = {}
    for group in _groups(members):
        if stop is not None and stop():
            break
        t0 = time.perf_counter()
        saved = Path(checkpoints) / f"population-{group[0]}.safetensors" if checkpoints is not None else None
        run = _try_stacked([members[i] for i in group], data, y, console, saved, resume) if len(group) > 1 else None
        if run is not None:
            for i in group:
                if on_start is not None:
                    on_start(i, members[i])
            try:
                results = run()
            except TrainwiseError as e:
                if not catch:
                    raise
                if console is not None:  # one member's input error (its LR finder found no LR, ...): find which
                    console.print(f"the stacked members stopped ({e.args[0]}); training them one by one")
                results = None
            if results is not None:
                for i, r in zip(group, results):
                    r.info.update(seconds=(time.perf_counter() - t0) / len(group), stacked=len(group))
                    done[i] = r
                for i in group:
                    if on_done is not None:
                        on_done(i, done[i])
                continue
        started = run is not None  # a stacked attempt that failed: its members were announced already
        for i in group:
            if i != group[0] and stop is not None and stop():
                break
            done[i] = _one(i, members[i], data, y, console, catch, None if started else on_start,
                           checkpoints is not None, resume)
            if on_done is not None:
                on_done(i, done[i])
    return [done[i] for i in sorted(done)]


def _one(i: int, m: Member, data, y, console, catch: bool, on_start, checkpoint: bool = False,
         resume: bool = False) -> MemberResult:
    if on_start is not None:
        on_start(i, m)
    t0 = time.perf_counter()
    try:
        setup = m.setup if m.setup is not None else setup_run(m.cfg, data, y, raw=m.raw)
        if m.writer is not None and m.setup is None:
            m.writer.write_config(setup.cfg)
        checkpoint = checkpoint and m.writer is not None  # the population's checkpoints: this member's own
        last = m.writer.run_dir / "checkpoints" / "last.safetensors" if checkpoint else None
        state = load_trainer_state(last, map_location=setup.device) if resume and last is not None and last.is_file() else None
        result = train_run(setup, m.seed, callbacks=list(m.callbacks), writer=m.writer, console=console,
                           checkpoint=True if checkpoint else m.checkpoint, evaluate_test=m.evaluate_test,
                           resume_state=state, resume_source=str(last))
        out = MemberResult(m, result)
    except TrainwiseError as e:
        if not catch:
            raise
        out = MemberResult(m, error=e)
    out.info["seconds"] = time.perf_counter() - t0
    return out


_MAX_STACK = 64  # members per stacked model: beyond this, time per member hardly falls and memory keeps growing


def _groups(members: Sequence[Member]) -> list[list[int]]:
    """The members that could be stacked together, in order of their first member: those sharing one set-up
    (restarts), or with configs equal but for `PER_MEMBER` values (search trials); the others alone."""
    groups: dict[Any, list[int]] = {}
    for i, m in enumerate(members):
        if m.setup is not None:
            key: Any = ("setup", id(m.setup))
        elif m.cfg is not None and m.raw is None and m.cfg.vectorize:
            key = ("cfg", repr(sorted(m.cfg.model_dump(exclude=set(PER_MEMBER)).items())), m.evaluate_test, m.checkpoint)
            # (the config's seed is in the key: it also decides the data split)
        else:
            key = ("alone", i)
        groups.setdefault(key, []).append(i)
    return [g[j:j + _MAX_STACK] for g in groups.values() for j in range(0, len(g), _MAX_STACK)]


def _try_stacked(members: Sequence[Member], data, y, console, checkpoint: Path | None = None,
                 resume: bool = False) -> Callable[[], list[MemberResult]] | None:
    """A function training the members as one stacked model, or None (said why in one line) when they do not
    stack. Members with their own configs get set-ups over the first one's prepared data (`vary`).
    ``checkpoint``: the group's checkpoint file (``resume``: continue from it when it exists)."""
    first = members[0]
    if first.setup is not None:
        if not first.setup.cfg.vectorize or any(m.checkpoint is None for m in members):
            return None
        setups = [first.setup] * len(members)
    else:
        if any(m.cfg.checkpoint if m.checkpoint is None else m.checkpoint for m in members):
            return None  # each trial checkpointing on its own: one by one (search trials never do)
        try:
            base = setup_run(first.cfg, data, y)
            setups = [base] + [vary(base, m.cfg) for m in members[1:]]
        except TrainwiseError:
            return None  # the first member's input error: found again, and reported, when it runs alone
    own_checkpoints = any(m.checkpoint for m in members)
    tensorboard = any(getattr(m.writer, "tensorboard", False) for m in members)
    reason = stack_reason(setups, callbacks=[m.callbacks for m in members], checkpoint=own_checkpoints, tensorboard=tensorboard) \
        or (None if all(m.evaluate_test == first.evaluate_test for m in members) else "the members differ in evaluating the test split")
    if reason is not None:
        if console is not None:  # (callers pass none when quiet)
            console.print(f"training the {len(members)} members one by one: {reason}")
        return None

    def run() -> list[MemberResult]:
        for m, s in zip(members, setups):
            if m.writer is not None and m.setup is None:
                m.writer.write_config(s.cfg)
        seeds = [s.cfg.seed if m.seed is None else m.seed for m, s in zip(members, setups)]
        state = load_checkpoint(checkpoint, map_location=setups[0].device) if resume and checkpoint is not None \
            and checkpoint.is_file() else None
        results = train_stacked(setups, seeds, writers=[m.writer for m in members], callbacks=[m.callbacks for m in members],
                                evaluate_test=first.evaluate_test, console=console, checkpoint=checkpoint,
                                resume_state=state, resume_source=str(checkpoint))
        return [MemberResult(m, r) for m, r in zip(members, results)]
    return run
