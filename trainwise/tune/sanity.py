""""Start with a model that can overfit": train on a tiny fixed subset, regularization off, and check that
the training loss falls close to zero. If it cannot, no amount of tuning on the full data will help."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..data import TensorBatches, to_tensors
from ..errors import TrainwiseError
from ..pipeline import auto_lr, build_model, build_trainer, in_memory_name, setup_run
from ..train import Callback, Trainer

__all__ = ["sanity", "SanityResult"]


@dataclass
class SanityResult:
    """``can_learn`` and the plain-words ``verdict``; ``curve`` holds (step, loss on the subset) pairs."""

    can_learn: bool
    verdict: str
    initial_loss: float
    final_loss: float
    steps: int
    samples: int
    curve: list[tuple[int, float]] = field(default_factory=list)


class _StopWhenLearned(Callback):
    def __init__(self, tol: float, max_steps: int):
        self.tol, self.max_steps = tol, max_steps

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        if logs["val/loss"] <= self.tol:
            trainer.request_stop("learned")
        elif trainer.step >= self.max_steps:
            trainer.request_stop("step budget spent")


def sanity(data: Any = None, y: Any = None, *, batches: int = 2, steps: int = 200, tol: float = 0.05,
           config: RunConfig | None = None, **options: Any) -> SanityResult:
    """Train the configured model on the first ``batches`` training batches for up to ``steps`` optimizer
    steps (rounded up to whole passes over the subset), with dropout, penalties and weight decay off, and say whether the loss got below ``tol``.

    >>> r = sanity("iris", batches=1, steps=300, batch_size=8, lr=0.01)
    >>> r.can_learn, r.verdict.split(":")[0]
    (True, 'the model can learn')
    """
    if batches < 1 or steps < 1 or tol <= 0:
        raise TrainwiseError(f"sanity needs batches >= 1, steps >= 1 and tol > 0 (got {batches}, {steps}, {tol})",
                             hint="e.g. --batches 2 --steps 200 --tol 0.05")
    if isinstance(data, str):
        options["data"], data = data, None
    elif data is not None:
        options.setdefault("data", in_memory_name(data))
    cfg = config or RunConfig.build(options, source="option")
    # regularization off: the question is whether the model *can* fit, not whether it generalizes
    cfg = cfg.model_copy(update={"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0, "l2": 0.0, "quiet": True, "compile": False})
    setup = setup_run(cfg, data, y)
    cfg = setup.cfg  # with its auto settings resolved
    X, yy = setup.prep.arrays["train"]
    n = min(batches * cfg.batch_size, len(yy))
    Xt, yt = to_tensors(X[:n], yy[:n], setup.kind, setup.device)
    model, _ = build_model(setup, cfg.seed)
    trainer = build_trainer(setup, model, [_StopWhenLearned(tol, steps)])
    subset_eval = TensorBatches(Xt, yt, batch_size=4096, shuffle=False)
    train = TensorBatches(Xt, yt, batch_size=cfg.batch_size, seed=cfg.seed)
    if cfg.lr == "auto":
        auto_lr(trainer, train)
    lr = trainer.optimizer.param_groups[0]["lr"]
    initial = trainer.evaluate(subset_eval)["val/loss"]
    steps_per_epoch = -(-len(train) // cfg.accumulate)
    trainer.fit(train, subset_eval, epochs=-(-steps // steps_per_epoch))  # the callback usually stops it sooner
    final = trainer.history[-1]["val/loss"]
    per_epoch = trainer.step / max(trainer.epoch, 1)
    curve = [(0, initial)] + [(round((i + 1) * per_epoch), row["val/loss"]) for i, row in enumerate(trainer.history)]
    ok = final <= tol
    where = f"{trainer.step} steps on {n} training samples (from {initial:.3g})"
    verdict = (f"the model can learn: training loss {final:.3g} after {where}" if ok else
               f"it cannot: training loss {final:.3g} after {where}, above the target {tol:g}. A model that cannot "
               f"overfit {n} samples will not fit the full data; check the learning rate (--lr {lr:g} may be too "
               "low or too high), the labels (do they match the rows?), the loss, and the model's size")
    return SanityResult(ok, verdict, initial, final, trainer.step, n, curve)
