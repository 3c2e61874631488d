"""trainwise: train PyTorch models the way a careful practitioner does.

The names below load on first use (PEP 562), so that the command line's parser and ``--help`` start without
importing torch; ``from trainwise import fit`` imports what fit needs.

>>> import trainwise
>>> sorted(trainwise.BUILTINS)[:3]
['breast-cancer', 'diabetes', 'digits']
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BUILTINS", "MLP", "Callback", "EarlyStopping", "FitResult", "RunConfig", "TensorBatches", "Trainer",
           "TrainwiseError", "SavedModel", "build_model", "evaluate", "fit", "load", "load_config", "load_run", "load_source", "predict",
           "prepare", "split_indices"]

# public name -> the module that defines it
_WHERE = {"FitResult": "api", "evaluate": "api", "fit": "api", "predict": "api", "load": "api", "SavedModel": "api", "RunConfig": "config",
          "load_config": "config", "BUILTINS": "data", "TensorBatches": "data", "load_source": "data", "prepare": "data",
          "split_indices": "data", "TrainwiseError": "errors", "MLP": "models", "build_model": "models",
          "load_run": "saved", "Callback": "train", "EarlyStopping": "train", "Trainer": "train"}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .api import FitResult, SavedModel, evaluate, fit, load, predict
    from .config import RunConfig, load_config
    from .data import BUILTINS, TensorBatches, load_source, prepare, split_indices
    from .errors import TrainwiseError
    from .models import MLP, build_model
    from .saved import load_run
    from .train import Callback, EarlyStopping, Trainer


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'trainwise' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
