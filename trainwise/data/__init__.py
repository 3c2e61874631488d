"""Data: sources -> splits -> preprocessing (fit on train) -> batches."""
from .batching import DeviceLoader, TensorBatches
from .prepare import PreparedData, infer_task, prepare
from .preprocess import Preprocessor, TargetEncoder
from .sources import BUILTINS, RawData, from_arrays, load_source
from .splits import split_indices

__all__ = ["BUILTINS", "DeviceLoader", "PreparedData", "Preprocessor", "RawData", "TargetEncoder", "TensorBatches",
           "from_arrays", "infer_task", "load_source", "prepare", "split_indices"]
