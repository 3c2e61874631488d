"""The terminal console trainwise prints to: rich's, except that a reader that goes away (output piped into
`head`) silences it instead of ending the program: the run goes on and is written in full."""
from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["PipeSafeConsole", "console"]


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
