"""trainwise: train PyTorch models the way a careful practitioner does.

>>> import trainwise
>>> sorted(trainwise.BUILTINS)[:3]
['breast-cancer', 'diabetes', 'digits']
"""
from .api import FitResult, evaluate, fit, predict
from .config import RunConfig, load_config
from .data import BUILTINS, TensorBatches, load_source, prepare, split_indices
from .errors import TrainwiseError
from .models import MLP, build_model
from .saved import load_run
from .train import Callback, EarlyStopping, Trainer

__version__ = "0.1.0"
__all__ = ["BUILTINS", "MLP", "Callback", "EarlyStopping", "FitResult", "RunConfig", "TensorBatches", "Trainer",
           "TrainwiseError", "build_model", "evaluate", "fit", "load_config", "load_run", "load_source", "predict",
           "prepare", "split_indices"]
