"""``trainwise export``: a saved run as an ONNX model for deployment, with its preprocessing folded in where it
is arithmetic (median fill of numeric columns, standardization, image normalization) and its outputs in the
user's terms (class probabilities; regression values in the target's own units).

Text columns are one-hot (or target) encoded from strings, which an ONNX graph of numbers cannot take as they are: a run with
such columns is exported taking the *encoded* feature vector, and ``<name>.json`` beside the model says so and
names the features in order (``SavedModel.preprocess.transform`` makes them); the preprocessing that was not
folded in is saved beside the model too, ``<name>.preprocess.json`` (the run's preprocess.json: every column's
categories, fill values and statistics, plain data). The ONNX model and its JSON files are written atomically;
nothing is pickled.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.preprocess import soft_clip
from .errors import TrainwiseError
from .inference import SavedModel, load
from .runs import atomic_write, check_output_file

__all__ = ["export", "ExportedModel", "FORMATS", "check_onnx"]

FORMATS = ("onnx",)


class ExportedModel(nn.Module):
    """The run's model between its folded preprocessing and its readable outputs: ``x`` -> (fill NaN with the
    training medians) -> (x - mean) / std -> model -> softmax probabilities | [1 - p, p] | value · std + mean."""

    def __init__(self, saved: SavedModel):
        super().__init__()
        pre, t = saved.preprocess, saved.target
        self.model, self.kind = saved.model, saved.kind
        self.raw = not pre.categories_ and not pre.encoded_  # numbers only: the whole preprocessing is arithmetic
        fill = [float(pre.fill_.get(c, float("nan"))) for c in (pre.columns_ or [])] if pre.fill_ and self.raw else None
        self.register_buffer("fill", torch.tensor(fill, dtype=torch.float32) if fill else torch.zeros(0))
        mean = torch.tensor(pre.mean_ if pre.mean_ is not None else [], dtype=torch.float32)
        std = torch.tensor(pre.std_ if pre.std_ is not None else [], dtype=torch.float32)
        shape = saved.summary.get("data", {}).get("input_shape") or []
        if len(shape) == 3 and mean.numel():  # images: one statistic per channel
            mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
        self.standardize = bool(mean.numel()) and self.raw
        numeric = [c for c in (pre.columns_ or []) if c not in pre.categories_]
        clip = torch.tensor([c in pre.robust_ for c in numeric], dtype=torch.bool) if pre.robust_ and self.raw else torch.zeros(0, dtype=torch.bool)
        self.register_buffer("clip", clip)  # the robust-scaled columns, soft-clipped as the preprocessing does
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("t_mean", torch.tensor(t.mean, dtype=torch.float32))  # one per target column
        self.register_buffer("t_std", torch.tensor(t.std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill.numel():
            x = torch.where(torch.isnan(x), self.fill, x)
        if self.standardize:
            x = (x - self.mean) / self.std
        if self.clip.numel():
            x = torch.where(self.clip, soft_clip(x), x)
        out = self.model(x).float()
        if self.kind == "multiclass":
            return out.softmax(-1)
        if self.kind == "multilabel":  # the probability of a 1 in each label column
            return out.sigmoid()
        if self.kind == "binary":
            p = out.reshape(-1, 1).sigmoid()
            return torch.cat([1 - p, p], 1)
        return out * self.t_std + self.t_mean


def export(run_dir: str | Path, output: str | Path | None = None, *, format: str = "onnx", trust_code: bool = False) -> Path:
    """Write the run's model as ONNX (default ``RUN_DIR/model.onnx``) and its description ``<output>.json`` (model.onnx.json)
    (input: raw columns or encoded features; output: class names or target), returning the model's path.

    >>> import numpy as np, tempfile, trainwise
    >>> X = np.random.default_rng(0).normal(size=(90, 3)); y = (X[:, 0] > 0).astype(int)
    >>> run = tempfile.mkdtemp() + "/run"
    >>> _ = trainwise.fit(X, y, run_dir=run, epochs=2, quiet=True)
    >>> export(run).name
    'model.onnx'
    """
    if format not in FORMATS:
        raise TrainwiseError(f"unknown export format '{format}'", hint=f"use one of: {', '.join(FORMATS)}")
    saved = load(run_dir, trust_code=trust_code)
    output = Path(output) if output is not None else saved.path / "model.onnx"
    if output.suffix.lower() != ".onnx":
        raise TrainwiseError(f"--output '{output}' does not end in .onnx", hint="name the file e.g. model.onnx")
    check_output_file(output)
    wrapper = ExportedModel(saved).eval()
    description = output.with_name(output.name + ".json")
    beside = None if wrapper.raw else output.with_suffix(".preprocess.json")
    for path in (description, beside):  # every file it writes, before the first is written
        if path is not None and path.is_dir():
            raise TrainwiseError(f"--output '{output}': the file written beside it, '{path}', is a folder",
                                 hint="remove or rename that folder, or give --output another name")
    pre = saved.preprocess
    shape = saved.summary.get("data", {}).get("input_shape")
    n_inputs = len(pre.columns_) if pre.columns_ is not None and wrapper.raw else None
    example = torch.zeros(2, *(shape if n_inputs is None else [n_inputs]))
    _to_onnx(wrapper, example, output)
    describe = {
        "format": "onnx", "run": str(saved.path), "input": "x", "output": "probabilities" if saved.classes_ else "prediction",
        "input_is": ("raw columns, in this order (NaN where a value is missing)" if n_inputs is not None and pre.columns_ else
                     "raw features: the same numbers as the training array" if wrapper.raw else
                     "encoded features (text columns one-hot or target-encoded): SavedModel.preprocess.transform(table) makes them"),
        "input_shape": ["batch", *example.shape[1:]],
        "columns": pre.columns_ if n_inputs is not None else None,
        "features": pre.feature_names_ if not wrapper.raw else None,
        "classes": saved.classes_, "target": saved.summary.get("data", {}).get("target"),
        "folded": [name for name, on in (("median fill", wrapper.fill.numel() > 0), ("standardization", wrapper.standardize),
                                          ("robust scaling and soft clip", wrapper.clip.numel() > 0)) if on],
    }
    if beside is not None:  # not folded in: the preprocessing goes beside the model, as data
        atomic_write(beside, (saved.path / "preprocess.json").read_bytes())
        describe["preprocess"] = beside.name
    atomic_write(description, json.dumps(describe, indent=2) + "\n")
    return output


def _to_onnx(module: nn.Module, example: torch.Tensor, output: Path) -> None:
    """torch's exporter (torch.export + onnxscript), with a batch dimension of any size, written atomically."""
    try:
        import onnxscript  # noqa: F401 - lazy: the exporter's dependency, checked first for a clear error
    except ImportError:
        raise TrainwiseError("ONNX export needs the packages onnx and onnxscript, which are not installed",
                             hint="pip install 'trainwise[export]' (onnx, onnxscript, onnxruntime)") from None

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), _quiet_logs():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, input_names=["x"],
                                    output_names=["probabilities" if module.kind != "regression" else "prediction"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(fd)
    try:
        program.save(tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _quiet_logs:
    """The exporter logs a warning per missing optional op library (torchvision); they say nothing about this model."""

    def __enter__(self):
        self.logger = logging.getLogger("torch.onnx")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def check_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on ``x`` (float32): what a deployment would compute."""
    import onnxruntime  # lazy: only for checking an export

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]
