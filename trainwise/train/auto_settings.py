"""What the ``auto`` settings of a `RunConfig` stand for once the data is known: resolved by `pipeline.setup_run`
and saved resolved in config.yaml. Each rule was chosen on benchmarks/vs_hand_tuned.py (README: Results on data
nobody tuned for)."""
from __future__ import annotations

import math
from typing import Any

from ..config import RunConfig
from .callbacks import resolve_monitor

__all__ = ["auto_model", "auto_batch_size", "auto_patience", "auto_warmup", "resolve_auto"]


def auto_batch_size(n_train: int) -> int:
    """``batch_size: auto``: the power of two nearest n_train/50, within 16..128, so a small set still takes
    ~50 optimizer steps an epoch and a large one is not slowed by tiny batches; never more than the rows.

    >>> [auto_batch_size(n) for n in (10, 105, 1257, 3500, 42000)]
    [10, 16, 32, 64, 128]
    """
    return int(min(128, max(16, 2 ** round(math.log2(max(n_train, 1) / 50))), max(n_train, 1)))


def auto_patience(epochs: int) -> int:
    """``patience: auto``: a tenth of the epoch budget, at least 10 (the budget is a budget, not a target).

    >>> auto_patience(50), auto_patience(200)
    (10, 20)
    """
    return max(10, round(epochs / 10))


def auto_warmup(schedule: str, epochs: int) -> float:
    """``warmup_epochs: auto``: one epoch of linear warmup before the cosine (a tenth of a shorter run); other
    schedules have none. Measured on benchmarks/vs_hand_tuned.py: it kept lr 3e-3 from the early
    instability that cost points on small sets without it.

    >>> auto_warmup("cosine", 200), auto_warmup("cosine", 5), auto_warmup("step", 200)
    (1.0, 0.5, 0.0)
    """
    return min(1.0, epochs / 10) if schedule == "cosine" else 0.0


def auto_model(table: bool) -> str:
    """``model: auto``: the tabular model for a table (a CSV file or a DataFrame: columns with names and types),
    where it beat gradient boosting and the plain MLP on average in benchmarks/vs_boosting.py (README: Tabular
    data); mlp:128,64 for arrays and images.

    >>> auto_model(True), auto_model(False)
    ('tabular', 'mlp:128,64')
    """
    return "tabular" if table else "mlp:128,64"


def resolve_auto(cfg: RunConfig, task: str, n_train: int, *, table: bool = False) -> dict[str, Any]:
    """The values that ``auto`` settings stand for, once the data is known (saved resolved in config.yaml).
    ``table``: the data is a table of named columns (`auto_model`)."""
    consecutive = cfg.early_stop_rule == "consecutive"  # the notes' rule: val/loss rising 3 epochs in a row
    # class weights say what matters: the weighted validation loss, not plain accuracy, picks the best epoch
    by_loss = (consecutive or cfg.class_weight is not None) and cfg.monitor == "auto"
    return {"model": auto_model(table) if cfg.model == "auto" else cfg.model,
            "monitor": "val/loss" if by_loss else resolve_monitor(cfg.monitor, task),
            "batch_size": auto_batch_size(n_train) if cfg.batch_size == "auto" else cfg.batch_size,
            "patience": (3 if consecutive else auto_patience(cfg.epochs)) if cfg.patience == "auto" else cfg.patience,
            "warmup_epochs": auto_warmup(cfg.schedule, cfg.epochs) if cfg.warmup_epochs == "auto" else cfg.warmup_epochs}
