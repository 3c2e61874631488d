"""Fine-tuning during training: unfreeze every layer after some epochs, at a lower learning rate."""
from __future__ import annotations

from typing import Any

from .trainer import Callback

__all__ = ["Unfreeze"]


class Unfreeze(Callback):
    """After ``after`` epochs: every parameter trainable again, and every LR multiplied by ``lr_factor``."""

    def __init__(self, after: int, lr_factor: float = 0.1):
        self.after, self.lr_factor = after, lr_factor
        self.done_ = False

    def on_epoch_end(self, trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if epoch == self.after and not self.done_:
            for p in trainer.model.parameters():
                p.requires_grad_(True)
            for g in trainer.optimizer.param_groups:
                g["lr"] *= self.lr_factor
            self.done_ = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done_ = bool(state["done"])

    def on_fit_start(self, trainer) -> None:
        if self.done_:  # resumed after unfreezing: the optimizer state already has the lower LR
            for p in trainer.model.parameters():
                p.requires_grad_(True)
