"""Training: the loop, callbacks, schedules, penalties, losses, optimizers, metrics."""
from .callbacks import Checkpoint, EarlyStopping, MetricsCSV, ProgressTable
from .components import make_loss, make_optimizer, resolve_loss
from .metrics import MetricAccumulator
from .penalties import Penalty, elastic_net_penalty, l1_penalty, l2_penalty, penalized_parameters
from .schedules import SCHEDULES, LRSchedule
from .trainer import HOOKS, PRECISIONS, Callback, Trainer

__all__ = ["HOOKS", "PRECISIONS", "SCHEDULES", "Callback", "Checkpoint", "EarlyStopping", "LRSchedule",
           "MetricAccumulator", "MetricsCSV", "Penalty", "ProgressTable", "Trainer", "elastic_net_penalty",
           "l1_penalty", "l2_penalty", "make_loss", "make_optimizer", "penalized_parameters", "resolve_loss"]
