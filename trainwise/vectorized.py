"""A population's members trained as one stacked model, through the one `Trainer` loop.

`train_stacked(setup, seeds)` builds each member as it would be built alone (`pipeline.build_model` with its
seed), stacks them (`train.stacked`), and trains the stack with one Trainer whose loss is the members' own
losses, whose optimizer steps every member's weights at once, and whose metrics are kept per member. Each
member keeps a record of its own, a `Trainer` that never steps (it holds the member's model, history,
callbacks and status): after every epoch its weights are copied out of the stack and its epoch recorded, so
its early stopping, doctor, metrics.csv and so on see exactly what they would see alone. A member that stops
leaves the stack (which shrinks), keeping its best weights. The results are ordinary `RunResult`s.

`stack_reason(setup, ...)` says why a population cannot be stacked (None: it can); the caller then trains
the members one by one and says why.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .data import TensorBatches
from .diagnose.doctor import HealthTracker
from .errors import TrainwiseError
from .models.builders import layer_rates
from .models.summary import summarize
from .pipeline import RunResult, RunSetup, auto_lr, build_batches, build_model, build_trainer, finish_run, record_run, run_callbacks
from .runs import check_fields, damaged, is_int, is_number
from .train import Callback, Checkpoint, LRSchedule, Trainer
from .train.callbacks import resolve_monitor
from .train.components import make_loss
from .train.member_steps import MemberSteps, StackedPenalty, clip_members
from .train.stacked import LAYOUT, PopulationLoss, PopulationMetrics, StackedBatches, StackedMLP, loss_reason, reindex_optimizer, upgrade_layout
from .train.state import check_trainer_state

__all__ = ["train_stacked", "stack_reason", "PER_MEMBER"]

_PER_STEP_HOOKS = ("on_after_backward", "on_batch_end")
_DRIVER_KEY = "0:_Driver"  # the population part of a stacked population's checkpoint (its first callback's state)
_VAL_ELEMENTS = 1 << 24  # a validation batch of the whole population holds at most this many input numbers


# what members of one stacked population may differ in: each member's own learning rate, weight decay and
# momentum (`MemberSteps`), dropout rate (its own masks anyway) and L1/L2 strengths (`StackedPenalty`); restarts
# differ in their training seed, which is not the config's (that one also decides the data split)
PER_MEMBER = ("lr", "weight_decay", "momentum", "dropout", "l1", "l2")


def stack_reason(setups: Sequence[RunSetup], *, callbacks: Sequence[Sequence[Callback]] = (), checkpoint: bool = False,
                 tensorboard: bool = False) -> str | None:
    """Why these members (their set-ups over one prepared data set) cannot be trained as one stacked model,
    or None. ``callbacks``: each member's own."""
    setup = setups[0]
    cfg = setup.cfg
    if setup.recipe.get("builder") == "tabular":
        return f"a tabular model is already {setup.recipe['k']} members trained at once (TabM); restarts of it train one by one"
    if setup.user_model is not None or setup.recipe.get("builder") != "mlp":
        return f"only the built-in mlp and linear models are vectorized (this run's model is {cfg.model})"
    if "train" not in setup.prep.arrays:
        return "the data is a torch Dataset read batch by batch"
    first = cfg.model_dump(exclude=set(PER_MEMBER))
    for s in setups[1:]:
        other = s.cfg.model_dump(exclude=set(PER_MEMBER))
        differ = sorted(k for k in first if first[k] != other[k])
        if differ:
            return f"the members differ in {', '.join(differ)} (only {', '.join(PER_MEMBER)} may differ)"
    if len({tuple(p > 0 for p in layer_rates(s.recipe["dropout"], len(s.recipe["hidden"]))) for s in setups}) > 1:
        return "some members have dropout where others have none (their layers differ)"
    reasons = [(cfg.augment, "augmentation"),
               (cfg.accumulate > 1, "gradient accumulation"), (cfg.precision != "32", f"precision {cfg.precision}"),
               (cfg.compile, "--compile"), (cfg.init_from or cfg.freeze or cfg.train_last or cfg.unfreeze_after, "fine-tuning"),
               (checkpoint, "per-member checkpoints"), (tensorboard, "TensorBoard logs"),
               (setup.prep.task == "regression" and setup.prep.target.n_targets > 1, "several target columns"),
               (setup.prep.target.multilabel, "several label columns"), (setup.prep.weights is not None, "sample weights"),
               (setup.prep.soft is not None, "training on class probabilities (soft targets)")]
    for flag, why in reasons:
        if flag:
            return f"{why} is not vectorized yet"
    weights = setup.class_weights()
    reason = loss_reason(make_loss(setup.loss, weights))
    if reason is not None:
        return reason
    for cbs in callbacks:
        for c in cbs:
            if any(getattr(type(c), h) is not getattr(Callback, h) for h in _PER_STEP_HOOKS):
                return f"callback {type(c).__name__} acts on every optimizer step"
    return None


class _Member:
    def __init__(self, seed: int, trainer: Trainer, stopper, batches: dict[str, Any], writer):
        self.seed, self.trainer, self.stopper, self.batches, self.writer = seed, trainer, stopper, batches, writer
        self.health = next((c for c in trainer.callbacks if isinstance(c, HealthTracker)), None)

    def pairs(self, state: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(its model's tensor, the stack's view of it) for each of its weights and buffers, ``state`` being its
        slice of the stack (`StackedMLP.member_state`)."""
        own = self.trainer.model.state_dict(keep_vars=True)
        if set(own) != set(state):
            raise TrainwiseError(f"the stacked model's member state {sorted(state)} does not match the member's {sorted(own)}",
                                 hint="this is a bug in trainwise: train with --no-vectorize and report it")
        return [(own[name], v) for name, v in state.items()]


def train_stacked(setups: Sequence[RunSetup], seeds: Sequence[int], *, writers: Sequence[Any] | None = None,
                  callbacks: Sequence[Sequence[Callback]] | None = None, evaluate_test: bool = False,
                  console=None, checkpoint: str | Path | None = None, resume_state: dict | None = None,
                  resume_source: str = "the checkpoint") -> list[RunResult]:
    """Train one member per (set-up, seed) as one stacked model; each member's `RunResult` (and its files,
    through its writer) as if it had been trained alone. The set-ups share one prepared data set (restarts:
    the same set-up; search trials: `pipeline.vary`); ``callbacks``: each member's own. See the module docstring.

    ``checkpoint``: after every epoch the whole population's state is written to this file (atomically, off
    the training thread: `Checkpoint`): the stack, its optimizer and schedule, every member's record (its
    weights, early-stopping state and history; a stopped member's best weights), which members are still in
    the stack, their shuffle and dropout generators and their own learning rates. ``resume_state`` (that
    file read back, from ``resume_source``) continues the population exactly where it was."""
    setup = setups[0]
    cfg, device = setup.cfg, setup.device
    writers = list(writers) if writers is not None else [None] * len(seeds)
    callbacks = list(callbacks) if callbacks is not None else [()] * len(seeds)
    saved = _saved_population(resume_state, len(seeds), resume_source) if resume_state is not None else None
    models, generators = [], []
    for member_setup, s in zip(setups, seeds):
        model, _ = build_model(member_setup, s)
        models.append(model)
        generators.append(_generator_after_init(device))
    members: list[_Member] = []
    plateau = cfg.schedule == "plateau"
    shared = build_batches(setup, seeds[0])  # validation and test batches: the same for every member
    monitor = resolve_monitor(cfg.monitor, cfg.task, has_val="val" in shared)
    for member_setup, s, model, writer, cbs in zip(setups, seeds, models, writers, callbacks):
        # the plateau schedule follows each member's own metric: it runs in the member's record (below)
        stopper, cbs = run_callbacks(member_setup, monitor, cbs, writer, checkpoint=False, schedule=plateau)
        batches = {**shared, "train": TensorBatches(shared["train"].X, shared["train"].y, batch_size=cfg.batch_size, seed=s)}
        record = build_trainer(member_setup, model, cbs)
        if saved is not None:  # its record as it was (restored into the trainer when the population starts)
            record.load_state_dict(saved["members"][len(members)], source=f"{resume_source} (member {len(members)}, seed {s})")
        elif member_setup.cfg.lr == "auto":  # each member's own range test, as alone: its dropout draws from the
            with _global_rng(generators[len(members)], device):  # RNG as it was after its init (restored after)
                auto_lr(record, batches["train"], console=None if cfg.quiet else console)
        members.append(_Member(s, record, stopper, batches, writer))
        if writer is not None:
            writer.write_recipe(member_setup.recipe)
    if console is not None and not cfg.quiet:
        console.print(str(summarize(models[0], setup.prep.input_shape, batch_size=cfg.batch_size, device=device)), markup=False)
        console.print(f"training {len(seeds)} members (seeds {seeds[0]}..{seeds[-1]}) as one stacked model")
    # the members in the stack: all of them, or (resuming) those that had not stopped
    active = list(range(len(seeds))) if saved is None else saved["active"]
    if not active:  # resumed after every member had stopped: nothing is left to train, each ends as it did
        results = [RunResult(m_setup, m.trainer, m.stopper, m.batches, m.seed) for m_setup, m in zip(setups, members)]
        for m, ended in zip(members, saved["ended"]):
            m.trainer.begin(m.batches["train"], cfg.epochs)
            _end_again(m.trainer, ended)
        for r, m in zip(results, members):
            record_run(r, m.writer)
        return [finish_run(r, evaluate_test=evaluate_test) for r in results]
    stacked = StackedMLP([models[i] for i in active], [generators[i] for i in active]).to(device)
    train = shared["train"]
    train = StackedBatches(train.X, train.y, batch_size=cfg.batch_size, seeds=[seeds[i] for i in active])
    val = shared.get("val")
    if val is not None:
        per_row = math.prod(val.X.shape[1:]) * len(active)
        val = StackedBatches(val.X, val.y, batch_size=max(1, min(val.batch_size, _VAL_ELEMENTS // per_row)),
                             seeds=[seeds[i] for i in active], shuffle=False)
    # members with their own lr / weight decay / momentum (SGD's and RMSprop's; the one-cycle schedule sets it)
    with_momentum = cfg.optimizer in ("sgd", "rmsprop") and cfg.schedule != "onecycle"
    lrs = [m.trainer.optimizer.param_groups[0]["lr"] for m in members]  # the config's, or the LR finder's
    own = plateau or cfg.lr == "auto" or len({(lr, s.cfg.weight_decay, s.cfg.momentum if with_momentum else 0) for lr, s in zip(lrs, setups)}) > 1
    setups_in = [setups[i] for i in active]
    penalties = [(s.cfg.l1, s.cfg.l2) for s in setups]
    penalty = StackedPenalty(stacked, l1=[penalties[i][0] for i in active], l2=[penalties[i][1] for i in active],
                             penalize=cfg.penalize) if any(a or b for a, b in penalties) else None
    driver = _Driver(stacked, train, val, members, active, ended=saved["ended"] if saved is not None else None,
                     console=None if cfg.quiet else console, monitor=monitor, penalty=penalty, plateau=plateau)
    pop_callbacks: list[Callback] = [driver]
    if cfg.schedule not in ("none", "plateau"):  # the same schedule for every member: one, on the stack's optimizer
        pop_callbacks.append(LRSchedule(cfg.schedule, step_size=cfg.step_size, gamma=cfg.gamma,
                                        warmup_epochs=cfg.warmup_epochs, monitor=monitor, mode=cfg.mode))
    if checkpoint is not None:  # last: it saves every other callback's state
        pop_callbacks.append(Checkpoint(Path(checkpoint).parent, name=Path(checkpoint).name.removesuffix(".safetensors")))
    weights = setup.class_weights()  # --class-weight: each member's loss weighted as alone
    pop_loss = PopulationLoss(make_loss(setup.loss, None if weights is None else weights.to(device)))
    pop = build_trainer(setup, stacked, pop_callbacks, loss=pop_loss, penalty=penalty, clip=clip_members,
                        metrics=lambda kind, dev, target_std: PopulationMetrics(kind, dev, target_std=target_std, size=stacked.size),
                        eval_metrics=lambda kind, dev, target_std: PopulationMetrics(  # validation: also the --metrics
                            kind, dev, target_std=target_std, size=stacked.size, extra_metrics=tuple(cfg.metrics),
                            n_classes=setup.prep.n_classes, target_mean=setup.prep.target.mean),
                        **({"lr": 1.0, "weight_decay": 0.0} | ({"momentum": 1.0} if with_momentum else {}) if own else {}))
    if own:  # the stack steps at lr 1 (times the schedule's factor); each member's step is scaled by its own lr
        driver.steps = MemberSteps(pop.optimizer, lr=[lrs[i] for i in active], weight_decay=[s.cfg.weight_decay for s in setups_in],
                                   momentum=[s.cfg.momentum for s in setups_in] if with_momentum else None,
                                   decoupled=cfg.optimizer == "adamw",
                                   nesterov=cfg.nesterov and cfg.optimizer == "sgd" and with_momentum)  # RMSprop has none
    if resume_state is not None:
        if saved.get("layout", 1) < LAYOUT:  # written before the stacked weights were held as (K, in, out)
            resume_state = upgrade_layout(resume_state, stacked, pop.optimizer)
        pop.load_state_dict(resume_state, source=resume_source)
    results = [RunResult(m_setup, m.trainer, m.stopper, m.batches, m.seed) for m_setup, m in zip(setups, members)]
    try:
        pop.fit(train, val, epochs=cfg.epochs)
    finally:
        for r, m in zip(results, members):
            record_run(r, m.writer)
    return [finish_run(r, evaluate_test=evaluate_test) for r in results]


def _saved_population(state: Any, size: int, source: str) -> dict[str, Any]:
    """The population part of a population checkpoint (its `_Driver`'s state), checked against ``size`` members."""
    part = state.get("callbacks", {}).get(_DRIVER_KEY) if isinstance(state, dict) and isinstance(state.get("callbacks"), dict) else None
    if not isinstance(part, dict):
        raise damaged(source, "it holds no population state (it is not the checkpoint of a stacked population)")
    check_fields(part, {"active": (lambda v: isinstance(v, list) and all(is_int(i) for i in v), "a list of member indices"),
                        "members": (lambda v: isinstance(v, list) and all(isinstance(m, dict) for m in v), "a list of member states"),
                        "ended": (lambda v: isinstance(v, list) and all(e is None or isinstance(e, dict) for e in v),
                                  "a list of null or how a member ended"),
                        "dropout": (lambda v: isinstance(v, list) and all(isinstance(t, torch.Tensor) for t in v),
                                    "a list of generator states"),
                        "lrs": (lambda v: v is None or (isinstance(v, list) and all(is_number(x) for x in v)),
                                "null or a list of learning rates"),
                        "layout": (lambda v: is_int(v) and 1 <= v <= LAYOUT, f"a layout from 1 to {LAYOUT}")},
                 path=source, where="population.", optional=["layout"])  # (absent: layout 1, written before 2026-12-07)
    if len(part["members"]) != size or len(part["ended"]) != size:
        raise damaged(source, f"it holds {len(part['members'])} members, but this population has {size}",
                      "the checkpoint belongs to another run (another --restarts): resume the run it came from, or start again")
    active = part["active"]
    if active != sorted(set(active)) or any(not 0 <= i < size for i in active) \
            or any((part["ended"][i] is None) != (i in active) for i in range(size)):
        raise damaged(source, f"its active members {active} do not match the members that ended")
    for i, m in enumerate(part["members"]):
        check_trainer_state(m, source=f"{source} (member {i})")
    return part


def _end_again(trainer: Trainer, ended: dict[str, Any]) -> None:
    """A resumed member that had left the stack (its record restored) ends as it did."""
    if ended.get("non_finite_at"):
        trainer.non_finite_at = tuple(ended["non_finite_at"])
    if ended["status"] == "failed":
        trainer.fail(ended["reason"])
    trainer.end()


def _generator_after_init(device: torch.device) -> torch.Generator:
    """A generator in the state torch's global one has now (just after a member's weights were drawn): the
    member's dropout masks come from it, as they would from the global generator if it trained alone."""
    g = torch.Generator(device=device)
    g.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return g


@contextlib.contextmanager
def _global_rng(generator: torch.Generator, device: torch.device):
    """torch's global generator (of ``device``) in ``generator``'s state for a while, then as it was."""
    if device.type == "cuda":
        get, put = (lambda: torch.cuda.get_rng_state(device)), (lambda state: torch.cuda.set_rng_state(state, device))
    else:
        get, put = torch.get_rng_state, torch.set_rng_state
    saved = get()
    put(generator.get_state())
    try:
        yield
    finally:
        put(saved)


class _Driver(Callback):
    """Runs the members' records from the stack's loop: their epochs start and end with the stack's; a member
    whose callbacks stop it leaves the stack; when none is left the stack stops."""

    def __init__(self, stacked: StackedMLP, train: StackedBatches, val: StackedBatches | None, members: list[_Member],
                 active: list[int], *, ended: list[dict | None] | None = None, console=None, monitor: str = "val/loss",
                 penalty: StackedPenalty | None = None, plateau: bool = False):
        self.stacked, self.train, self.val, self.members = stacked, train, val, list(members)
        self.active = [self.members[i] for i in active]  # the members in the stack, in its order
        self.ended = list(ended) if ended is not None else [None] * len(members)  # resumed: how each had left the stack
        self.console, self.monitor, self._step0, self._hooks = console, monitor, 0, []
        self.penalty = penalty
        self.plateau = plateau  # each member's plateau schedule runs in its record and sets its LR
        self.steps: MemberSteps | None = None  # the members' own lr / weight decay / momentum (set with the optimizer)
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (a member's tensor, the stack's view)

    def on_fit_start(self, trainer: Trainer) -> None:
        for m, ended in zip(self.members, self.ended):
            m.trainer.begin(m.batches["train"], trainer.max_epochs, steps_per_epoch=trainer.steps_per_epoch)
            if ended is not None:  # resumed: a member that had left the stack ends again as it did
                _end_again(m.trainer, ended)

    def state_dict(self) -> dict[str, Any]:
        """Every member's record, which are still in the stack (and how the others ended), the stacked members'
        dropout generators and own learning rates: with the stack's own state, an exact resume."""
        return {"active": [self.members.index(m) for m in self.active],
                "members": [m.trainer.state_dict() for m in self.members],
                "ended": [None if m in self.active else {"status": m.trainer.status, "reason": m.trainer.stop_reason,
                                                         "non_finite_at": list(m.trainer.non_finite_at or []) or None}
                          for m in self.members],
                "dropout": [g.get_state() for g in self.stacked.generators],
                "lrs": list(self.steps.lrs) if self.steps is not None else None, "layout": LAYOUT}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # (which members, and their records, were restored when the population was built: `train_stacked`)
        if len(state["dropout"]) != self.stacked.size:
            raise ValueError(f"{len(state['dropout'])} dropout generator states for {self.stacked.size} stacked members")
        for g, s in zip(self.stacked.generators, state["dropout"]):
            g.set_state(s)
        if self.steps is not None and state.get("lrs") is not None:
            for k, lr in enumerate(state["lrs"]):
                self.steps.set_lr(k, lr)

    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None:
        self._step0, self._sample, self._norms = trainer.step, True, None
        for m in self.active:
            m.trainer.start_epoch()
        if all(m.health is not None for m in self.active):  # the doctor's activation sample, split per member
            self._hooks = [module.register_forward_hook(self._observer(name)) for name, module in self.stacked.activations()]

    def _observer(self, name: str):
        def hook(module, _inputs, out):
            for j, m in enumerate(self.active):
                m.health.observe(name, module, out[j])
        return hook

    def _unhook(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def on_after_backward(self, trainer: Trainer, *, loss: torch.Tensor) -> None:
        if self._sample:  # the doctor's gradient sample: the first step of each epoch, every member at once
            self._sample, self._norms = False, self.stacked.weight_grad_norms()
            self._unhook()

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        stopped, n = [], self.train.X.shape[0]
        # member j's values (``name[j]`` -> name) go to its record; the stack's own history keeps the population's
        # means only
        own: list[dict[str, float]] = [{} for _ in self.active]
        for k in [k for k in logs if k.endswith("]")]:
            name, _, j = k[:-1].rpartition("[")
            own[int(j)][name] = logs.pop(k)
        if self._pairs is None:  # (the stack's views are the same tensors until it shrinks: `_keep`)
            self._pairs = [pair for j, m in enumerate(self.active) for pair in m.pairs(self.stacked.member_state(j))]
        with torch.no_grad():  # each member's weights copied out of the stack, as `load_state_dict` would, without
            for dst, src in self._pairs:  # its per-call bookkeeping (this runs for every member every epoch)
                dst.copy_(src)
        for j, m in enumerate(self.active):
            t = m.trainer
            lr = logs["lr"] * (self.steps.lr_of(j) if self.steps is not None else 1.0)
            row = {"epoch": epoch, "lr": lr}
            row |= {k: v for k, v in own[j].items() if not k.endswith("/finite_batches")
                    and not (k == "train/penalty" and not self.penalty.penalized(j))}
            row["time/epoch_s"] = logs["time/epoch_s"]
            broke = own[j].get("train/finite_batches")
            if broke is not None and t.non_finite_at is None:
                t.non_finite_at = (epoch, int(broke) + 1)
            t.step += trainer.step - self._step0
            t.train_time_s, t.train_samples = trainer.train_time_s, t.train_samples + n
            for g in t.optimizer.param_groups:  # its record shows the LR it trained with
                g["lr"] = lr
            if self._norms is not None and m.health is not None:
                m.health.record_grad_norms(self._norms[:, j])
            t.record_epoch(row)
            if self.plateau:  # its record's plateau schedule may have lowered its LR for the next epoch
                self.steps.set_lr(j, t.optimizer.param_groups[0]["lr"])
            if t.stopping:
                t.end()
                stopped.append(j)
                if self.console is not None:
                    self.console.print(f"seed {m.seed}: {t.status} after epoch {epoch}: {t.stop_reason}")
        if self.console is not None:
            self._show(epoch, logs)
        if stopped:
            keep = [j for j in range(len(self.active)) if j not in stopped]
            if not keep:
                trainer.request_stop("every member stopped")
                self.active = []  # (its checkpoint: no member left in the stack)
            else:
                self._keep(trainer, keep)

    def _keep(self, trainer: Trainer, keep: list[int]) -> None:
        old, size = list(self.stacked.parameters()), self.stacked.size
        self.stacked.keep(keep)
        self.train.keep(keep)
        if self.val is not None:
            self.val.keep(keep)
        reindex_optimizer(trainer.optimizer, old, list(self.stacked.parameters()), keep, size)
        for part in (self.steps, self.penalty):
            if part is not None:
                part.keep(keep)
        self.active = [self.active[j] for j in keep]
        self._pairs = None  # new, smaller stacked tensors

    def on_fit_end(self, trainer: Trainer) -> None:
        self._unhook()
        for m in self.active:
            if trainer.status == "interrupted":
                m.trainer.end(interrupted=trainer.ended_by)
            elif trainer.status == "failed" and trainer.ended_by is not None:
                m.trainer.end(error=trainer.ended_by)
            else:
                m.trainer.end()
        self.active = []

    def _show(self, epoch: int, logs: dict[str, float]) -> None:
        values = [(m.trainer.history[-1].get(self.monitor), m.seed) for m in self.active if m.trainer.history]
        values = [(v, s) for v, s in values if v is not None and math.isfinite(v)]
        lr = "" if self.steps is not None else f"  lr {logs['lr']:.2e}"
        line = f"epoch {epoch:>4}: {len(self.active)} members{lr}  {logs['time/epoch_s']:.2f}s"
        if values:
            best = (max if self.active[0].stopper.mode == "max" else min)(values)
            line += f"  best {self.monitor} {best[0]:.4g} (seed {best[1]})"
        self.console.print(line)
