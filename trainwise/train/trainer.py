"""The training loop: batch -> forward -> loss -> backward -> step -> hooks. Everything optional is a callback."""
from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import Terminated, TrainwiseError, check_choice
from ..options import PRECISIONS
from ..signals import training_loop
from .components import make_loss, make_optimizer, target_kind
from .metrics import MetricAccumulator
from .state import check_trainer_state

__all__ = ["Trainer", "Callback", "HOOKS", "PRECISIONS"]

HOOKS = ("on_fit_start", "on_epoch_start", "on_after_backward", "on_batch_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class of no-op hooks. A hook gets the trainer and named arguments; state ends in ``_``.

    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, trainer, *, epoch, logs):
    ...         print(epoch, round(logs["train/loss"], 3))
    """

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None: ...
    def on_after_backward(self, trainer: Trainer, *, loss: torch.Tensor) -> None: ...  # grads ready (unscaled), before clip/step
    def on_batch_end(self, trainer: Trainer, *, step: int, loss: torch.Tensor) -> None: ...  # after each optimizer step
    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Trainer:
    """Trains ``model`` with validation every epoch.

    ``loss`` and ``optimizer`` are names or ready objects (``optimizer=None``: a trainer that only evaluates
    and predicts; `fit` then refuses); ``kind`` says how outputs are scored
    ('multiclass', 'binary', 'regression'; inferred from a loss name when not given). Options, all off by
    default: ``penalty`` (a callable returning a term added to each batch's loss, e.g. `Penalty`),
    ``accumulate`` (micro-batches per optimizer step), ``clip_norm`` / ``clip_value``, ``precision``
    ('32', 'bf16' autocast, 'fp16' autocast + grad scaler on CUDA) and ``compile``
    (torch.compile the forward; a string: its mode, e.g. 'reduce-overhead' for CUDA graphs).
    ``metrics``: the per-epoch accumulator class (a population's keeps one set of sums per member);
    ``eval_metrics``: the one `evaluate` uses (default: ``metrics``), e.g. one that also computes F1; ``clip``:
    clips the gradients of the parameters it is given, returning the norm before (a population's, per member).
    ``scaler`` is the `torch.amp.GradScaler` in use (None unless fp16); one set by hand is used the same way.
    A step: forward, loss (+ penalty), backward, (unscale), ``on_after_backward``, (clip), optimizer step,
    ``on_batch_end``. A run stops early only through `request_stop` (or Ctrl-C, recorded as interrupted).

    >>> import torch
    >>> _ = torch.manual_seed(0); X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> from trainwise.data import TensorBatches
    >>> t = Trainer(torch.nn.Linear(3, 2), loss="cross_entropy", lr=0.1)
    >>> len(t.fit(TensorBatches(X, y, batch_size=16), TensorBatches(X, y, batch_size=64), epochs=2))
    2
    """

    def __init__(self, model: nn.Module, *, loss: str | nn.Module = "cross_entropy",
                 optimizer: str | torch.optim.Optimizer | None = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 nesterov: bool = False, weight_decay: float = 0.0, kind: str | None = None,
                 callbacks: Sequence[Callback] = (), device: str | torch.device = "cpu", target_std: float = 1.0,
                 penalty: Callable[[], torch.Tensor] | None = None, accumulate: int = 1,
                 clip_norm: float | None = None, clip_value: float | None = None, precision: str = "32",
                 compile: bool | str = False, metrics: Callable[..., MetricAccumulator] = MetricAccumulator,
                 clip: Callable[..., torch.Tensor] | None = None, eval_metrics: Callable[..., MetricAccumulator] | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_fn = make_loss(loss) if isinstance(loss, str) else loss
        self.kind = kind or (target_kind(loss) if isinstance(loss, str) else "multiclass")
        self.optimizer = optimizer if optimizer is None or isinstance(optimizer, torch.optim.Optimizer) else \
            make_optimizer(optimizer, self.model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay, device=self.device)
        self.target_std = target_std
        if isinstance(accumulate, bool) or not hasattr(accumulate, "__index__") or accumulate < 1:  # an integer, numpy ones too
            raise TrainwiseError(f"Trainer: accumulate={accumulate!r} is not a whole number >= 1", hint="e.g. accumulate=1 (no accumulation)")
        self.penalty, self.accumulate, self.clip_norm, self.clip_value = penalty, accumulate, clip_norm, clip_value
        self.clip = clip
        self.precision = _check_precision(precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.forward = self.model if not compile else \
            torch.compile(self.model, mode=None if compile is True or compile == "default" else compile)  # same parameters
        self.metrics = metrics  # (kind, device, target_std=) -> an accumulator like `MetricAccumulator`
        self.eval_metrics = eval_metrics  # the same for `evaluate` (validation, test), when it computes more (--metrics)
        self.lr_finder = None   # set when the LR was chosen by the LR finder
        self.transfer = None    # starting weights and frozen layers, when fine-tuning (for the summary)
        self._new_record(callbacks)

    def _new_record(self, callbacks: Sequence[Callback]) -> None:
        """Callbacks, counters, history and status: what belongs to one trainer's runs, not to its components."""
        self.callbacks = list(callbacks)
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.steps_per_epoch = 0
        self.history: list[dict[str, float]] = []
        self.status, self.stop_reason = "not_started", None
        self.train_time_s, self.train_samples = 0.0, 0
        self._stop, self._stop_now, self._resume, self.max_epochs, self.train_data = False, False, None, 0, None
        self._failed = False
        self.ended_by: BaseException | None = None
        self.non_finite_at: tuple[int, int] | None = None  # (epoch, batch) of the first non-finite training loss
        self._resume_source = "the state"
        # only callbacks that override a hook are called for it: an unused hook costs nothing per step
        self._hooks = {h: [getattr(c, h) for c in self.callbacks if getattr(type(c), h) is not getattr(Callback, h)]
                       for h in HOOKS}

    def sibling(self, callbacks: Sequence[Callback] = ()) -> Trainer:
        """A trainer sharing this one's model, optimizer, loss, scaler and step options, with its own
        ``callbacks``, counters and history: a side run through the same loop (the LR range test) that leaves
        this trainer's record alone. Putting the shared weights and optimizer back is the side run's job.

        >>> t = Trainer(torch.nn.Linear(3, 2))
        >>> side = t.sibling()
        >>> side.model is t.model, side.optimizer is t.optimizer, side.history is t.history
        (True, True, False)
        """
        side = copy.copy(self)
        side._new_record(callbacks)
        return side

    def request_stop(self, reason: str, *, now: bool = False) -> None:
        """Ask the loop to stop after the current epoch or, with ``now``, after the current optimizer step (the
        partial epoch is logged as an epoch). ``reason`` goes into the run summary."""
        self._stop, self.stop_reason = True, reason
        self._stop_now = self._stop_now or now

    def fail(self, reason: str) -> None:
        """End the run after the current epoch with status ``failed`` (e.g. no epoch had a finite loss)."""
        self.request_stop(reason)
        self._failed = True

    def _emit(self, hook: str, **kwargs: Any) -> None:
        for fn in self._hooks[hook]:
            fn(self, **kwargs)

    def fit(self, train: Iterable, val: Iterable | None = None, *, epochs: int) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are done or a callback requests a stop. Returns the history."""
        if self.optimizer is None:
            raise TrainwiseError("Trainer.fit needs an optimizer, but this Trainer was built with optimizer=None "
                                 "(enough for evaluate and predict only)",
                                 hint="build it with optimizer='adam' (or 'sgd', 'adamw', 'rmsprop', or a torch.optim.Optimizer)")
        self.begin(train, epochs)
        try:
            with training_loop():
                self._loop(train, val, epochs)
            self.end()
        except KeyboardInterrupt as e:
            self.end(interrupted=e)
        except Exception as e:
            self.end(error=e)
            raise
        return self.history

    # begin / record_epoch / end: the record of a run, kept here once. `fit` drives them; a population
    # (`trainwise.vectorized`) drives its members' records from its one loop the same way.
    def begin(self, train: Any, epochs: int, *, steps_per_epoch: int | None = None) -> None:
        """Start the record of a run of ``epochs`` epochs over ``train``; callbacks get ``on_fit_start``; then
        a state given to `load_state_dict` is restored (optimizer, callbacks, RNG, ``train``'s shuffle state)."""
        self.status, self._stop, self._stop_now, self.max_epochs, self.train_data = "running", False, False, epochs, train
        self._failed = False
        self.steps_per_epoch = steps_per_epoch if steps_per_epoch is not None else \
            -(-len(train) // self.accumulate) if hasattr(train, "__len__") else 0
        self._emit("on_fit_start")
        self._apply_resume(train)

    def start_epoch(self) -> None:
        """The next epoch begins: callbacks get ``on_epoch_start``."""
        self._emit("on_epoch_start", epoch=self.epoch + 1)

    def record_epoch(self, logs: dict[str, float]) -> None:
        """A finished epoch: counted, added to the history, shown to the callbacks (``on_epoch_end``)."""
        self.epoch += 1
        self.history.append(logs)
        self._emit("on_epoch_end", epoch=self.epoch, logs=logs)

    def end(self, *, interrupted: BaseException | None = None, error: BaseException | None = None) -> None:
        """The run's final status and stop reason; callbacks get ``on_fit_end``."""
        self.ended_by = interrupted or error  # what ended the run early, if anything (a population passes it on)
        if error is not None:
            self.status, self.stop_reason = "failed", f"{type(error).__name__}: {error}"
        elif interrupted is not None:
            who = "terminated (SIGTERM)" if isinstance(interrupted, Terminated) else "interrupted by the user"
            self.status, self.stop_reason = "interrupted", f"{who} during epoch {self.epoch + 1}"
        else:
            self.status = "failed" if self._failed else "early_stopped" if self._stop else "completed"
            self.stop_reason = self.stop_reason or f"reached the maximum of {self.max_epochs} epochs"
        self._emit("on_fit_end")

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (by a callback, or `fail`)."""
        return self._stop

    def _loop(self, train: Iterable, val: Iterable | None, epochs: int) -> None:
        while self.epoch < epochs and not self._stop:
            self.start_epoch()
            t0 = time.perf_counter()
            logs = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **self.train_epoch(train)}
            self.train_time_s += time.perf_counter() - t0
            if val is not None:
                logs |= self.evaluate(val, prefix="val")
            logs["time/epoch_s"] = time.perf_counter() - t0
            self.record_epoch(logs)

    def train_epoch(self, batches: Iterable) -> dict[str, float]:
        """One pass over ``batches``; metrics are summed on the device and read once at the end."""
        self.model.train()
        self._zero_grad()
        acc = self.metrics(self.kind, self.device, target_std=self.target_std)
        last = len(batches) if hasattr(batches, "__len__") else -1
        for i, (x, y) in enumerate(batches, 1):
            with self._autocast():
                out = self.forward(x)
                loss = self.loss_fn(out, y)
            total = loss.sum() if loss.ndim else loss  # a population's per-member losses: each member's gradient is its own
            if self.penalty is not None:
                penalty = self.penalty()
                acc.add("penalty", penalty.detach())
                total = total + (penalty.sum() if penalty.ndim else penalty)  # (a population's: one per member)
            if self.accumulate > 1:
                total = total / self.accumulate  # mean over the micro-batches, as one big batch would give
            (self.scaler.scale(total) if self.scaler else total).backward()
            acc.update(out.detach(), y, loss.detach())
            if i % self.accumulate == 0 or i == last:
                if self.scaler:
                    self.scaler.unscale_(self.optimizer)  # hooks and clipping see the true gradients
                self._emit("on_after_backward", loss=loss)
                if self.clip_norm is not None or self.clip_value is not None:
                    self._clip(acc)
                self._optimizer_step()
                self._emit("on_batch_end", step=self.step, loss=loss)
                if self._stop_now:  # request_stop(now=True): the one check per step
                    break
        self.train_samples += acc.count
        logs = acc.compute("train")
        if self.non_finite_at is None and not math.isfinite(logs["train/loss"]):
            self.non_finite_at = (self.epoch + 1, int(acc.finite_batches) + 1)  # a read only when it broke
        return logs

    def _clip(self, acc: MetricAccumulator) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.clip is not None:
            acc.add("grad_norm", self.clip(params, clip_norm=self.clip_norm, clip_value=self.clip_value))
            return
        acc.add("grad_norm", nn.utils.get_total_norm([p.grad for p in params]))  # before clipping
        if self.clip_value is not None:
            nn.utils.clip_grad_value_(params, self.clip_value)
        if self.clip_norm is not None:
            nn.utils.clip_grad_norm_(params, self.clip_norm)

    def _optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._zero_grad()
        self.step += 1

    def _zero_grad(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)``: done here for torch's own optimizers, whose method does
        just this inside a profiler scope and a ``torch._dynamo`` wrapper: 8.2 us a call against 0.5 us here for a
        784-256-128-10 MLP's Adam (median of 5 runs of 20,000 calls, 2 cores); an optimizer with a
        ``zero_grad`` of its own (its class's or set on it) is asked to do it."""
        if getattr(self.optimizer.zero_grad, "__func__", None) is not torch.optim.Optimizer.zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
            return
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def _autocast(self):
        if self.precision == "32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    @torch.inference_mode()
    def evaluate(self, batches: Iterable, *, prefix: str = "val") -> dict[str, float]:
        """Loss and metrics over ``batches`` in eval mode (dropout off, batch-norm running stats frozen)."""
        was_training = self.model.training
        self.model.eval()
        acc = (self.eval_metrics or self.metrics)(self.kind, self.device, target_std=self.target_std)
        for x, y in batches:
            with self._autocast():
                out = self.forward(x)
            acc.update(out, y, self.loss_fn(out.float(), y))  # (a population's loss: one per member)
        self.model.train(was_training)
        return acc.compute(prefix)

    @torch.inference_mode()
    def predict(self, X: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
        """Raw model outputs for ``X`` in eval mode."""
        self.model.eval()
        with self._autocast():
            return torch.cat([self.forward(X[i:i + batch_size].to(self.device)).float() for i in range(0, len(X), batch_size)])

    # --- exact resume: everything that decides the rest of the run ---
    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scaler, callbacks, counters, history, RNG states and the training batches' shuffle state."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                 "scaler": self.scaler.state_dict() if self.scaler else None,
                 "callbacks": {_cb_key(i, c): c.state_dict() for i, c in enumerate(self.callbacks)},
                 "epoch": self.epoch, "step": self.step, "history": self.history,
                 # a stop already requested (the checkpoint of the last epoch): a resume ends the run, not trains on
                 "stop": self.stop_reason if self._stop and not self._failed else None,
                 "train_time_s": self.train_time_s, "train_samples": self.train_samples,
                 "rng": {"torch": torch.get_rng_state(),
                         "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}
        if hasattr(self.train_data, "state_dict"):
            state["data"] = self.train_data.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], *, source: str = "the state") -> None:
        """Restore a `state_dict`: the model and counters now, the rest when `fit` starts (after the callbacks'
        ``on_fit_start`` has built what they need, e.g. a LR scheduler), so the run goes on exactly.

        The state is checked first (`check_trainer_state`: layout, counters, model and optimizer tensors); one
        that does not fit is a `TrainwiseError` naming ``source`` (e.g. the checkpoint file), before anything
        is changed."""
        check_trainer_state(state, source=source, model=self.model, optimizer=self.optimizer)
        self.model.load_state_dict(state["model"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.train_time_s, self.train_samples = state["train_time_s"], state["train_samples"]
        self._resume, self._resume_source = state, source

    def _apply_resume(self, train: Any) -> None:
        state, self._resume = self._resume, None
        if state is None:
            return
        with self._restoring("the optimizer"):
            if state["optimizer"] is not None:
                self.optimizer.load_state_dict(state["optimizer"])
        with self._restoring("the grad scaler"):
            if self.scaler and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        saved = state["callbacks"]
        for i, c in enumerate(self.callbacks):
            if _cb_key(i, c) in saved:
                with self._restoring(f"callback {_cb_key(i, c)}"):
                    c.load_state_dict(saved[_cb_key(i, c)])
        with self._restoring("the random number generators"):
            torch.set_rng_state(state["rng"]["torch"])
            if state["rng"]["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if state.get("stop"):
            self._stop, self.stop_reason = True, state["stop"]
        if "data" in state and hasattr(train, "load_state_dict"):
            with self._restoring("the training batches' shuffle state"):
                train.load_state_dict(state["data"])

    @contextlib.contextmanager
    def _restoring(self, what: str):
        """A part of a checked state that still cannot be restored is an error naming its source."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - whatever the part raises, the cause is the state it was given
            raise TrainwiseError(f"'{self._resume_source}' cannot be resumed: restoring {what} failed "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                                 hint="the checkpoint is damaged or belongs to another run: resume the run it came "
                                      "from, or start the run again") from None


def _cb_key(i: int, c: Callback) -> str:
    return f"{i}:{type(c).__name__}"


def _check_precision(precision: str, device: torch.device) -> str:
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp16" and device.type != "cuda":
        raise TrainwiseError(f"precision 'fp16' needs a CUDA device (this run is on {device.type}): float16 "
                             "training needs a grad scaler, which trainwise uses on CUDA only",
                             hint="use --precision bf16 on CPU, or --device cuda")
    return precision
