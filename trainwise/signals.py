"""Ctrl-C and SIGTERM during a run, at the lowest layer so that the loop and the command line share it.

The command line's handler raises at once while a training loop runs or before any has started (the loop
records the run as interrupted; nothing is half-made before). Between loops — a finished run being saved,
the next restart or fold being set up — the signal is only recorded (`STATE.pending`): the save finishes, and
the next training loop stops before its first step. `training_loop` is what `Trainer.fit` wraps its loop in.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import Terminated

__all__ = ["STATE", "training_loop", "should_defer", "interrupt_for", "reset"]


class _State:
    def __init__(self) -> None:
        self.training = 0        # training loops running now
        self.trained = False     # a training loop has run in this command
        self.pending: str | None = None  # a deferred signal's name ('SIGINT', 'SIGTERM')


STATE = _State()


def reset() -> None:
    STATE.__init__()


def interrupt_for(name: str) -> KeyboardInterrupt:
    return Terminated() if name == "SIGTERM" else KeyboardInterrupt()


def should_defer() -> bool:
    """Whether a signal now would cut a save short: a loop has run and none is running."""
    return STATE.trained and STATE.training == 0


@contextlib.contextmanager
def training_loop() -> Iterator[None]:
    """Around a training loop: a signal deferred earlier stops it before it starts (as an interrupt)."""
    if STATE.pending:
        raise interrupt_for(STATE.pending)
    STATE.training += 1
    STATE.trained = True
    try:
        yield
    finally:
        STATE.training -= 1
