"""Built-in callbacks: early stopping (with best-weight tracking), metrics.csv writer, live table."""
from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..console import console as make_console
from ..errors import TrainwiseError, check_choice, did_you_mean
from ..options import EARLY_STOP_RULES, HIGHER_IS_BETTER
from ..runs import atomic_write, serialize_snapshot, snapshot_state, write_metrics_csv
from .trainer import Callback, Trainer

__all__ = ["EarlyStopping", "MetricsCSV", "ProgressTable", "BatchProgress", "Checkpoint", "resolve_mode", "resolve_monitor", "tie_breaker",
           "is_better", "logged_metrics",
           "check_monitor"]


def resolve_monitor(monitor: str, task: str, *, has_val: bool = True) -> str:
    """``auto``: what the user cares about, on the validation split: ``val/accuracy`` for classification,
    ``val/loss`` for regression (the MSE, which ranks epochs as R² does). Without a validation split a
    validation monitor falls back to ``train/loss``.

    >>> resolve_monitor("auto", "classification"), resolve_monitor("auto", "regression"), resolve_monitor("val/f", "x", has_val=False)
    ('val/accuracy', 'val/loss', 'train/loss')
    """
    if monitor == "auto":
        monitor = "val/accuracy" if task == "classification" else "val/loss"
    return monitor if has_val or not monitor.startswith("val/") else "train/loss"


def wins_tie(value: float | None, tie: float | None, best: float | None, best_tie: float | None, mode: str) -> bool:
    """``value`` is no worse than ``best`` and its tie-breaker (a loss) is lower than ``best_tie``: the epoch that
    early stopping keeps, and the live table stars, among equal accuracies.

    >>> wins_tie(0.9, 0.3, 0.9, 0.4, "max"), wins_tie(0.9, 0.5, 0.9, 0.4, "max"), wins_tie(0.8, 0.1, 0.9, 0.4, "max")
    (True, False, False)
    """
    if tie is None or best_tie is None or value is None or math.isnan(value):
        return False
    return not is_better(best, value, mode) and is_better(tie, best_tie, "min")


def tie_breaker(monitor: str) -> str | None:
    """The metric that orders epochs whose ``monitor`` is equal: the loss of the same split for an accuracy,
    which moves in steps of one sample (many epochs share the best value); None for a continuous monitor.

    >>> tie_breaker("val/accuracy"), tie_breaker("val/loss")
    ('val/loss', None)
    """
    split, _, name = monitor.rpartition("/")
    return f"{split}/loss" if name == "accuracy" else None


def resolve_mode(monitor: str, mode: str = "auto") -> str:
    """``auto``: higher is better for accuracy, R², F1, AUROC, ...; lower for the rest (losses, errors, log_loss, mape).

    >>> resolve_mode("val/f1"), resolve_mode("val/log_loss"), resolve_mode("val/loss", "max")
    ('max', 'min', 'max')
    """
    if mode != "auto":
        return mode
    return "max" if monitor.rsplit("/", 1)[-1] in HIGHER_IS_BETTER else "min"


def logged_metrics(kind: str, *, val: bool, extras: tuple[str, ...] = (), val_extras: tuple[str, ...] = ()) -> list[str]:
    """The keys a `Trainer` logs every epoch for outputs of ``kind`` ('multiclass', 'binary', 'regression'),
    with a validation split (``val``) or without; ``extras``: per-step means it adds (penalty, grad_norm);
    ``val_extras``: the ``--metrics`` computed on the validation split.

    >>> logged_metrics("binary", val=True)
    ['lr', 'train/loss', 'train/accuracy', 'val/loss', 'val/accuracy']
    """
    names = ("loss", "mae", "rmse", "r2") if kind == "regression" else ("loss", "accuracy")
    return ["lr", *(f"train/{n}" for n in (*names, *extras)), *(f"val/{n}" for n in (*names, *val_extras) if val)]


def check_monitor(monitor: str, logged: list[str], option: str = "monitor") -> str:
    """``monitor`` if the run logs it; otherwise an error listing what it logs (with "did you mean")."""
    if monitor in logged:
        return monitor
    raise TrainwiseError(f"{option} '{monitor}' is not a metric this run logs; it logs {', '.join(logged)}",
                         hint=did_you_mean(monitor, logged) or f"set --{option.replace('_', '-')} to one of them, e.g. {logged[1]}")


def is_better(value: float | None, best: float | None, mode: str) -> bool:
    """The one comparison of monitored values: is ``value`` strictly better than ``best`` under ``mode``
    ('min' or 'max')? NaN or None is never better; anything beats a ``best`` of None or NaN.

    >>> is_better(0.2, 0.3, "min"), is_better(0.2, 0.3, "max"), is_better(float("nan"), 0.3, "min")
    (True, False, False)
    """
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best if mode == "min" else value > best


class EarlyStopping(Callback):
    """Stop when ``monitor`` stops getting better, by one of two rules (``rule``):

    - ``patience`` (default): no improvement by more than ``min_delta`` over the best so far for ``patience`` epochs;
    - ``consecutive`` (the lecture notes' rule): the value got worse than the epoch before (val/loss rose) in
      ``patience`` consecutive epochs; ``min_delta`` is not used (the notes compare the raw values).

    Either way it tracks the best epoch; with ``restore_best`` the model ends with that epoch's weights.
    ``patience=None`` only tracks (never stops). Defaults follow the lecture: threshold 0.001. An accuracy
    monitor moves in steps of one sample, so many epochs share its best value: among them the best epoch is
    the one with the lowest loss (`tie_breaker`); a tie moves the best epoch but does not reset the patience.

    >>> es = EarlyStopping(monitor="val/loss", patience=3)
    >>> es.mode
    'min'
    >>> es = EarlyStopping(patience=2, rule="consecutive")
    >>> [es.worse_streak(v) for v in (1.0, 0.8, 0.9, 0.85, 0.9, 0.95)]
    [0, 0, 1, 0, 1, 2]
    """

    def __init__(self, monitor: str = "val/loss", mode: str = "auto", patience: int | None = 10,
                 min_delta: float = 0.001, restore_best: bool = True, rule: str = "patience"):
        self.monitor, self.mode = monitor, resolve_mode(monitor, mode)
        self.patience, self.min_delta, self.restore_best = patience, abs(min_delta), restore_best
        self.rule = check_choice("early_stop_rule", rule, EARLY_STOP_RULES)
        self.best_, self.best_epoch_, self.wait_ = math.inf if self.mode == "min" else -math.inf, 0, 0
        self.previous_: float | None = None  # the consecutive rule: last epoch's value
        self.tie_ = tie_breaker(monitor)
        self.best_tie_: float | None = None  # the tie-breaker's value at the best epoch
        self.best_weights_: dict[str, torch.Tensor] | None = None

    def improved(self, value: float) -> bool:
        """Better than the best so far by more than ``min_delta``."""
        return is_better(value, self.best_ - self.min_delta if self.mode == "min" else self.best_ + self.min_delta, self.mode)

    def _tied(self, value: float, logs: dict[str, float]) -> bool:
        return wins_tie(value, logs.get(self.tie_) if self.tie_ else None, self.best_, self.best_tie_, self.mode)

    def worse_streak(self, value: float) -> int:
        """The consecutive rule's count after ``value``: epochs in a row that were worse than the one before
        (a NaN counts as worse)."""
        worse = self.previous_ is not None and (math.isnan(value) or is_better(self.previous_, value, self.mode))
        self.previous_ = value
        self.wait_ = self.wait_ + 1 if worse else 0
        return self.wait_

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise TrainwiseError(f"monitor '{self.monitor}' is not among the logged metrics: {', '.join(logs)}",
                                 hint="set --monitor to one of them, e.g. val/loss")
        value = logs[self.monitor]
        # an epoch whose loss is NaN/inf holds no usable weights, whatever an accuracy computed from them says
        usable = all(math.isfinite(v) for k, v in logs.items() if k.endswith("/loss"))
        best = usable and self.improved(value)
        tie = usable and self._tied(value, logs)
        if best or tie:
            if best:  # the anchor of "improved" moves only on a real improvement (a tie moves the best epoch)
                self.best_ = value
            self.best_epoch_, self.best_tie_ = epoch, logs.get(self.tie_) if self.tie_ else None
            if self.restore_best:
                self.best_weights_ = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        if self.rule == "consecutive":
            if self.patience is not None and self.worse_streak(value) >= self.patience:
                verb = "rose" if self.mode == "min" else "fell"
                trainer.request_stop(f"{self.monitor} {verb} in {self.patience} consecutive epochs "
                                     f"(best {self.best_:.4g} at epoch {self.best_epoch_})")
            return
        if best:
            self.wait_ = 0
            return
        self.wait_ += 1
        if self.patience is not None and self.wait_ >= self.patience:
            trainer.request_stop(f"{self.monitor} did not improve by more than {self.min_delta:g} for {self.patience} epochs "
                                 f"(best {self.best_:.4g} at epoch {self.best_epoch_})")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_weights_ is not None:
            trainer.model.load_state_dict(self.best_weights_)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best_, "best_epoch": self.best_epoch_, "wait": self.wait_, "best_weights": self.best_weights_,
                "previous": self.previous_, "best_tie": self.best_tie_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best, best_epoch, wait = state["best"], state["best_epoch"], state["wait"]
        previous, best_tie = state.get("previous"), state.get("best_tie")
        if not (best_tie is None or isinstance(best_tie, (int, float))):
            raise ValueError(f"early-stopping state best_tie={best_tie!r} is not possible")
        if not (best is None or isinstance(best, (int, float))) or not (best_epoch is None or isinstance(best_epoch, int)) \
                or not isinstance(wait, int) or wait < 0 or not (previous is None or isinstance(previous, (int, float))):
            raise ValueError(f"early-stopping state best={best!r}, best_epoch={best_epoch!r}, wait={wait!r}, "
                             f"previous={previous!r} is not possible")
        self.best_, self.best_epoch_, self.wait_, self.previous_, self.best_tie_ = best, best_epoch, wait, previous, best_tie
        self.best_weights_ = state.get("best_weights")


class MetricsCSV(Callback):
    """Rewrites ``metrics.csv`` atomically after every epoch, so a crash never loses finished epochs."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        write_metrics_csv(self.path, trainer.history)


class ProgressTable(Callback):
    """A live per-epoch table in the terminal (rich): losses, metrics, lr, time; the best epoch so far marked,
    equal values of an accuracy ordered by the loss as early stopping orders them (`tie_breaker`)."""

    def __init__(self, monitor: str = "val/loss", mode: str = "auto", console=None):
        self.console = console or make_console()
        self.monitor, self.mode, self.tie = monitor, resolve_mode(monitor, mode), tie_breaker(monitor)
        self.best_: float | None = None
        self.best_tie_: float | None = None
        self.columns_: list[str] = []

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if not self.columns_:
            self.columns_ = [k for k in logs if k not in ("epoch", "time/epoch_s")]
            head = "epoch  " + "  ".join(f"{k:>12}" for k in self.columns_) + "     time"
            self.console.print(f"[bold]{head}[/bold]")
        value, tie = logs.get(self.monitor), logs.get(self.tie) if self.tie else None
        better = is_better(value, self.best_, self.mode) or wins_tie(value, tie, self.best_, self.best_tie_, self.mode)
        if better:
            self.best_, self.best_tie_ = value, tie
        cells = "  ".join(f"{logs[k]:>12.4g}" if k != "lr" else f"{logs[k]:>12.2e}" for k in self.columns_)
        row = f"{epoch:>5}  {cells}  {logs['time/epoch_s']:>6.2f}s" + ("  *" if better else "")
        self.console.print(f"[green]{row}[/green]" if better else row)

    def on_fit_end(self, trainer: Trainer) -> None:
        if trainer.stop_reason:
            self.console.print(f"[dim]{trainer.status}: {trainer.stop_reason}[/dim]")


class BatchProgress(Callback):
    """A rich progress bar inside an epoch (batches done, batches per second, time left), shown only once an
    epoch has run ``after_s`` seconds: short epochs never show one. The per-step cost is one call and a counter;
    the clock is read every 16 steps. The bar is transient: the epoch's row of `ProgressTable` replaces it."""

    def __init__(self, console=None, *, after_s: float = 1.5):
        self.console, self.after_s = console or make_console(), after_s
        self.progress_, self.task_, self.done_, self.t0_, self.total_ = None, None, 0, 0.0, 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.total_ = trainer.steps_per_epoch or 0

    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None:
        self.done_, self.t0_, self.epoch_ = 0, time.monotonic(), epoch

    def on_batch_end(self, trainer: Trainer, *, step: int, loss: torch.Tensor) -> None:
        self.done_ += 1
        if self.done_ & 15:
            return
        elapsed = time.monotonic() - self.t0_
        if self.task_ is None:
            if elapsed < self.after_s or not self.total_:
                return
            self._show()
        self.progress_.update(self.task_, completed=self.done_, rate=f"{self.done_ / elapsed:.0f} batches/s")

    def _show(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # lazy: slow epochs only

        if self.progress_ is None:
            self.progress_ = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                                      console=self.console, transient=True)
            self.progress_.start()
        self.task_ = self.progress_.add_task("train", total=self.total_, completed=self.done_, epoch=self.epoch_, rate="")

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if self.task_ is not None:
            self.progress_.remove_task(self.task_)
            self.task_ = None

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.progress_ is not None:
            self.progress_.stop()
            self.progress_ = None


class Checkpoint(Callback):
    """After every epoch, write the full training state to ``<dir>/<name>.safetensors`` (``last``) and, when ``tracker``
    (an `EarlyStopping`) saw a new best epoch, to ``<dir>/best.safetensors`` too. Writes are atomic, so a
    crash or kill at any moment leaves the previous complete checkpoint; `Trainer.load_state_dict` resumes it.

    The state is copied at the epoch's end (a consistent snapshot) and written by one background thread while
    the next epoch trains: serializing, writing and fsync-ing two checkpoints cost ~5% of a 0.3 s epoch
    (benchmarks/epoch_time.py --cli). At most one write is in flight (the next epoch's end waits for it), and
    the run's end waits for the last one; a failed write (full disk) is raised there, naming the file.
    """

    def __init__(self, directory: str | Path, tracker: EarlyStopping | None = None, *, name: str = "last"):
        self.directory, self.tracker, self.name = Path(directory), tracker, name
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        self.wait()
        snapshot = snapshot_state(trainer.state_dict())
        best = self.tracker is not None and self.tracker.best_epoch_ == epoch
        if self._pool is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainwise-checkpoint")
        self._pending = self._pool.submit(self._write, snapshot, best)

    def _write(self, snapshot, best: bool) -> None:
        data = serialize_snapshot(snapshot)
        atomic_write(self.directory / f"{self.name}.safetensors", data)
        if best:
            atomic_write(self.directory / "best.safetensors", data)

    def wait(self) -> None:
        """Until the checkpoint being written is on disk (its error, if it failed, is raised here). Interrupted
        while waiting (Ctrl-C), the write stays pending: the run's end waits for it again."""
        if self._pending is None:
            return
        try:
            self._pending.result()
        except Exception:
            self._pending = None
            raise
        self._pending = None

    def on_fit_end(self, trainer: Trainer) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
