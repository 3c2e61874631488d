"""The terminal console trainwise prints to: rich's, except that a reader that goes away (output piped into
`head`) silences it instead of ending the program: the run goes on and is written in full."""
from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["PipeSafeConsole", "console", "secondary_rank"]


class PipeSafeConsole(Console):
    """A rich `Console` that, when stdout is a closed pipe, prints nothing more (rich's own exits with 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # later writes, and the flush at exit, go nowhere
        except (OSError, ValueError):  # stdout without a file descriptor (captured): quiet is enough
            pass


def console(**options) -> PipeSafeConsole:
    """The console for trainwise's own output (no highlighting of numbers: tables stay readable)."""
    return PipeSafeConsole(highlight=False, **options)


def secondary_rank() -> bool:
    """Whether this process is a rank other than 0 of a data-parallel job (torchrun's RANK/WORLD_SIZE): rank 0
    speaks for the job, so the others print neither reports nor the errors they share with it."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and os.environ.get("RANK", "0") != "0"
