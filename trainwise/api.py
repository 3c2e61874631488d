"""The one-call API: ``fit`` (data -> splits -> model -> Trainer -> run directory), ``evaluate``, ``predict``."""
from __future__ import annotations

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
    Preprocessor,
    TargetEncoder,
    TensorBatches,
    from_arrays,
    load_source,
    prepare,
    prepare_dataset,
    to_tensors,
)
from .errors import TrainwiseError
from .models import build_model, resolve_model
from .runs import (
    atomic_write,
    load_run,
    new_run_dir,
    save_artifacts,
    write_json,
    write_metrics_csv,
)
from .train import (
    Callback,
    EarlyStopping,
    MetricsCSV,
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


def fit(data: Any = None, y: Any = None, *, config: RunConfig | str | Path | None = None,
        callbacks: list[Callback] = (), console=None, **options: Any) -> FitResult:
    """Train a model the careful way and write a run directory.

    ``data`` is a built-in name, a .csv/.npz path, or a feature array/tensor (with ``y``). ``options`` are
    any `RunConfig` keys (``model`` may also be an ``nn.Module``); ``config`` is a RunConfig or a YAML file.

    >>> result = fit("iris", epochs=3, quiet=True, run_dir="/tmp/tw-doctest-iris-" + str(time.time_ns()))
    >>> sorted(result.summary["test"])
    ['test/accuracy', 'test/loss']
    """
    t_start = time.perf_counter()
    user_model = options.pop("model") if isinstance(options.get("model"), nn.Module) else None
    if isinstance(data, (str, os.PathLike)):
        options["data"], data = str(data), str(data)
    elif data is not None:
        options.setdefault("data", "arrays")
    cfg = config if isinstance(config, RunConfig) else load_config(config, options) if config else RunConfig.build(options, source="option")
    if isinstance(config, RunConfig) and options:
        cfg = RunConfig.build({**config.model_dump(), **options}, source="option")
    device = resolve_device(cfg.device)

    if isinstance(data, torch.utils.data.Dataset):
        prep = prepare_dataset(data, task=cfg.task, split=cfg.split, seed=cfg.seed)
    else:
        raw = from_arrays(data, y) if data is not None and not isinstance(data, str) else load_source(
            cfg.data, target=cfg.target, missing=cfg.missing, seed=cfg.seed)
        prep = prepare(raw, task=cfg.task, split=cfg.split, seed=cfg.seed, standardize=cfg.standardize,
                       impute=cfg.missing == "median")
    loss = resolve_loss(cfg.loss, prep.task, prep.n_classes)
    kind = target_kind(loss)
    cfg = cfg.model_copy(update={"loss": loss, "task": prep.task})
    recipe = resolve_model(cfg.model, prep.input_shape, output_size(loss, prep.n_classes),
                           activation=cfg.activation, dropout=cfg.dropout, batch_norm=cfg.batch_norm)
    torch.manual_seed(cfg.seed)  # model init; the batcher has its own generator seeded the same way
    model = user_model if user_model is not None else build_model(recipe)
    if user_model is not None:
        recipe = {"builder": "python", "class": type(user_model).__qualname__}
    batches = prep.batches(kind=kind, device=device, batch_size=cfg.batch_size, seed=cfg.seed, num_workers=cfg.num_workers)
    n_train = batches["train"].num_samples
    if cfg.batch_size > n_train:
        raise TrainwiseError(f"batch_size={cfg.batch_size} is larger than the training split ({n_train} rows)",
                             hint=f"use --batch-size {min(n_train, 32)} or less, or more training data")
    _check_model_fits(model.to(device), batches["train"].head(2), recipe, cfg.model, output_size(loss, prep.n_classes))

    run_dir = new_run_dir(cfg.run_dir, cfg.data)
    atomic_write(run_dir / "config.yaml", cfg.model_copy(update={"run_dir": None}).to_yaml())
    has_val = "val" in batches
    monitor = cfg.monitor if has_val or not cfg.monitor.startswith("val/") else "train/loss"
    stopper = EarlyStopping(monitor, cfg.mode, cfg.patience if cfg.early_stopping else None, cfg.min_delta, cfg.restore_best)
    cbs: list[Callback] = [stopper, MetricsCSV(run_dir / "metrics.csv"), *callbacks]
    if not cfg.quiet:
        cbs.append(ProgressTable(monitor, cfg.mode, console=console))
    trainer = Trainer(model, loss=loss, optimizer=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum,
                      nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, kind=kind, callbacks=cbs,
                      device=device, target_std=prep.target.std)
    preprocessing = {"features": prep.preprocessor.state_dict(), "target": prep.target.state_dict(), "loss": loss,
                     "kind": kind, "class_names": prep.class_names, "target_name": prep.target_name}
    summary: dict[str, Any] = {}
    try:
        trainer.fit(batches["train"], batches.get("val"), epochs=cfg.epochs)
    finally:
        best_epoch = stopper.best_epoch_ or (trainer.epoch or None)
        best_row = trainer.history[best_epoch - 1] if best_epoch else {}
        test = None
        if trainer.status in ("completed", "early_stopped") and "test" in batches:
            test = trainer.evaluate(batches["test"], prefix="test")  # once, on the final (best) weights
        summary = {
            "status": trainer.status, "stop_reason": trainer.stop_reason, "epochs_run": trainer.epoch,
            "best_epoch": best_epoch, "monitor": monitor,
            "best": {k: v for k, v in best_row.items() if k.startswith("val/") or (not has_val and k.startswith("train/"))},
            "test": test, "seed": cfg.seed, "wall_time_s": round(time.perf_counter() - t_start, 3),
            "train_samples_per_s": round(trainer.train_samples / trainer.train_time_s, 1) if trainer.train_time_s else None,
            "data": prep.describe(),
            "model": {"spec": cfg.model if user_model is None else recipe["class"], "recipe": recipe,
                      "parameters": sum(p.numel() for p in model.parameters())},
            "loss": loss, "optimizer": cfg.optimizer, "device": str(device),
            "versions": {"trainwise": _version(), "torch": torch.__version__, "python": platform.python_version()},
        }
        if trainer.history:
            save_artifacts(run_dir, trainer.model, recipe, preprocessing)
            write_metrics_csv(run_dir / "metrics.csv", trainer.history)
            from .report import plot_curves

            plot_curves(trainer.history, run_dir / "curves.png", metric=main_metric(kind), best_epoch=best_epoch)
        write_json(run_dir / "summary.json", summary)
    return FitResult(trainer.history, summary, trainer.model, run_dir, trainer, prep)


def evaluate(run_dir: str | Path, data: str | None = None) -> dict[str, float]:
    """Loss and metrics of a saved run on its own test split (rebuilt from its config) or on ``data``."""
    run = load_run(run_dir)
    cfg, pp = run.config, run.preprocessing
    if data is None:
        prep = prepare(load_source(cfg.data, target=cfg.target, missing=cfg.missing, seed=cfg.seed), task=cfg.task,
                       split=cfg.split, seed=cfg.seed, standardize=cfg.standardize, impute=cfg.missing == "median")
        if "test" not in prep.arrays:
            raise TrainwiseError(f"run '{run_dir}' has no test split (split={cfg.split})", hint="pass --data FILE with targets")
        X, yy, prefix = *prep.arrays["test"], "test"
    else:
        raw = load_source(data, target=cfg.target or pp["target_name"], missing=cfg.missing, seed=cfg.seed)
        X = Preprocessor.from_state(pp["features"]).transform(raw.X)
        yy, prefix = TargetEncoder.from_state(pp["target"]).encode(raw.y, what=f"target of '{data}'"), "eval"
    trainer = Trainer(run.model, loss=pp["loss"], kind=pp["kind"], optimizer=torch.optim.SGD(run.model.parameters(), lr=0.0),
                      target_std=pp["target"]["std"])
    Xt, yt = to_tensors(X, yy, pp["kind"], torch.device("cpu"))
    _check_model_fits(run.model, Xt[:2], run.recipe, run.summary.get("model", {}).get("spec", "?"), None)
    return trainer.evaluate(TensorBatches(Xt, yt, batch_size=4096, shuffle=False), prefix=prefix)


def predict(run_dir: str | Path, inputs: str | Path, output: str | Path | None = None):
    """Predictions (and class probabilities) of a saved run for a .csv or .npz file, as a DataFrame;
    written as CSV to ``output`` when given. The run's own preprocessing is applied."""
    import pandas as pd

    run = load_run(run_dir)
    pp = run.preprocessing
    path = Path(inputs)
    if not path.is_file():
        raise TrainwiseError(f"input file '{path}' does not exist", hint="give a .csv or .npz file of feature rows")
    if path.suffix.lower() == ".csv":
        X = pd.read_csv(path)
        X = X.drop(columns=[pp["target_name"]]) if pp["target_name"] in X.columns else X
    elif path.suffix.lower() == ".npz":
        npz = np.load(path, allow_pickle=False)
        key = next((k for k in ("X", "X_test") if k in npz.files), None)
        if key is None:
            raise TrainwiseError(f"'{path}' has no array 'X' (keys: {npz.files})", hint="save features with numpy.savez(path, X=...)")
        X = npz[key]
    else:
        raise TrainwiseError(f"cannot predict from '{path}': unsupported file type '{path.suffix}'", hint="use a .csv or .npz file")
    Xt = torch.from_numpy(Preprocessor.from_state(pp["features"]).transform(X))
    _check_model_fits(run.model, Xt[:2], run.recipe, run.summary.get("model", {}).get("spec", "?"), None)
    with torch.inference_mode():
        out = torch.cat([run.model(Xt[i:i + 4096]) for i in range(0, len(Xt), 4096)]).double()
    t = pp["target"]
    if pp["kind"] == "regression":
        frame = pd.DataFrame({"prediction": (out[:, 0] * t["std"] + t["mean"]).numpy()})
    else:
        probs = torch.softmax(out, -1) if pp["kind"] == "multiclass" else torch.cat([1 - out.sigmoid(), out.sigmoid()], 1)
        names = pp["class_names"]
        frame = pd.DataFrame({"prediction": [names[i] for i in probs.argmax(1).tolist()]})
        for i, name in enumerate(names):
            frame[f"prob_{name}"] = probs[:, i].numpy()
    if output is not None:
        atomic_write(output, frame.to_csv(index=False))
    return frame


def _check_model_fits(model: nn.Module, x: torch.Tensor, recipe: dict, spec: str, expected: int | None) -> None:
    """One eval-mode forward on two rows, so a shape mismatch is reported in words before training."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        raise TrainwiseError(f"model '{spec}' cannot take the data: input rows have shape {tuple(x.shape[1:])} "
                             f"({type(e).__name__}: {str(e).splitlines()[0]})",
                             hint=f"make the model accept inputs of shape (batch, {', '.join(map(str, x.shape[1:]))})") from None
    finally:
        model.train(was)
    if expected is not None and tuple(out.shape) != (len(x), expected):
        raise TrainwiseError(f"model '{spec}' returns outputs of shape {tuple(out.shape)} for {len(x)} rows; "
                             f"the loss needs ({len(x)}, {expected})",
                             hint=f"make the model's last layer produce {expected} output(s) per row")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trainwise")
    except PackageNotFoundError:
        return "unknown"
