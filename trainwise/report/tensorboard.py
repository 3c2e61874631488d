"""TensorBoard logging as a callback: scalars every epoch, weight/gradient histograms and per-layer gradient
norms every ``histogram_every`` epochs, and the model graph once. View with `tensorboard --logdir RUN_DIR`."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..train.trainer import Callback, Trainer

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Writes event files to ``log_dir``; the step axis is the epoch.

    Gradients are sampled from the first optimizer step of every ``histogram_every``-th epoch (copied once, so
    the per-step cost is one flag check), not from every step.
    """

    def __init__(self, log_dir: str | Path, *, histogram_every: int = 5, graph: bool = True):
        self.log_dir, self.histogram_every, self.graph = Path(log_dir), max(int(histogram_every), 1), graph
        self.writer_ = None
        self._want_grads, self._grads = False, None

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy (tensorboard, protobuf): only with --tensorboard

        self.writer_ = SummaryWriter(str(self.log_dir))
        head = getattr(trainer.train_data, "head", None)
        if self.graph and head is not None and trainer.epoch == 0:
            model = trainer.model
            was = model.training
            model.eval()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.writer_.add_graph(model, head(2))
            except Exception as e:  # noqa: BLE001 - a model jit cannot trace still trains; say so in the log
                self.writer_.add_text("graph", f"model graph not recorded: {type(e).__name__}: {e}")
            finally:
                model.train(was)

    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None:
        self._want_grads = (epoch - 1) % self.histogram_every == 0

    def on_after_backward(self, trainer: Trainer, *, loss: torch.Tensor) -> None:
        if self._want_grads:
            self._grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            self._want_grads = False

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        w = self.writer_
        for key, value in logs.items():
            if key != "epoch":
                w.add_scalar(key, value, epoch)
        if self._grads is not None:
            for name, p in trainer.model.named_parameters():
                w.add_histogram(f"weights/{name}", p.detach().float().cpu(), epoch)
            for name, g in self._grads.items():
                w.add_histogram(f"gradients/{name}", g.float().cpu(), epoch)
                w.add_scalar(f"grad_norm/{name}", g.norm().item(), epoch)
            self._grads = None
        w.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer_ is not None:
            self.writer_.close()
