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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import RunConfig
from .data import RawData
from .errors import TrainwiseError
from .pipeline import RunResult, RunSetup, setup_run, train_run
from .train import Callback
from .train.callbacks import is_better
from .vectorized import stack_reason, train_stacked

__all__ = ["Member", "MemberResult", "run_population", "is_better", "select_best", "rank", "spread"]


def select_best(values: Sequence[float | None], mode: str) -> int | None:
    """Index of the best value (the first one on ties), or None when none is usable."""
    best: int | None = None
    for i, v in enumerate(values):
        if is_better(v, None if best is None else values[best], mode):
            best = i
    return best


def rank(values: Sequence[float | None], mode: str) -> list[int]:
    """Indices best first (stable on ties); values that are None or NaN go last, in their order.

    >>> rank([0.3, float("nan"), 0.1, 0.3], "min"), rank([0.3, None, 0.1], "max")
    ([2, 0, 3, 1], [0, 2, 1])
    """
    usable = [i for i, v in enumerate(values) if is_better(v, None, mode)]
    rest = [i for i in range(len(values)) if i not in set(usable)]
    return sorted(usable, key=lambda i: values[i] if mode == "min" else -values[i]) + rest


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
                   on_done: Callable[[int, MemberResult], None] | None = None) -> list[MemberResult]:
    """Train every member. Members that share one set-up and differ only in their seed (restarts) are trained
    as one stacked model when the config allows it (``vectorize``, see `trainwise.vectorized`); otherwise, or
    when something in them does not stack (said in one line), one after another. ``catch``: record a member's
    input error and go on (search trials) instead of raising it (restarts, folds). ``on_start(i, member)`` is
    called before each one, ``on_done(i, member_result)`` after it (it may raise to stop the population)."""
    stacked = _try_stacked(members, console, on_start, on_done)
    if stacked is not None:
        return stacked
    out: list[MemberResult] = []
    for i, m in enumerate(members):
        if on_start is not None:
            on_start(i, m)
        try:
            setup = m.setup if m.setup is not None else setup_run(m.cfg, data, y, raw=m.raw)
            if m.writer is not None and m.setup is None:
                m.writer.write_config(setup.cfg)
            result = train_run(setup, m.seed, callbacks=list(m.callbacks), writer=m.writer, console=console,
                               checkpoint=m.checkpoint, evaluate_test=m.evaluate_test)
            out.append(MemberResult(m, result))
        except TrainwiseError as e:
            if not catch:
                raise
            out.append(MemberResult(m, error=e))
        if on_done is not None:
            on_done(i, out[-1])
    return out


def _try_stacked(members: Sequence[Member], console, on_start, on_done) -> list[MemberResult] | None:
    """The members trained as one stacked model, or None when they are not a stackable population."""
    first = members[0] if members else None
    if first is None or len(members) < 2 or first.setup is None or not first.setup.cfg.vectorize \
            or any(m.setup is not first.setup or m.checkpoint is None for m in members):
        return None
    checkpoint = any(m.checkpoint for m in members)
    tensorboard = any(getattr(m.writer, "tensorboard", False) for m in members)
    reason = stack_reason(first.setup, callbacks=first.callbacks, checkpoint=checkpoint, tensorboard=tensorboard) \
        or (None if all(m.callbacks == first.callbacks and m.evaluate_test == first.evaluate_test for m in members)
            else "the members have different callbacks")
    if reason is not None:
        if console is not None and not first.setup.cfg.quiet:
            console.print(f"training the {len(members)} members one by one: {reason}")
        return None
    if on_start is not None:
        for i, m in enumerate(members):
            on_start(i, m)
    seeds = [first.setup.cfg.seed if m.seed is None else m.seed for m in members]
    results = train_stacked(first.setup, seeds, writers=[m.writer for m in members], callbacks=list(first.callbacks),
                            evaluate_test=first.evaluate_test, console=console)
    out = [MemberResult(m, r) for m, r in zip(members, results)]
    if on_done is not None:
        for i, r in enumerate(out):
            on_done(i, r)
    return out
