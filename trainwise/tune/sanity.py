""""Start with a model that can overfit": train on a tiny fixed subset, regularization off, and check that
the training loss falls close to zero. If it cannot, no amount of tuning on the full data will help."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import RunConfig
from ..data import TensorBatches, to_tensors
from ..errors import TrainwiseError
from ..pipeline import auto_lr, build_model, build_trainer, in_memory_name, setup_run
from ..train import Callback, Trainer
from ..train.components import SampleWeighted

__all__ = ["sanity", "SanityResult"]


@dataclass
class SanityResult:
    """``can_learn`` and the plain-words ``verdict``; ``curve`` holds (step, loss on the subset) pairs;
    ``lowest_loss``: the lowest loss the subset's targets allow (0; with class probabilities as targets the loss
    at outputs equal to them, their entropy where classes are not weighted: the model can learn when its loss
    gets within ``tol`` of it)."""

    can_learn: bool
    verdict: str
    initial_loss: float
    final_loss: float
    steps: int
    samples: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    lowest_loss: float = 0.0


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
    steps (rounded up to whole passes over the subset), with dropout, penalties and weight decay off, and say whether the loss got below ``tol``
    (with class probabilities as targets: within ``tol`` of the lowest loss they allow, their entropy where classes
    are not weighted; "cannot tell" when the untrained model is already that close). The subset's
    loss is the run's training loss: its rows' weights and probabilities count as in `trainwise fit`.

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
    # the first training rows, with what the run's loss reads from them (their weights, their class probabilities)
    X, yy = setup.prep.arrays["train"]
    n = min(batches * cfg.batch_size, len(yy))
    Xt, yt = to_tensors(X[:n], yy[:n], setup.kind, setup.device)
    rows = setup.prep.loss_extras(kind=setup.kind, device=setup.device, rows=n)
    soft = rows["soft"] is not None
    model, _ = build_model(setup, cfg.seed)
    floor, stop = 0.0, _StopWhenLearned(tol, steps)
    trainer = build_trainer(setup, model, [stop])
    subset_eval = TensorBatches(Xt, yt, batch_size=4096, shuffle=False, **rows)
    train = TensorBatches(Xt, yt, batch_size=cfg.batch_size, seed=cfg.seed, **rows)
    if soft:  # probabilities as targets: no model gets the loss below what they allow (unweighted: their entropy)
        floor = lowest_soft_loss(trainer.loss_fn, setup.kind, yt, rows["weights"], rows["soft"])
        stop.tol = floor + tol
    if cfg.lr == "auto":
        auto_lr(trainer, train)
    lr = trainer.optimizer.param_groups[0]["lr"]
    initial = trainer.evaluate(subset_eval)["val/loss"]
    steps_per_epoch = -(-len(train) // cfg.accumulate)
    trainer.fit(train, subset_eval, epochs=-(-steps // steps_per_epoch))  # the callback usually stops it sooner
    final = trainer.history[-1]["val/loss"]
    per_epoch = trainer.step / max(trainer.epoch, 1)
    curve = [(0, initial)] + [(round((i + 1) * per_epoch), row["val/loss"]) for i, row in enumerate(trainer.history)]
    ok = final <= floor + tol
    where = f"{trainer.step} steps on {n} training samples (from {initial:.3g})"
    if soft:
        where += (f", {final - floor:.3g} above the lowest loss these targets allow, {floor:.3g} (they are class "
                  "probabilities: a model that predicts them exactly still has that loss; unweighted, their entropy)")
    target = f"the target {tol:g}" if not soft else f"{tol:g} above that lowest loss"
    if soft and initial - floor <= tol:  # the untrained model already scores within tol: nothing was shown
        ok = False
        verdict = (f"cannot tell: the untrained model's loss {initial:.3g} is already within {tol:g} of the lowest these "
                   f"targets allow, {floor:.3g} (probabilities close to what an untrained model predicts); ask for "
                   f"more with a smaller tolerance, e.g. --tol {max((initial - floor) / 10, 1e-6):.2g}")
    else:
        verdict = (f"the model can learn: training loss {final:.3g} after {where}" if ok else
                   f"it cannot: training loss {final:.3g} after {where}, more than {target}. A model that cannot "
                   f"overfit {n} samples will not fit the full data; check the learning rate (--lr {lr:g} may be too "
                   "low or too high), the labels (do they match the rows?), the loss, and the model's size")
    return SanityResult(ok, verdict, initial, final, trainer.step, n, curve, floor)


@torch.no_grad()
def lowest_soft_loss(loss_fn, kind: str, y: torch.Tensor, w: torch.Tensor | None, p: torch.Tensor) -> float:
    """The lowest value ``loss_fn`` (a `SampleWeighted` loss) can take on rows whose targets are class
    probabilities ``p``: its value at the best outputs, the probabilities themselves (each class scaled by its
    class weight where the loss weighs classes: the minimum of a class-weighted cross-entropy is there)."""
    while not isinstance(loss_fn, SampleWeighted) and isinstance(getattr(loss_fn, "base", None), nn.Module):
        loss_fn = loss_fn.base  # a wrapper (the tabular model's per-member loss): evaluation uses the loss inside
    base = getattr(loss_fn, "base", loss_fn)
    tiny = torch.finfo(p.dtype).tiny
    if kind == "binary":  # one logit per row, p the positive class's probability
        pos_weight = getattr(base, "pos_weight", None)
        positive = p * (pos_weight if pos_weight is not None else 1.0)
        best = positive.clamp_min(tiny).log() - (1 - p).clamp_min(tiny).log()
    else:
        weight = getattr(base, "weight", None)
        best = (p * (weight if weight is not None else 1.0)).clamp_min(tiny).log()
    return float(loss_fn(best, (y, w, p)))
