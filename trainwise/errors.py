"""User-facing errors: every one names the cause and carries the fix (``hint``)."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["TrainwiseError", "Terminated", "did_you_mean", "check_choice", "EXIT_OK", "EXIT_BUG", "EXIT_BAD_INPUT",
           "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

# The command line's exit codes (README: "Exit codes").
EXIT_OK = 0            # done (also: stopped early, as configured)
EXIT_BUG = 1           # an internal error: a bug in trainwise, please report it
EXIT_BAD_INPUT = 2     # bad input (a TrainwiseError): nothing was trained, nothing half-made was left
EXIT_FAILED = 3        # training failed (e.g. diverged: no finite epoch); the run directory says why
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): checkpoint + summary written, `--resume` continues
EXIT_TERMINATED = 143  # SIGTERM (batch schedulers, docker stop): as Ctrl-C


class Terminated(KeyboardInterrupt):
    """Raised by the command line's SIGTERM handler: a run stops as on Ctrl-C (checkpoint, summary, resumable)."""


class TrainwiseError(Exception):
    """An error caused by the user's input, with the fix in ``hint``.

    The CLI prints it as one paragraph and exits with status 2; it is never shown as a traceback.

    >>> str(TrainwiseError("batch_size=512 is larger than the training split (100 rows)", hint="use --batch-size 100 or less"))
    'batch_size=512 is larger than the training split (100 rows). HINT: use --batch-size 100 or less'
    """

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}. HINT: {hint}" if hint else message)


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """'did you mean X?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else ""


def check_choice(what: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise an error listing them.

    >>> check_choice("optimizer", "adam", ["sgd", "adam"])
    'adam'
    """
    choices = list(choices)
    if value in choices:
        return value
    suggestion = did_you_mean(value, choices)
    raise TrainwiseError(
        f"unknown {what} '{value}'; valid: {', '.join(choices)}",
        hint=suggestion or f"pick one of: {', '.join(choices)}",
    )
