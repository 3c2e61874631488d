"""Training: the loop, callbacks, losses, optimizers, metrics."""
from .callbacks import EarlyStopping, MetricsCSV, ProgressTable
from .components import make_loss, make_optimizer, resolve_loss
from .metrics import MetricAccumulator
from .trainer import HOOKS, Callback, Trainer

__all__ = ["HOOKS", "Callback", "EarlyStopping", "MetricAccumulator", "MetricsCSV", "ProgressTable", "Trainer",
           "make_loss", "make_optimizer", "resolve_loss"]
