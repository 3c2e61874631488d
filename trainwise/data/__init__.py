"""Data: sources -> splits -> preprocessing (fit on train) -> batches."""
from .batching import DeviceLoader, TensorBatches, to_tensors
from .columns import check_weights, weights_summary
from .prepare import PreparedData, PreparedDataset, infer_task, prepare, prepare_dataset
from .preprocess import Preprocessor, TargetEncoder
from .raw import RawData
from .sources import BUILTINS, from_arrays, from_table, load_source, open_npz, read_npz_array, read_table, weigh_rows
from .splits import fold_indices, split_indices

__all__ = ["BUILTINS", "DeviceLoader", "PreparedData", "PreparedDataset", "Preprocessor", "RawData", "TargetEncoder", "TensorBatches",
           "check_weights", "fold_indices", "from_arrays", "from_table", "infer_task", "load_source", "open_npz", "prepare",
           "prepare_dataset", "read_npz_array", "read_table", "split_indices", "to_tensors", "weigh_rows", "weights_summary"]
