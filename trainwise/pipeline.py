"""The one path from a validated `RunConfig` and the data to the named parts of a run, and one training run
made of them. Every entry point (fit, resume, restarts, CV folds, search trials, ensemble members, sanity,
lr-find, auto, the estimator) goes through here; nothing else re-reads the config.

    setup_run(cfg, data)  -> RunSetup: prepared data (splits, preprocessing fit on train), loss, model recipe, device
    build_model(setup)    -> the initialized model (starting weights loaded, layers frozen as configured)
    build_batches(setup)  -> train/val/test batches (augmentation on the training batches)
    build_trainer(...)    -> Trainer with loss, optimizer, penalties and callbacks (early stopping, doctor, schedule)
    train_run(setup)      -> RunResult: history, best epoch, best/test metrics, model, diagnostics. Writes nothing;
                             a `RunWriter` passed in (report.writer) is what puts a run on disk.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig
from .console import console as make_console
from .data import PreparedData, RawData, TensorBatches, from_arrays, from_table, load_source, prepare, prepare_dataset, weigh_rows
from .data.augment import Augment, AugmentedBatches, check_images
from .data.batching import check_batch_size
from .data.columns import ColumnRoles
from .data.sources import load_split_files
from .diagnose.doctor import HealthTracker, data_checks, diagnose, trivial_baseline
from .errors import TrainwiseError
from .frames import is_frame
from .models import build_model as build_module
from .models import init_weights, resolve_model
from .models.check import check_model_fits
from .models.summary import summarize
from .models.tabular import MemberLoss
from .models.transfer import freeze, load_initial_weights
from .report.plots import confusion_matrix
from .train import Callback, EarlyStopping, LRSchedule, Penalty, ProgressTable, Trainer, resolve_loss
from .train.auto_settings import resolve_auto
from .train.callbacks import BatchProgress, check_monitor, logged_metrics, resolve_mode, resolve_monitor
from .train.components import SampleWeighted, class_weights, make_loss, output_size, resolve_device, target_kind
from .train.distributed import DistributedTraining, ShardedBatches, World, check_distributed, join, shard_rows
from .train.lr_finder import auto_lr, auto_lr_value  # auto_lr: part of this module's API (sanity, populations)
from .train.metrics import MemberMetrics, MetricAccumulator, load_extra_metrics, per_class_table, per_label_table, resolve_extra_metrics
from .train.transfer import Unfreeze

__all__ = ["RunSetup", "RunResult", "load_raw", "setup_run", "build_model", "build_batches", "build_trainer",
           "train_run", "run_callbacks", "vary", "DATA_OPTIONS", "record_run", "finish_run", "model_for", "auto_lr", "resolve_device",
           "monitor_of", "OK_STATUSES", "check_run", "check_batch_size", "check_distributed"]

OK_STATUSES = ("completed", "early_stopped")  # a run that ended normally: its weights and test split may be used


def monitor_of(cfg: RunConfig) -> tuple[str, str]:
    """The metric that decides "better" and its direction: ``cfg.monitor``, or train/loss without a validation split."""
    monitor = resolve_monitor(cfg.monitor, cfg.task, has_val=cfg.split[1] > 0)
    return monitor, resolve_mode(monitor, cfg.mode)


@dataclass
class RunSetup:
    """Everything a run derives from its config before the first epoch. ``cfg`` has loss and task resolved."""

    cfg: RunConfig
    prep: PreparedData
    loss: str
    kind: str
    recipe: dict
    device: torch.device
    user_model: nn.Module | None = None
    t_start: float = field(default_factory=time.perf_counter)
    world: World | None = None  # this process's rank in a data-parallel job (torchrun), None for one process
    _data_findings: list[dict[str, str]] | None = field(default=None, repr=False)

    @property
    def output_size(self) -> int:
        return output_size(self.loss, self.prep.n_classes, self.prep.target.n_targets)

    def preprocessing(self) -> dict[str, Any]:
        """What preprocess.json holds: how to feed new data to the model (JSON only)."""
        p = self.prep
        image = {"channels": p.input_shape[0], "size": list(p.input_shape[1:])} if len(p.input_shape) == 3 else None
        return {"features": p.preprocessor.state_dict(), "target": p.target.state_dict(), "loss": self.loss,
                "kind": self.kind, "class_names": p.class_names, "target_name": p.target_name, "image": image}

    def class_weights(self) -> torch.Tensor | None:
        """``--class-weight`` as one weight per class (None without it)."""
        cfg, prep = self.cfg, self.prep
        if not cfg.class_weight:
            return None
        if "train" not in prep.arrays:
            raise TrainwiseError("--class-weight needs the training targets in memory; this data is a torch Dataset read batch by batch",
                                 hint="drop --class-weight, or give the data as arrays or a file")
        names = prep.class_names or [str(i) for i in range(prep.n_classes)]
        return class_weights(cfg.class_weight, prep.arrays["train"][1] if prep.soft is None else prep.soft, names)

    def data_findings(self) -> list[dict[str, str]]:
        """The doctor's findings about the data itself (imbalance, train/test copies): computed once per set-up,
        however many runs (restarts) share it."""
        if self._data_findings is None:
            p = self.prep
            self._data_findings = data_checks(p.arrays_for_checks(), p.task, p.class_names)
        return [dict(f) for f in self._data_findings]

    def baseline(self) -> dict[str, float] | None:
        """The trivial model's train metric and loss: majority class / class priors, or the mean (R² 0)."""
        y = self.prep.arrays["train"][1] if "train" in self.prep.arrays else None  # a torch Dataset has no arrays
        return None if y is None else trivial_baseline(y, self.kind, known_loss=self.loss == "mse" and self.cfg.standardize)


def in_memory_name(data: Any) -> str:
    """The ``data`` name a config records for data given in memory: a DataFrame is a table, the rest arrays."""
    return "dataframe" if is_frame(data) else "arrays"


def load_raw(cfg: RunConfig, data: Any = None, y: Any = None, sample_weight: Any = None) -> RawData:
    """The unsplit data a config names (or ``data``/``y`` arrays, or a DataFrame: a table as from a CSV file), with
    ``sample_weight`` (arrays or a DataFrame only) as its rows' weights."""
    if sample_weight is not None:
        return weigh_rows(load_raw(cfg, data, y) if data is not None and not isinstance(data, str) else None, sample_weight, data, cfg)
    if is_frame(data):
        return from_table(data, y, target=cfg.target, missing=cfg.missing, roles=ColumnRoles.of(cfg))
    if data is not None and not isinstance(data, str):
        return from_arrays(data, y)
    options = dict(target=cfg.target, missing=cfg.missing, seed=cfg.seed, data_dir=cfg.data_dir, image_size=cfg.image_size,
                   channels=cfg.channels, na_values=cfg.na_values, roles=ColumnRoles.of(cfg))
    if cfg.val_data or cfg.test_data:
        return load_split_files(cfg.data, cfg.val_data, cfg.test_data, **options)
    return load_source(cfg.data, **options)


def setup_run(cfg: RunConfig, data: Any = None, y: Any = None, *, user_model: nn.Module | None = None,
              raw: RawData | None = None, recipe: dict[str, Any] | None = None, world: World | None = None,
              sample_weight: Any = None) -> RunSetup:
    """Data prepared (split, preprocessing fit on train), loss, model recipe and device for ``cfg``.
    ``raw``: already loaded data (cross-validation passes each fold's rows as its given splits).
    ``recipe``: a checked recipe to use instead of resolving ``cfg.model`` (resume: the run's own model.json).
    ``world``: this rank of a data-parallel job, which joins the job's process group here (its device on CUDA:
    ``cuda:LOCAL_RANK``)."""
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    if isinstance(data, torch.utils.data.Dataset):
        if sample_weight is not None:
            raise TrainwiseError("sample_weight weighs rows of arrays or a DataFrame, not a torch Dataset", hint="give the data as arrays")
        prep = prepare_dataset(data, task=cfg.task, split=cfg.split, seed=cfg.seed)
    else:
        raw = raw or load_raw(cfg, data, y, sample_weight)
        prep = prepare(raw, **cfg.prepare_options())
    if world is not None:
        check_distributed(cfg, prep)
        device = join(world, device, nproc=cfg.nproc)
    resolved = _resolved(cfg, prep)
    loss = resolved["loss"]
    if cfg.class_weight and (prep.task != "classification" or prep.target.multilabel):
        raise TrainwiseError(f"--class-weight {cfg.class_weight} weights classes, but the task is "
                             f"{'multi-label (several label columns)' if prep.target.multilabel else prep.task}",
                             hint="drop --class-weight, or use --task classification")
    cfg = cfg.model_copy(update=resolved)
    if recipe is None:
        recipe = model_recipe(cfg, prep, output_size(loss, prep.n_classes, prep.target.n_targets), target_kind(loss))
    if user_model is not None:
        recipe = {"builder": "python", "class": type(user_model).__qualname__}
    return RunSetup(cfg, prep, loss, target_kind(loss), recipe, device, user_model, t_start, world=world)


def _resolved(cfg: RunConfig, prep: PreparedData) -> dict[str, Any]:
    """What the config's ``auto`` settings (loss, model, batch size, monitor, metrics, ...) are for this data."""
    return {"loss": resolve_loss(cfg.loss, prep.task, prep.n_classes, multilabel=prep.target.multilabel), "task": prep.task,
            **resolve_auto(cfg, prep.task, len(prep.indices["train"]), table=prep.n_numeric is not None),
            "metrics": resolve_extra_metrics(cfg.metrics, task=prep.task, n_classes=prep.n_classes, multilabel=prep.target.multilabel)}


# what decides the prepared data: configs that agree on these can share one set-up (`vary`)
DATA_OPTIONS = ("data", "target", "task", "split", "seed", "standardize", "missing", "image_norm", "data_dir",
                "image_size", "channels", "na_values", "loss", "val_data", "test_data", "exclude", "id_column", "categorical",
                "group_column", "time_column", "many_levels", "robust_scale", "weight_column")


def vary(setup: RunSetup, cfg: RunConfig) -> RunSetup:
    """``setup``'s prepared data under ``cfg``, which changes only how the model is built and trained (dropout, lr,
    ...): the data is shared, not prepared again (stacked search trials). Changing the data is an internal error."""
    prep = setup.prep
    cfg = cfg.model_copy(update=_resolved(cfg, prep))
    changed = [k for k in DATA_OPTIONS if getattr(cfg, k) != getattr(setup.cfg, k)]
    assert not changed, f"vary() cannot change the data options {changed}"
    return replace(setup, cfg=cfg, recipe=model_recipe(cfg, setup.prep, setup.output_size, setup.kind))


def model_recipe(cfg: RunConfig, prep: PreparedData, n_outputs: int, kind: str) -> dict[str, Any]:
    """The recipe of ``cfg.model`` for this data (`models.resolve_model`)."""
    return resolve_model(cfg.model, prep.input_shape, n_outputs, activation=cfg.activation, dropout=cfg.dropout,
                         batch_norm=cfg.batch_norm, n_numeric=prep.n_numeric, output_kind=kind)


def build_model(setup: RunSetup, seed: int, *, load_weights: bool = True) -> tuple[nn.Module, dict[str, Any] | None]:
    """The model for one seed on the run's device, and what fine-tuning loaded/froze (for the summary).
    ``load_weights=False``: a resumed run, whose weights come from its checkpoint."""
    cfg = setup.cfg
    torch.manual_seed(seed)  # model init; the batcher has its own generator seeded the same way
    model = setup.user_model if setup.user_model is not None else init_weights(build_module(setup.recipe), cfg.init)
    info: dict[str, Any] = {}
    if cfg.init_from and load_weights:
        info.update(load_initial_weights(model, cfg.init_from))
    if cfg.train_last or cfg.freeze:
        info["frozen"] = freeze(model, train_last=cfg.train_last, prefixes=cfg.freeze)
        info["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.unfreeze_after:
        info["unfreeze_after"], info["unfreeze_lr_factor"] = cfg.unfreeze_after, cfg.unfreeze_lr_factor
    return model.to(setup.device), info or None


def build_batches(setup: RunSetup, seed: int, *, augment: bool = True) -> dict[str, Any]:
    """Batches per split on the run's device; the training batches shuffled by ``seed`` (and augmented)."""
    cfg = setup.cfg
    batches = setup.prep.batches(kind=setup.kind, device=setup.device, batch_size=cfg.batch_size, seed=seed,
                                 num_workers=cfg.num_workers)
    if setup.world is not None:  # each rank: its share of every global batch, and its rows of the validation split
        batches["train"] = ShardedBatches(batches["train"], setup.world)
        if "val" in batches:
            val = batches["val"]
            rows = shard_rows(len(val.y), setup.world).to(val.X.device)
            batches["val"] = TensorBatches(val.X[rows], val.y[rows], batch_size=val.batch_size, shuffle=False)
    if cfg.augment and augment:
        check_images(setup.prep.input_shape, cfg.augment)
        pre = setup.prep.preprocessor
        batches["train"] = AugmentedBatches(batches["train"], Augment(cfg.augment, mean=pre.mean_, std=pre.std_, seed=seed))
    check_batch_size(cfg.batch_size, batches["train"].num_samples)
    return batches


def check_run(setup: RunSetup) -> None:
    """What `train_run` would find wrong with its parts, found before anything is written (no half-made run
    directory): the model builds (starting weights, frozen layers) and takes two training rows, the batch fits
    the training split, augmentation gets images, optimizer and precision suit the device, the monitor is logged."""
    cfg, prep = setup.cfg, setup.prep
    train = prep.indices["train"]
    check_batch_size(cfg.batch_size, len(train))
    if cfg.augment:
        check_images(prep.input_shape, cfg.augment)
    x = torch.from_numpy(np.ascontiguousarray(prep.arrays["train"][0][:2], dtype=np.float32)) if "train" in prep.arrays \
        else torch.stack([torch.as_tensor(prep.dataset[int(i)][0]) for i in train[:2]])
    model, _ = build_model(setup, cfg.seed)
    check_model_fits(model, x.to(setup.device), setup.recipe, cfg.model, setup.output_size)
    build_trainer(setup, model, [])
    has_val = len(prep.indices.get("val", ())) > 0
    extras = ("penalty",) * bool(cfg.l1 or cfg.l2) + ("grad_norm",) * bool(cfg.clip_norm or cfg.clip_value)
    check_monitor(resolve_monitor(cfg.monitor, cfg.task, has_val=has_val),
                  logged_metrics(setup.kind, val=has_val, extras=extras, val_extras=tuple(cfg.metrics)))


def build_trainer(setup: RunSetup, model: nn.Module, callbacks: list[Callback], *,
                  optimizer: str | None | torch.optim.Optimizer = "config", **overrides: Any) -> Trainer:
    """The Trainer for ``model``: loss, optimizer (``None``: evaluation only), penalties, clipping, precision.
    ``overrides``: Trainer arguments that replace the config's (a stacked population's loss and metrics)."""
    cfg, prep = setup.cfg, setup.prep
    penalty = Penalty(model, l1=cfg.l1, l2=cfg.l2, penalize=cfg.penalize) if cfg.l1 or cfg.l2 else None
    loss: str | nn.Module = setup.loss
    weights = setup.class_weights()
    if weights is not None:
        loss = make_loss(setup.loss, weights).to(setup.device)
    if prep.weights is not None or prep.soft is not None:  # the training batches carry their rows' weights, soft targets
        loss = SampleWeighted(loss if isinstance(loss, nn.Module) else make_loss(setup.loss))
    if setup.recipe.get("builder") == "tabular":  # an efficient ensemble: each member its own loss, the members combined scored
        loss = MemberLoss(loss if isinstance(loss, nn.Module) else make_loss(setup.loss), smoothing=setup.recipe["smoothing"])
        overrides = {"metrics": MemberMetrics} | overrides
    eval_metrics = None
    if cfg.metrics:
        load_extra_metrics()
        eval_metrics = partial(MetricAccumulator, extra_metrics=tuple(cfg.metrics), n_classes=prep.n_classes,
                               target_mean=prep.target.mean if prep.task == "regression" else 0.0)
    options = dict(loss=loss, eval_metrics=eval_metrics, optimizer=cfg.optimizer if optimizer == "config" else optimizer,
                   lr=1e-3 if cfg.lr == "auto" else cfg.lr, momentum=cfg.momentum,
                   nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, kind=setup.kind, callbacks=callbacks,
                   device=setup.device, target_std=setup.prep.target.std, penalty=penalty, accumulate=cfg.accumulate,
                   clip_norm=cfg.clip_norm, clip_value=cfg.clip_value, precision=cfg.precision,
                   compile=cfg.compile and cfg.compile_mode)
    return Trainer(model, **(options | overrides))


def model_for(cfg: RunConfig) -> tuple[nn.Module, RunSetup]:
    """The model a config would train (initialized with its seed, starting weights loaded and layers frozen as
    configured), and the data set-up it was sized for."""
    setup = setup_run(cfg)
    model, _ = build_model(setup, cfg.seed)
    return model, setup


@dataclass
class RunResult:
    """One finished training run, in memory: the trainer (model, history, status), its early-stopping tracker,
    batches, the test metrics (once `evaluate_test` ran) and the doctor's diagnoses."""

    setup: RunSetup
    trainer: Trainer
    stopper: EarlyStopping
    batches: dict[str, Any]
    seed: int
    transfer: dict[str, Any] | None = None
    test: dict[str, float] | None = None
    confusion: list[list[int]] | None = None
    per_class: list[dict[str, Any]] | None = None  # the test split's precision / recall / F1 / support per class
    test_predictions: np.ndarray | None = None  # the test split's predictions (`evaluate_test`), for the writer's figures
    diagnostics: list[dict[str, str]] = field(default_factory=list)

    @property
    def history(self) -> list[dict[str, float]]:
        return self.trainer.history

    @property
    def model(self) -> nn.Module:
        return self.trainer.model

    @property
    def ok(self) -> bool:
        return self.trainer.status in OK_STATUSES

    @property
    def best_epoch(self) -> int | None:
        if self.trainer.status == "failed":
            return self.stopper.best_epoch_ or None  # None when no epoch was finite
        return self.stopper.best_epoch_ or (self.trainer.epoch or None)

    @property
    def best(self) -> dict[str, float]:
        """The best epoch's validation metrics (training metrics when there is no validation split)."""
        row = self.history[self.best_epoch - 1] if self.best_epoch else {}
        has_val = "val" in self.batches
        return {k: v for k, v in row.items() if k.startswith("val/") or (not has_val and k.startswith("train/"))}

    @property
    def health(self) -> HealthTracker | None:
        return next((c for c in self.trainer.callbacks if isinstance(c, HealthTracker)), None)

    def evaluate_test(self, *, trained: bool = True) -> dict[str, float] | None:
        """Look at the test split once, on the final (best) weights; classification also gets its confusion matrix.
        Only a run that ended normally is tested (``trained=False``: a model assembled from trained runs)."""
        if (trained and not self.ok) or "test" not in self.batches:
            return None
        self.test = self.trainer.evaluate(self.batches["test"], prefix="test")
        if isinstance(self.batches["test"], TensorBatches):
            test = self.batches["test"]
            out = self.trainer.predict(test.X)
            if self.setup.kind == "regression":
                self.test_predictions = out.reshape(len(out), -1).squeeze(1).cpu().numpy()  # several targets: a column each
            elif self.setup.kind == "multilabel":  # no confusion matrix of classes: a table of the labels
                self.per_class = per_label_table((out > 0).cpu().numpy(), test.y.cpu().numpy(), self.class_names)
            else:
                pred = out.argmax(-1) if self.setup.kind == "multiclass" else (out[:, 0] > 0).long()
                self.test_predictions = pred.cpu().numpy()
                self.confusion = confusion_matrix(test.y.reshape(-1).long().cpu().numpy(), self.test_predictions,
                                                  len(self.class_names))
                self.per_class = per_class_table(self.confusion, self.class_names)
        return self.test

    @property
    def base_lr(self) -> float | None:
        """The learning rate the run was asked to train at (the schedule's peak): the config's, or with ``lr: auto``
        the LR finder's suggestion (the default when it had none); a warmup's first epoch shows less in metrics.csv."""
        lr, found = self.setup.cfg.lr, self.trainer.lr_finder
        if lr != "auto":
            return lr
        if found is not None:
            return auto_lr_value(found)
        # a resumed run (the finder ran before the interruption): the rate its schedule started from, which torch's
        # schedulers keep in the optimizer state as initial_lr; without a schedule, the rate it trained at
        initial = self.trainer.optimizer.param_groups[0].get("initial_lr") if self.trainer.optimizer is not None else None
        return initial if initial is not None else self.history[0]["lr"] if self.history else None

    @property
    def class_names(self) -> list[str]:
        prep = self.setup.prep
        return prep.class_names or [str(i) for i in range(prep.n_classes or 2)]

    def summary(self, extra: dict[str, Any] | None = None, previous_tests: int = 0) -> dict[str, Any]:
        """The run's summary (what summary.json holds); ``previous_tests`` counts earlier looks at its test split."""
        s, trainer, cfg = self.setup, self.trainer, self.setup.cfg
        return {
            "status": trainer.status, "stop_reason": trainer.stop_reason, "epochs_run": trainer.epoch,
            "diverged_at": dict(zip(("epoch", "batch"), trainer.non_finite_at)) if trainer.non_finite_at else None,
            "best_epoch": self.best_epoch, "monitor": self.stopper.monitor, "best": self.best,
            "test": self.test, "test_evaluations": previous_tests + (self.test is not None),
            "seed": self.seed, "wall_time_s": round(time.perf_counter() - s.t_start, 3),
            "train_samples_per_s": round(trainer.train_samples / trainer.train_time_s, 1) if trainer.train_time_s else None,
            "data": s.prep.describe(),
            "model": {"spec": cfg.model if s.user_model is None else s.recipe["class"], "recipe": s.recipe,
                      "parameters": sum(p.numel() for p in trainer.model.parameters())},
            "loss": s.loss, "optimizer": cfg.optimizer, "lr": self.base_lr,
            "lr_finder": trainer.lr_finder.to_dict() if trainer.lr_finder else None,
            "device": str(s.device), "diagnostics": self.diagnostics, "transfer": self.transfer,
            "augment": cfg.augment, "test_confusion": self.confusion, "test_per_class": self.per_class,
            "class_weight": None if (w := s.class_weights()) is None else dict(zip(self.class_names, [round(v, 6) for v in w.tolist()])),
            **(extra or {}),
            "versions": {"trainwise": _version(), "torch": torch.__version__, "python": platform.python_version()},
        }


def train_run(setup: RunSetup, seed: int | None = None, *, callbacks: list[Callback] | tuple = (), writer=None,
              console=None, resume_state: dict | None = None, resume_source: str = "the checkpoint",
              checkpoint: bool | None = None, evaluate_test: bool = True) -> RunResult:
    """Build model, batches and trainer for ``seed`` (default: the config's), train, diagnose, and look at the
    test split once (``evaluate_test``). ``writer`` (a `RunWriter`) adds its file callbacks and writes the run
    at the end; without one nothing touches the disk. ``checkpoint`` overrides ``cfg.checkpoint``.
    ``resume_state`` (read from ``resume_source``, named in its errors) continues a run exactly."""
    cfg = setup.cfg
    seed = cfg.seed if seed is None else seed
    model, transfer = build_model(setup, seed, load_weights=resume_state is None)
    batches = build_batches(setup, seed)
    check_model_fits(model, batches["train"].head(2), setup.recipe, cfg.model, setup.output_size)
    show = not cfg.quiet
    if show and seed == cfg.seed and resume_state is None:
        console = console or make_console()
        console.print(str(summarize(model, setup.prep.input_shape, batch_size=cfg.batch_size, device=setup.device)), markup=False)
        for note in setup.prep.notes:  # what the data loading decided on its own (columns left out, rows dropped, ...)
            console.print(f"note: {note}", markup=False)
    monitor = resolve_monitor(cfg.monitor, cfg.task, has_val="val" in batches)
    if setup.world is not None:  # the ranks train as one: before the writer's callbacks, which save its agreed stop
        train = batches["train"]
        shards = train.batches if isinstance(train, AugmentedBatches) else train
        callbacks = [*callbacks, DistributedTraining(setup.world, shards, seed)]
    stopper, cbs = run_callbacks(setup, monitor, callbacks, writer, checkpoint=checkpoint, show=show, console=console)
    if show and (console := console or make_console()).is_terminal:  # a bar inside slow epochs (never in a pipe or a log)
        cbs.append(BatchProgress(console))
    trainer = build_trainer(setup, model, cbs)
    trainer.transfer = transfer
    if resume_state is not None:
        trainer.load_state_dict(resume_state, source=resume_source)
    elif cfg.lr == "auto":
        auto_lr(trainer, batches["train"], console=console if show else None)
    result = RunResult(setup, trainer, stopper, batches, seed, transfer)
    if writer is not None:
        writer.write_recipe(setup.recipe)
    try:
        trainer.fit(batches["train"], batches.get("val"), epochs=cfg.epochs)
    finally:
        record_run(result, writer)
    return finish_run(result, evaluate_test=evaluate_test)


def run_callbacks(setup: RunSetup, monitor: str, callbacks, writer, *, checkpoint: bool | None,
                     schedule: bool = True, show: bool = False, console=None) -> tuple[EarlyStopping, list[Callback]]:
    """A run's callbacks in their order: early stopping, the doctor, the schedule, unfreezing, the caller's,
    the live table, and last the writer's files (its checkpoint holds every other callback's state)."""
    cfg = setup.cfg
    stopper = EarlyStopping(monitor, cfg.mode, cfg.patience if cfg.early_stopping else None, cfg.min_delta, cfg.restore_best,
                            rule=cfg.early_stop_rule)
    cbs: list[Callback] = [stopper, HealthTracker()]
    if cfg.schedule != "none" and schedule:
        cbs.append(LRSchedule(cfg.schedule, step_size=cfg.step_size, gamma=cfg.gamma, warmup_epochs=cfg.warmup_epochs,
                              monitor=monitor, mode=cfg.mode, patience=cfg.schedule_patience))
    if cfg.unfreeze_after:
        cbs.append(Unfreeze(cfg.unfreeze_after, cfg.unfreeze_lr_factor))
    cbs += list(callbacks)
    if show:
        cbs.append(ProgressTable(monitor, cfg.mode, console=console))
    if writer is not None:
        cbs += writer.callbacks(stopper, checkpoint=cfg.checkpoint if checkpoint is None else checkpoint)
    return stopper, cbs


def record_run(result: RunResult, writer) -> None:
    """What a run that ended (or failed) leaves in its writer's folder: weights and curves, and for a failed
    run its metrics and a summary saying what went wrong (no weights: they are not a trained model)."""
    trainer = result.trainer
    if writer is not None and trainer.history and trainer.status not in ("not_started", "running"):
        # "running" here: fit failed before its first epoch (e.g. a resume that did not fit)
        writer.write_model(result, weights=trainer.status != "failed")
    if trainer.status == "failed":
        _diagnose(result)
        if writer is not None:
            writer.write_summary(result, result.summary())


def finish_run(result: RunResult, *, evaluate_test: bool = True) -> RunResult:
    """Look at the test split once (``evaluate_test``) and diagnose the run."""
    if evaluate_test:
        result.evaluate_test()
    _diagnose(result)
    return result


def _diagnose(result: RunResult) -> None:
    s, trainer, stopper = result.setup, result.trainer, result.stopper
    tracker = result.health
    result.diagnostics = diagnose(trainer.history, tracker.stats() if tracker else None, kind=s.kind,
                                  baseline=s.baseline(),
                                  early_stopped_at=stopper.best_epoch_ if trainer.status == "early_stopped" else None,
                                  restore_best=s.cfg.restore_best)
    if "train" in s.prep.arrays:
        result.diagnostics += s.data_findings()


def _version() -> str:
    try:
        return version("trainwise")
    except PackageNotFoundError:
        return "unknown"
