"""The one-call API: ``fit`` (data -> splits -> model -> Trainer -> run directory); ``evaluate`` and ``predict``
(from `inference`) use a saved run."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import RunConfig, load_config
from .data import (
    PreparedData,
    RawData,
    TensorBatches,
    from_arrays,
    load_source,
    prepare,
    prepare_dataset,
)
from .diagnose.doctor import HealthTracker, data_checks, diagnose
from .errors import TrainwiseError
from .inference import check_model_fits, evaluate, predict
from .models import build_model, init_weights, resolve_model
from .models.transfer import Unfreeze, freeze, load_initial_weights
from .runs import (
    atomic_write,
    load_checkpoint,
    new_run_dir,
    save_artifacts,
    write_json,
    write_metrics_csv,
)
from .train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    LRSchedule,
    MetricsCSV,
    Penalty,
    ProgressTable,
    Trainer,
    resolve_loss,
)
from .train.components import output_size, target_kind
from .train.metrics import main_metric

__all__ = ["fit", "evaluate", "predict", "FitResult", "resolve_device"]


@dataclass
class FitResult:
    """What `fit` returns: per-epoch history, the summary (as in summary.json), the model, the run folder."""

    history: list[dict[str, float]]
    summary: dict[str, Any]
    model: nn.Module
    run_dir: Path
    trainer: Trainer
    data: PreparedData

    @property
    def test(self) -> dict[str, float] | None:
        return self.summary["test"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TrainwiseError(f"unknown device '{device}'", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainwiseError(f"device '{device}' was asked for but CUDA is not available here", hint="use --device cpu (or auto)")
    return dev


@dataclass
class _Setup:
    """Everything a training run derives from its config before the first epoch."""

    cfg: RunConfig
    prep: PreparedData
    loss: str
    kind: str
    recipe: dict
    device: torch.device
    user_model: nn.Module | None
    t_start: float


def fit(data: Any = None, y: Any = None, *, config: RunConfig | str | Path | None = None,
        callbacks: list[Callback] = (), console=None, resume: str | Path | None = None, **options: Any) -> FitResult:
    """Train a model the careful way and write a run directory.

    ``data`` is a built-in name, a .csv/.npz path, or a feature array/tensor (with ``y``). ``options`` are
    any `RunConfig` keys (``model`` may also be an ``nn.Module``); ``config`` is a RunConfig or a YAML file.
    ``resume`` continues a stopped run from its last checkpoint (only ``epochs`` and ``quiet`` may change).

    >>> result = fit("iris", epochs=3, quiet=True, run_dir="/tmp/tw-doctest-iris-" + str(time.time_ns()))
    >>> sorted(result.summary["test"])
    ['test/accuracy', 'test/loss']
    """
    if resume is not None:
        return _resume(Path(resume), data, y, callbacks, console, options)
    t_start = time.perf_counter()
    user_model = options.pop("model") if isinstance(options.get("model"), nn.Module) else None
    if isinstance(data, (str, os.PathLike)):
        options["data"], data = str(data), str(data)
    elif data is not None:
        options.setdefault("data", "arrays")
    cfg = config if isinstance(config, RunConfig) else load_config(config, options) if config else RunConfig.build(options, source="option")
    if isinstance(config, RunConfig) and options:
        cfg = RunConfig.build({**config.model_dump(), **options}, source="option")
    if user_model is not None and cfg.restarts > 1:
        raise TrainwiseError("restarts need a fresh model per seed, but `model` is one nn.Module instance",
                             hint="pass model as a spec string (mlp:..., file.py:function) so each restart builds its own")
    s = _setup(cfg, data, y, user_model, t_start)
    run_dir = new_run_dir(cfg.run_dir, cfg.data)
    atomic_write(run_dir / "config.yaml", s.cfg.model_copy(update={"run_dir": None}).to_yaml())
    if cfg.restarts > 1:
        return _fit_restarts(s, run_dir, callbacks, console)
    trainer, stopper, batches = _train(s, run_dir, cfg.seed, callbacks, console)
    return _finish(s, run_dir, trainer, stopper, batches)


def _setup(cfg: RunConfig, data: Any, y: Any, user_model: nn.Module | None, t_start: float,
           raw: RawData | None = None) -> _Setup:
    """Data prepared (split, preprocessing fit on train), loss, model recipe and device for ``cfg``.
    ``raw``: already loaded data (cross-validation passes each fold's rows as its given splits)."""
    device = resolve_device(cfg.device)
    if isinstance(data, torch.utils.data.Dataset):
        prep = prepare_dataset(data, task=cfg.task, split=cfg.split, seed=cfg.seed)
    else:
        raw = raw or load_raw(cfg, data, y)
        prep = prepare(raw, task=cfg.task, split=cfg.split, seed=cfg.seed, standardize=cfg.standardize,
                       impute=cfg.missing == "median", image_norm=cfg.image_norm)
    loss = resolve_loss(cfg.loss, prep.task, prep.n_classes)
    cfg = cfg.model_copy(update={"loss": loss, "task": prep.task})
    recipe = resolve_model(cfg.model, prep.input_shape, output_size(loss, prep.n_classes),
                           activation=cfg.activation, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
    if user_model is not None:
        recipe = {"builder": "python", "class": type(user_model).__qualname__}
    return _Setup(cfg, prep, loss, target_kind(loss), recipe, device, user_model, t_start)


def load_raw(cfg: RunConfig, data: Any = None, y: Any = None) -> RawData:
    """The unsplit data a config names (or ``data``/``y`` arrays)."""
    if data is not None and not isinstance(data, str):
        return from_arrays(data, y)
    return load_source(cfg.data, target=cfg.target, missing=cfg.missing, seed=cfg.seed, data_dir=cfg.data_dir,
                       image_size=cfg.image_size, channels=cfg.channels)


def _train(s: _Setup, run_dir: Path, seed: int, callbacks, console, resume_state: dict | None = None,
           checkpoint: bool | None = None) -> tuple[Trainer, EarlyStopping, dict]:
    """Build model, batches and callbacks for one seed, train, and write the model, metrics.csv and curves."""
    cfg = s.cfg
    torch.manual_seed(seed)  # model init; the batcher has its own generator seeded the same way
    model = s.user_model if s.user_model is not None else init_weights(build_model(s.recipe), cfg.init)
    transfer = _transfer(model, cfg, load=resume_state is None)  # a resumed run's weights come from its checkpoint
    batches = s.prep.batches(kind=s.kind, device=s.device, batch_size=cfg.batch_size, seed=seed, num_workers=cfg.num_workers)
    if cfg.augment:
        batches["train"] = _augmented(batches["train"], s, seed)
    n_train = batches["train"].num_samples
    if cfg.batch_size > n_train:
        raise TrainwiseError(f"batch_size={cfg.batch_size} is larger than the training split ({n_train} rows)",
                             hint=f"use --batch-size {min(n_train, 32)} or less, or more training data")
    check_model_fits(model.to(s.device), batches["train"].head(2), s.recipe, cfg.model, output_size(s.loss, s.prep.n_classes))
    if not cfg.quiet and seed == cfg.seed and resume_state is None:
        from rich.console import Console

        from .models.summary import summarize

        console = console or Console(highlight=False)
        console.print(str(summarize(model, s.prep.input_shape, batch_size=cfg.batch_size, device=s.device)), markup=False)
    monitor = _monitor(cfg, "val" in batches)
    stopper = EarlyStopping(monitor, cfg.mode, cfg.patience if cfg.early_stopping else None, cfg.min_delta, cfg.restore_best)
    cbs: list[Callback] = [stopper, HealthTracker()]
    if cfg.schedule != "none":
        cbs.append(LRSchedule(cfg.schedule, step_size=cfg.step_size, gamma=cfg.gamma, warmup_epochs=cfg.warmup_epochs,
                              monitor=monitor, mode=cfg.mode, patience=cfg.schedule_patience))
    if cfg.unfreeze_after:
        cbs.append(Unfreeze(cfg.unfreeze_after, cfg.unfreeze_lr_factor))
    cbs += [MetricsCSV(run_dir / "metrics.csv"), *callbacks]
    if cfg.tensorboard:
        from .report.tensorboard import TensorBoard

        cbs.append(TensorBoard(run_dir / "tensorboard", histogram_every=cfg.histogram_every))
    if not cfg.quiet:
        cbs.append(ProgressTable(monitor, cfg.mode, console=console))
    if cfg.checkpoint if checkpoint is None else checkpoint:
        cbs.append(Checkpoint(run_dir / "checkpoints", tracker=stopper))  # last: it saves every other callback's state
    penalty = Penalty(model, l1=cfg.l1, l2=cfg.l2, penalize=cfg.penalize) if cfg.l1 or cfg.l2 else None
    trainer = Trainer(model, loss=s.loss, optimizer=cfg.optimizer, lr=1e-3 if cfg.lr == "auto" else cfg.lr, momentum=cfg.momentum,
                      nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, kind=s.kind, callbacks=cbs,
                      device=s.device, target_std=s.prep.target.std, penalty=penalty, accumulate=cfg.accumulate,
                      clip_norm=cfg.clip_norm, clip_value=cfg.clip_value, precision=cfg.precision, compile=cfg.compile)
    trainer.transfer = transfer
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    elif cfg.lr == "auto":
        auto_lr(trainer, batches["train"], run_dir, console=None if cfg.quiet else console)
    try:
        trainer.fit(batches["train"], batches.get("val"), epochs=cfg.epochs)
    finally:
        if trainer.history:
            save_artifacts(run_dir, trainer.model, s.recipe, _preprocessing(s))
            write_metrics_csv(run_dir / "metrics.csv", trainer.history)
            from .report import plot_curves

            plot_curves(trainer.history, run_dir / "curves.png", metric=main_metric(s.kind),
                        best_epoch=stopper.best_epoch_ or trainer.epoch)
        if trainer.status == "failed":
            _finish(s, run_dir, trainer, stopper, batches)  # the summary says what went wrong
    return trainer, stopper, batches


def _transfer(model: nn.Module, cfg: RunConfig, load: bool = True) -> dict[str, Any] | None:
    """Starting weights (``init_from``) and frozen layers (``train_last``, ``freeze``), as the summary reports them."""
    info: dict[str, Any] = {}
    if cfg.init_from and load:
        info.update(load_initial_weights(model, cfg.init_from))
    if cfg.train_last or cfg.freeze:
        info["frozen"] = freeze(model, train_last=cfg.train_last, prefixes=cfg.freeze)
        info["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.unfreeze_after:
        info["unfreeze_after"], info["unfreeze_lr_factor"] = cfg.unfreeze_after, cfg.unfreeze_lr_factor
    return info or None


def _augmented(train: Any, s: _Setup, seed: int) -> Any:
    from .data.augment import Augment, AugmentedBatches, check_images

    check_images(s.prep.input_shape, s.cfg.augment)
    pre = s.prep.preprocessor
    return AugmentedBatches(train, Augment(s.cfg.augment, mean=pre.mean_, std=pre.std_, seed=seed))


def model_for(cfg: RunConfig) -> tuple[nn.Module, _Setup]:
    """The model a config would train (initialized with its seed, starting weights loaded and layers frozen as
    configured), and the data set-up it was sized for."""
    s = _setup(cfg, None, None, None, time.perf_counter())
    torch.manual_seed(cfg.seed)
    model = init_weights(build_model(s.recipe), cfg.init)
    _transfer(model, cfg)
    return model.to(s.device), s


def auto_lr(trainer: Trainer, batches: Any, out_dir: Path | None = None, console=None) -> float:
    """Run the LR finder (model and optimizer restored afterwards), set its suggestion as the optimizer's LR,
    save the curve and points to ``out_dir``; the result is kept as ``trainer.lr_finder``."""
    from .tune import lr_find

    result = lr_find(trainer, batches)
    if result.suggestion is None:
        raise TrainwiseError(f"the LR finder could not suggest a learning rate ({result.stop_reason})",
                             hint="give --lr explicitly, e.g. --lr 1e-3, and check the data with `trainwise sanity`")
    for g in trainer.optimizer.param_groups:
        g["lr"] = result.suggestion
    trainer.lr_finder = result
    if out_dir is not None:
        result.save(out_dir)
    if console is not None:
        console.print(f"lr auto: the LR finder suggests {result.suggestion:.2e} ({result.stop_reason})")
    return result.suggestion


def _monitor(cfg: RunConfig, has_val: bool) -> str:
    return cfg.monitor if has_val or not cfg.monitor.startswith("val/") else "train/loss"


def _preprocessing(s: _Setup) -> dict[str, Any]:
    p = s.prep
    image = {"channels": p.input_shape[0], "size": list(p.input_shape[1:])} if len(p.input_shape) == 3 else None
    return {"features": p.preprocessor.state_dict(), "target": p.target.state_dict(), "loss": s.loss,
            "kind": s.kind, "class_names": p.class_names, "target_name": p.target_name, "image": image}


def _finish(s: _Setup, run_dir: Path, trainer: Trainer, stopper: EarlyStopping, batches: dict,
            extra: dict[str, Any] | None = None, previous_tests: int = 0, test: bool = True) -> FitResult:
    """Evaluate the test split once (on the final, best weights) and write summary.json; ``previous_tests``
    counts earlier looks at the same test split (a resumed run that had finished before)."""
    cfg, has_val = s.cfg, "val" in batches
    best_epoch = stopper.best_epoch_ or (trainer.epoch or None)
    best_row = trainer.history[best_epoch - 1] if best_epoch else {}
    confusion, evaluate_test, test = None, test, None
    if evaluate_test and trainer.status in ("completed", "early_stopped") and "test" in batches:
        test = trainer.evaluate(batches["test"], prefix="test")
        if s.kind != "regression" and isinstance(batches["test"], TensorBatches):
            confusion = _confusion(trainer, batches["test"], s, run_dir)
    tracker = next((c for c in trainer.callbacks if isinstance(c, HealthTracker)), None)
    diagnostics = diagnose(trainer.history, tracker.stats() if tracker else None, kind=s.kind, baseline=_baseline(s),
                           early_stopped_at=stopper.best_epoch_ if trainer.status == "early_stopped" else None,
                           restore_best=cfg.restore_best)
    if "train" in s.prep.arrays:
        diagnostics += data_checks(s.prep.arrays, s.prep.task, s.prep.class_names)
    if tracker is not None and tracker.grad_norms_ and tracker.weight_names_:
        from .report import plot_gradient_flow

        plot_gradient_flow(tracker.weight_names_, tracker.grad_norms_, run_dir / "gradient_flow.png")
    summary = {
        "status": trainer.status, "stop_reason": trainer.stop_reason, "epochs_run": trainer.epoch,
        "best_epoch": best_epoch, "monitor": stopper.monitor,
        "best": {k: v for k, v in best_row.items() if k.startswith("val/") or (not has_val and k.startswith("train/"))},
        "test": test, "test_evaluations": previous_tests + (test is not None),
        "seed": cfg.seed, "wall_time_s": round(time.perf_counter() - s.t_start, 3),
        "train_samples_per_s": round(trainer.train_samples / trainer.train_time_s, 1) if trainer.train_time_s else None,
        "data": s.prep.describe(),
        "model": {"spec": cfg.model if s.user_model is None else s.recipe["class"], "recipe": s.recipe,
                  "parameters": sum(p.numel() for p in trainer.model.parameters())},
        "loss": s.loss, "optimizer": cfg.optimizer, "lr": trainer.history[0]["lr"] if trainer.history else None,
        "lr_finder": trainer.lr_finder.to_dict() if trainer.lr_finder else None,
        "device": str(s.device), "diagnostics": diagnostics, "transfer": trainer.transfer,
        "augment": cfg.augment,
        "test_confusion": confusion, **(extra or {}),
        "versions": {"trainwise": _version(), "torch": torch.__version__, "python": platform.python_version()},
    }
    write_json(run_dir / "summary.json", summary)
    if trainer.history and (run_dir / "model.safetensors").is_file():
        from .report.html import write_report

        write_report(run_dir, model=trainer.model if s.user_model is not None else None)
    return FitResult(trainer.history, summary, trainer.model, run_dir, trainer, s.prep)


def _confusion(trainer: Trainer, test: Any, s: _Setup, run_dir: Path) -> list[list[int]]:
    """Test-split confusion matrix (rows true, columns predicted), also drawn to confusion.png."""
    from .report import confusion_matrix, plot_confusion

    out = trainer.predict(test.X)
    pred = out.argmax(-1) if s.kind == "multiclass" else (out[:, 0] > 0).long()
    names = s.prep.class_names or [str(i) for i in range(s.prep.n_classes or 2)]
    matrix = confusion_matrix(test.y.reshape(-1).long().cpu().numpy(), pred.cpu().numpy(), len(names))
    plot_confusion(matrix, names, run_dir / "confusion.png")
    return matrix


def _baseline(s: _Setup) -> dict[str, float] | None:
    """The trivial model's train metric and loss: majority class / class priors, or the mean (R² 0)."""
    y = s.prep.arrays["train"][1] if "train" in s.prep.arrays else None  # a torch Dataset has no arrays
    if y is None:
        return None
    if s.kind == "regression":
        return {"metric": 0.0, "loss": 1.0 if s.loss == "mse" and s.cfg.standardize else None}
    p = np.bincount(y.astype(int)) / len(y)
    p = p[p > 0]
    return {"metric": float(p.max()), "loss": float(-(p * np.log(p)).sum())}


def _fit_restarts(s: _Setup, run_dir: Path, callbacks, console) -> FitResult:
    """Train seeds seed..seed+N-1 on the same split, keep the best by the monitored metric, test it once.

    Each restart keeps its own metrics.csv and curves under restarts/seed-<k>/; the chosen one's files are
    also the run's own. The result looks like one run plus a ``restarts`` summary section.
    """
    cfg = s.cfg
    seeds = [cfg.seed + i for i in range(cfg.restarts)]
    runs = []
    chosen = None
    for seed in seeds:
        if console is not None and not cfg.quiet:
            console.print(f"[bold]restart {len(runs) + 1}/{len(seeds)}: seed {seed}[/bold]")
        sub = run_dir / "restarts" / f"seed-{seed}"
        sub.mkdir(parents=True, exist_ok=True)
        trainer, stopper, batches = _train(s, sub, seed, callbacks, console, checkpoint=False)
        if trainer.status not in ("completed", "early_stopped"):
            raise TrainwiseError(f"restart with seed {seed} ended as '{trainer.status}': {trainer.stop_reason}",
                                 hint="fix the cause and run again; finished restarts are in " + str(run_dir / "restarts"))
        best_row = trainer.history[(stopper.best_epoch_ or trainer.epoch) - 1]
        runs.append({"seed": seed, "best_epoch": stopper.best_epoch_, "epochs_run": trainer.epoch, "best": stopper.best_,
                     "metrics": {k: v for k, v in best_row.items() if k.startswith(("val/", "train/"))}})
        if chosen is None or _better(stopper.best_, chosen[1].best_, stopper.mode):
            chosen = (trainer, stopper, batches, seed)
    trainer, stopper, batches, seed = chosen
    for name in ("model.safetensors", "model.json", "preprocess.json", "metrics.csv", "curves.png"):
        src = run_dir / "restarts" / f"seed-{seed}" / name
        if src.is_file():
            atomic_write(run_dir / name, src.read_bytes())
    keys = [k for k in runs[0]["metrics"] if k.startswith("val/") or not any(m.startswith("val/") for m in runs[0]["metrics"])]
    spread = {k: {"mean": float(np.mean([r["metrics"][k] for r in runs])), "std": float(np.std([r["metrics"][k] for r in runs])),
                  "values": [r["metrics"][k] for r in runs]} for k in keys}
    extra = {"restarts": {"seeds": seeds, "chosen_seed": seed, "monitor": stopper.monitor, "runs": runs, "spread": spread}}
    result = _finish(s, run_dir, trainer, stopper, batches, extra)
    result.summary["seed"] = seed
    write_json(run_dir / "summary.json", result.summary)
    return result


def _better(value: float, best: float, mode: str) -> bool:
    return value < best if mode == "min" else value > best


def _resume(run_dir: Path, data: Any, y: Any, callbacks, console, options: dict[str, Any]) -> FitResult:
    """Continue a stopped run from checkpoints/last.safetensors with the run's own config."""
    allowed = {"epochs", "quiet"}
    if set(options) - allowed:
        raise TrainwiseError(f"--resume continues a run with its own config; cannot change {', '.join(sorted(set(options) - allowed))}",
                             hint="only --epochs and --quiet may be given with --resume; start a new run to change anything else")
    if not (run_dir / "config.yaml").is_file():
        raise TrainwiseError(f"'{run_dir}' is not a trainwise run directory (no config.yaml)",
                             hint="give the run directory that `trainwise fit` printed")
    cfg = load_config(run_dir / "config.yaml", options)
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        done = json.loads(summary_path.read_text())
        if done.get("status") == "early_stopped" or (done.get("status") == "completed" and cfg.epochs <= done["epochs_run"]):
            raise TrainwiseError(f"run '{run_dir}' already finished ({done['status']}: {done['stop_reason']})",
                                 hint="resume continues interrupted or killed runs; to train longer give --epochs "
                                      f"above {done['epochs_run']}, or start a new run")
    previous = load_config(run_dir / "config.yaml")
    if cfg.epochs != previous.epochs and cfg.schedule in ("cosine", "onecycle"):
        raise TrainwiseError(f"run '{run_dir}' uses the {cfg.schedule} schedule, which spans its {previous.epochs} epochs",
                             hint="resume it without --epochs; to train longer, start a new run")
    if cfg.restarts > 1:
        raise TrainwiseError(f"run '{run_dir}' used --restarts {cfg.restarts}, which cannot be resumed",
                             hint="start it again; each restart is short compared with one long run")
    if cfg.data == "arrays" and data is None:
        raise TrainwiseError(f"run '{run_dir}' was trained on in-memory arrays", hint="pass the same X, y to fit(X, y, resume=...)")
    last = run_dir / "checkpoints" / "last.safetensors"
    if cfg.checkpoint and not last.is_file():
        raise TrainwiseError(f"run '{run_dir}' has no checkpoint yet: it stopped before its first epoch was saved",
                             hint=f"start it again: trainwise fit --config {run_dir / 'config.yaml'} --run-dir NEW_DIR")
    state = load_checkpoint(last, map_location=resolve_device(cfg.device))
    s = _setup(cfg, data, y, None, time.perf_counter())
    trainer, stopper, batches = _train(s, run_dir, cfg.seed, callbacks, console, resume_state=state)
    atomic_write(run_dir / "config.yaml", s.cfg.model_copy(update={"run_dir": None}).to_yaml())
    previous = json.loads(summary_path.read_text()).get("test_evaluations", 0) if summary_path.is_file() else 0
    return _finish(s, run_dir, trainer, stopper, batches,
                   {"resumed_from_epoch": state["epoch"]}, previous_tests=previous)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trainwise")
    except PackageNotFoundError:
        return "unknown"
