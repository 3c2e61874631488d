"""The run-directory writer: the one place that puts a run on disk. The training core decides and keeps
everything in memory; this writes it down.

    write_config(cfg)          config.yaml (fully resolved; `trainwise fit --config` reproduces the run)
    write_recipe(recipe)       model.json before the first epoch (a killed run's resume checks it)
    callbacks(tracker)         per epoch: metrics.csv, checkpoints/last (and best), TensorBoard event files
    write_model(result)        model.safetensors + model.json + preprocess.json, metrics.csv, curves.png, lr_find.*
    write_summary(result, s)   confusion.png, gradient_flow.png, samples.png + test_predictions.png (images),
                               regression.png (regression), summary.json, report.html

Every file is written atomically, so an interrupted run keeps its finished epochs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.augment import Augment
from ..models import user_code
from ..runs import RunLock, atomic_write, clean_temp, new_run_dir, save_artifacts, write_json, write_metrics_csv
from ..train import Callback, Checkpoint, EarlyStopping, MetricsCSV
from ..train.metrics import main_metric
from . import drawing
from .drawing import draw
from .html import write_report
from .mlflow import MLflowLogger
from .plots import (
    pick_by_class,
    plot_confusion,
    plot_curves,
    plot_gradient_flow,
    plot_lr_find,
    plot_regression,
    plot_samples,
    plot_test_predictions,
    regression_points,
)
from .tensorboard import TensorBoard

__all__ = ["RunWriter", "save_lr_find"]


def save_lr_find(result, directory: str | Path) -> None:
    """An LR range test's ``lr_find.csv`` (step, lr, loss, smoothed) and ``lr_find.png`` (the curve, the
    suggestion marked) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = ["step,lr,loss,smoothed"] + [f"{i + 1},{lr!r},{loss!r},{s!r}" for i, (lr, loss, s) in
                                       enumerate(zip(result.lrs, result.losses, result.smoothed))]
    atomic_write(directory / "lr_find.csv", "\n".join(rows) + "\n")
    draw(plot_lr_find, result.lrs, result.losses, result.smoothed, result.suggestion, directory / "lr_find.png")


class RunWriter:
    """Writes one run into ``run_dir``. ``tensorboard``: also write TensorBoard logs (every ``histogram_every``
    epochs: histograms). Use `RunWriter.create` for a new run directory (refused if it already holds a run).

    >>> import tempfile; w = RunWriter(tempfile.mkdtemp())
    >>> [type(c).__name__ for c in w.callbacks(None, checkpoint=True)]
    ['MetricsCSV', 'Checkpoint']
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = False, histogram_every: int = 5, lock: bool = False,
                 plots: bool = True, mlflow: str | None = None):
        self.run_dir = Path(run_dir)
        # ``mlflow``: a tracking URI; the run is also logged there (`MLflowLogger`: live per epoch, the rest at the end)
        self.mlflow = MLflowLogger(mlflow, self.run_dir) if mlflow else None
        self.plots = plots  # False: no PNGs (search trials: ~0.3 s of matplotlib each, more than a stacked trial trains)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tensorboard, self.histogram_every = tensorboard, histogram_every
        # ``lock``: this writer owns the directory (`RunLock`; a second writer gets an error naming the holder)
        # and clears the temp files a killed write left behind
        self.lock = RunLock(self.run_dir) if lock else None
        if lock:
            clean_temp(self.run_dir)

    def close(self) -> None:
        """Let other processes write this run directory (also happens when this process ends), its figures on disk."""
        try:
            drawing.finish()
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # also when training failed: a failed run can be resumed by this same process

    @classmethod
    def create(cls, run_dir: str | Path | None, data_name: str, **options: Any) -> RunWriter:
        """A writer for a new run: ``run_dir`` (refused if it holds a run), or runs/<data>-<time> when None."""
        path = new_run_dir(None if run_dir is None else str(run_dir), data_name)
        writer = cls(path, lock=True, **options)
        if run_dir is not None:
            new_run_dir(str(path), data_name)  # again, holding the lock: a run that started meanwhile is seen
        return writer

    @classmethod
    def for_config(cls, cfg, run_dir: str | Path | None = None) -> RunWriter:
        """A writer with the config's TensorBoard options (``run_dir`` defaults to the config's)."""
        return cls.create(run_dir if run_dir is not None else cfg.run_dir, cfg.data, tensorboard=cfg.tensorboard,
                          histogram_every=cfg.histogram_every, mlflow=cfg.mlflow)

    def sub(self, name: str, *, plots: bool | None = None) -> RunWriter:
        """A writer for a member run in a subfolder (a restart, a fold, a trial); ``plots`` default: this one's."""
        return RunWriter(self.run_dir / name, tensorboard=self.tensorboard, histogram_every=self.histogram_every,
                         plots=self.plots if plots is None else plots)

    def write_config(self, cfg) -> None:
        atomic_write(self.run_dir / "config.yaml", cfg.saved_yaml())
        if self.mlflow is not None:
            self.mlflow.params = {k: v for k, v in cfg.model_dump().items() if k not in ("mlflow", "quiet")}

    def write_recipe(self, recipe: dict[str, Any]) -> None:
        """model.json before training starts: what the model is (for user code: which file, with which SHA-256),
        so that `--resume` of a killed run can check it. `write_model` writes it again with the weights."""
        write_json(self.run_dir / "model.json", recipe)

    def callbacks(self, tracker: EarlyStopping | None, *, checkpoint: bool) -> list[Callback]:
        """The per-epoch file callbacks; the checkpoint comes last, as it saves every other callback's state."""
        cbs: list[Callback] = [MetricsCSV(self.run_dir / "metrics.csv")]
        if self.mlflow is not None:
            cbs.append(self.mlflow)
        if self.tensorboard:
            cbs.append(TensorBoard(self.run_dir / "tensorboard", histogram_every=self.histogram_every))
        if checkpoint:
            cbs.append(Checkpoint(self.run_dir / "checkpoints", tracker=tracker))
        return cbs

    def write_model(self, result, *, weights: bool = True) -> None:
        """Weights, model.json, preprocess.json, metrics.csv, curves.png (and the LR finder's curve, if it ran).
        ``weights=False`` (a failed run): everything but model.safetensors."""
        trainer = result.trainer
        if weights:
            save_artifacts(self.run_dir, trainer.model, result.setup.recipe, result.setup.preprocessing())
        if trainer.history:  # an ensemble of trained runs has none of its own
            write_metrics_csv(self.run_dir / "metrics.csv", trainer.history)
        if trainer.history and self.plots:
            draw(plot_curves, trainer.history, self.run_dir / "curves.png", metric=main_metric(result.setup.kind),
                        best_epoch=result.stopper.best_epoch_ or trainer.epoch)
        if trainer.lr_finder is not None:
            save_lr_find(trainer.lr_finder, self.run_dir)

    def write_summary(self, result, summary: dict[str, Any]) -> None:
        """summary.json and what is drawn from it: confusion matrix, gradient flow, the data and test-prediction
        plots, report.html."""
        if result.confusion is not None and self.plots:
            draw(plot_confusion, result.confusion, result.class_names, self.run_dir / "confusion.png")
        tracker = result.health
        if tracker is not None and tracker.grad_norms_ and tracker.weight_names_ and self.plots:
            draw(plot_gradient_flow, tracker.weight_names_, tracker.grad_norms_, self.run_dir / "gradient_flow.png")
        if self.plots:
            self.write_data_plots(result)
        write_json(self.run_dir / "summary.json", summary)
        if (self.run_dir / "model.safetensors").is_file():
            # a built-in model is rebuilt from the files just written (data only); user code is not imported
            # again: the report gets the trained module (an nn.Module passed to fit cannot be rebuilt at all)
            in_memory = result.setup.user_model is not None or bool(user_code(result.setup.recipe))
            drawing.finish()  # the report embeds the figures
            write_report(self.run_dir, model=result.model if in_memory else None)
        if self.mlflow is not None:
            drawing.finish()  # the figures are artifacts too
            self.mlflow.finish(summary)

    def write_data_plots(self, result) -> None:
        """Only where they apply (each figure costs ~0.3 s of matplotlib; a table of numbers gets none):
        images: samples.png (training images as loaded and, with --augment, as the training batches see them) and
        test_predictions.png (classification: the test predictions `evaluate_test` made, mistakes first);
        regression: regression.png (predicted vs true and residuals, in the target's units)."""
        prep, cfg = result.setup.prep, result.setup.cfg
        if "train" not in prep.arrays:  # a torch Dataset: no prepared arrays, no known normalization
            return
        pre, test, pred = prep.preprocessor, prep.arrays.get("test"), result.test_predictions
        regression = result.setup.kind == "regression"
        if len(prep.input_shape) == 3:  # (C, H, W)
            X, y = prep.arrays["train"]
            rows = pick_by_class(y, 16) if not regression else list(range(min(16, len(y))))
            labels = [f"{float(np.ravel(v)[0]) * np.ravel(prep.target.std)[0] + np.ravel(prep.target.mean)[0]:.4g}" for v in y[rows]] \
                if regression else \
                [result.class_names[int(c)] for c in y[rows]]
            augmented = None
            if cfg.augment:  # the training batches' augmentation, from a fresh generator (training's is left alone)
                augment = Augment(cfg.augment, mean=pre.mean_, std=pre.std_, seed=result.seed)
                augmented = augment(torch.from_numpy(np.ascontiguousarray(X[rows]))).numpy()
            draw(plot_samples, X[rows], labels, self.run_dir / "samples.png", mean=pre.mean_, std=pre.std_,
                         augmented=augmented, augment=cfg.augment or "")
            if not regression and test is not None and pred is not None:
                draw(plot_test_predictions, test[0], test[1], pred, result.class_names, self.run_dir / "test_predictions.png",
                                      mean=pre.mean_, std=pre.std_)
        if regression and test is not None and pred is not None:
            true, predicted, _ = regression_points(pred, test[1], mean=prep.target.mean, std=prep.target.std)
            names = prep.target_name.split(",") if isinstance(prep.target.mean, list) else prep.target_name  # one panel row each
            draw(plot_regression, true, predicted, self.run_dir / "regression.png", target_name=names)

    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.run_dir / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.run_dir / name, text)

    def copy_from(self, sub: RunWriter, names: tuple[str, ...]) -> None:
        """Make a member run's files the run's own (restarts: the chosen seed)."""
        drawing.finish()  # its figures may still be being drawn
        for name in names:
            src = sub.run_dir / name
            if src.is_file():
                atomic_write(self.run_dir / name, src.read_bytes())
