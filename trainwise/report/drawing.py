"""The run's figures drawn in a helper process, beside the training.

matplotlib's import (~0.4 s) and the digits run's three figures (~0.4 s) were a fifth of the main job's wall
time, all on one core while the other waited. The `trainwise` command therefore forks one helper at the start
of a run (`start`): it imports matplotlib while the run trains, then draws each figure it is sent and writes the
PNG itself (atomically, as in-process drawing does). `draw` sends a figure to the helper with the fewest waiting, or draws it at
once where there is none (the library API, a helper that failed to start); `finish` waits until every figure sent is
on disk and is called before anything reads them (the HTML report embeds them) and at exit. A figure the helper
could not draw, or did not draw because it died, is drawn again in this process, so its error (if any) is the
same as without a helper. The helper ignores Ctrl-C and SIGTERM (the run handles them) and ends when this
process closes the pipe or dies.
"""
from __future__ import annotations

import atexit
import io
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import plots

__all__ = ["start", "draw", "finish", "running"]

_HEADER = struct.Struct("!I")
ANSWER_S = 300.0  # the longest a helper may take to answer before it counts as hung


class _Helper:
    def __init__(self, pid: int, jobs: int, replies: int):
        self.pid, self.jobs, self.replies = pid, jobs, replies
        self.pending: list[tuple[str, tuple, dict]] = []
        self.dead = False

    def send(self, name: str, args: tuple, kwargs: dict) -> bool:
        if self.dead:
            return False
        try:
            _write(self.jobs, pickle.dumps((name, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return False
        self.pending.append((name, args, kwargs))
        return True

    def wait(self) -> list[tuple[str, tuple, dict]]:
        """Block until every sent figure is answered; the ones to redo here (failed, or the helper died). A helper
        that answers nothing for `ANSWER_S` seconds (a figure takes well under one) is killed as hung; one
        interrupted mid-answer (Ctrl-C) is killed too, its stream no longer to be trusted."""
        redo = []
        while self.pending and not self.dead:
            try:
                if not select.select([self.replies], [], [], ANSWER_S)[0]:
                    raise EOFError("no answer")
                ok = _read(self.replies) == b"ok"
            except (OSError, EOFError):
                self._die()
                break
            except BaseException:
                self._die()
                raise
            job = self.pending.pop(0)
            if not ok:
                redo.append(job)
        if self.dead:  # what it had not answered is drawn here, once
            lost, self.pending = self.pending, []
            redo += lost
        return redo

    def _die(self) -> None:
        self.dead = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for fd in (self.jobs, self.replies):
            try:
                os.close(fd)
            except OSError:
                pass
        # every figure is answered: the helper ends on the pipe's end, unless a process forked since (a data
        # loader's worker) still holds the pipe open, so it is not waited for long
        for _ in range(50):
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


_HELPERS: list[_Helper] = []


def start(helpers: int = 2) -> bool:
    """Fork the drawing helpers (once per process; POSIX only; not while other threads run: a fork copies only
    the calling thread). True when they run."""
    if _HELPERS:
        return True
    if not sys.platform.startswith("linux") or threading.active_count() > 1:  # fork: Linux (macOS spawns, for safety)
        return False
    atexit.register(_shutdown)
    for _ in range(helpers):
        try:
            _HELPERS.append(_fork())
        except OSError:  # no memory or processes left for a fork: what did not start is drawn here
            break
    return bool(_HELPERS)


def _fork() -> _Helper:
    jobs_r, jobs_w = os.pipe()
    replies_r, replies_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
        stream.flush()
    others = [fd for h in _HELPERS for fd in (h.jobs, h.replies)]  # the child closes them (its at-fork hook forgets them)
    try:
        pid = os.fork()
    except OSError:
        for fd in (jobs_r, jobs_w, replies_r, replies_w):
            os.close(fd)
        raise
    if pid == 0:  # the helper: it never returns, whatever happens (a signal before it ignores them included)
        try:
            for fd in [jobs_w, replies_r, *others]:  # only its own pipes stay open
                os.close(fd)
            _serve(jobs_r, replies_w)
        finally:
            os._exit(1)
    os.close(jobs_r)
    os.close(replies_w)
    return _Helper(pid, jobs_w, replies_r)


def running() -> list[int]:
    """The process ids of the drawing helpers (none: figures are drawn in this process)."""
    return [h.pid for h in _HELPERS]


# what a figure costs to draw, in one-panel figures (measured: the two-panel curves ~0.2 s, a confusion matrix or
# the gradient flow 0.12-0.15 s): the run's last figures are sent at once, and the helper with the least work waiting
# takes the next, so the curves go to one helper and the two others to the other (the run waits for the slower)
_PANELS = {"plot_curves": 2, "plot_samples": 2, "plot_test_predictions": 2, "plot_regression": 2}


def draw(fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """``fn(*args, **kwargs)`` (one of `plots`' figures) in a helper if they run, else here and now."""
    helper = min((h for h in _HELPERS if not h.dead), key=lambda h: sum(_PANELS.get(job[0], 1) for job in h.pending),
                 default=None)
    if helper is None or getattr(plots, fn.__name__, None) is not fn or not helper.send(fn.__name__, args, kwargs):
        fn(*args, **kwargs)


def finish() -> None:
    """Return once every figure sent to the helper is written; the ones it failed are drawn here (raising as
    they would without a helper)."""
    redo = [job for helper in _HELPERS for job in helper.wait()]
    for name, args, kwargs in redo:
        getattr(plots, name)(*args, **kwargs)


def _shutdown() -> None:
    try:
        finish()
    finally:
        while _HELPERS:
            _HELPERS.pop().close()


def _forget_in_child() -> None:
    """In a process forked from this one (a search worker, a DataLoader worker): the helpers are not its own, so
    it draws in-process and never reads their replies (their pipes stay open: closing them is the parent's)."""
    _HELPERS.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_in_child)


def _serve(jobs: int, replies: int) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run handles these; it closes the pipe when done
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.nice(5)  # the run's own start (torch, its optimizer's imports) and training come first on a busy core (not 10:
        # on a machine kept busy by other jobs a nice-10 helper gets a tenth of a core, and the run waits for its figures)
        _warm_up(plots.pyplot())  # the import and a first figure (fonts, text layout), while the run trains
        while True:
            try:
                name, args, kwargs = pickle.loads(_read(jobs))
            except EOFError:
                break
            try:
                getattr(plots, name)(*args, **kwargs)
                reply = b"ok"
            except Exception:  # noqa: BLE001 - the run draws it again and sees the error itself
                reply = b"failed"
            _write(replies, reply)
    except BaseException:  # noqa: BLE001 - the helper must never fall back into the run's code
        code = 1
    finally:
        os._exit(code)


def _warm_up(plt) -> None:
    """A small figure drawn and thrown away: a process's first figure loads the font and sets up the text layout,
    which the run's first figure then does not wait for."""
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0], label="warm")
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(io.BytesIO(), format="png", dpi=50)
    plt.close(fig)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int) -> bytes:
    size = _HEADER.unpack(_read_exactly(fd, _HEADER.size))[0]
    return _read_exactly(fd, size)


def _read_exactly(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the other end closed the pipe")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
