"""Checking a trainer state (a checkpoint read back) before anything is restored from it: the layout
`Trainer.state_dict` writes, counters that can happen (history one row per epoch, at least one optimizer step
per epoch), and model and optimizer tensors that fit the trainer's own. A checkpoint of another model, or an
edited one, is an error naming the file, not a crash halfway through a resumed run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runs import check_fields, check_tensors_match, damaged, is_int, is_number, load_checkpoint

__all__ = ["check_trainer_state", "load_trainer_state"]


def _byte_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1


_COUNT = (lambda v: is_int(v) and v >= 0, "an integer >= 0")
_STATE = {
    "model": (lambda v: isinstance(v, dict), "an object of tensors"),
    "optimizer": (lambda v: v is None or isinstance(v, dict), "null or an optimizer state"),
    "scaler": (lambda v: v is None or isinstance(v, dict), "null or a grad-scaler state"),
    "callbacks": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(s, dict) for k, s in v.items()),
                  "an object of callback states"),
    "epoch": _COUNT, "step": _COUNT, "train_samples": _COUNT,
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v), "a list of per-epoch rows"),
    "train_time_s": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "rng": (lambda v: isinstance(v, dict), "an object of RNG states"),
    "data": (lambda v: isinstance(v, dict), "the training batches' state"),
    "stop": (lambda v: v is None or isinstance(v, str), "null or the reason a stop was requested"),
}
_RNG = {"torch": (lambda v: _byte_tensor(v) and v.numel() == torch.get_rng_state().numel(), "a torch RNG state (uint8 tensor)"),
        "cuda": (lambda v: isinstance(v, list) and all(_byte_tensor(t) for t in v), "a list of CUDA RNG states")}


def check_trainer_state(state: Any, *, source: str | Path, model: nn.Module | None = None,
                        optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """``state`` (read from ``source``) if it is a trainer state that ``model`` and ``optimizer`` (when given)
    can continue from; otherwise an error naming ``source``."""
    check_fields(state, _STATE, path=source, optional=["data", "stop"])
    check_fields(state["rng"], _RNG, path=source, where="rng.")
    epoch, step, history = state["epoch"], state["step"], state["history"]
    if len(history) != epoch:
        raise damaged(source, f"its history has {len(history)} epoch rows but its epoch counter says {epoch}")
    bad = next((i for i, row in enumerate(history) if row.get("epoch", i + 1) != i + 1), None)
    if bad is not None:
        raise damaged(source, f"history row {bad + 1} says epoch {history[bad].get('epoch')!r}")
    if step < epoch:
        raise damaged(source, f"its step counter ({step}) is below its epoch counter ({epoch}); every epoch takes at "
                              "least one optimizer step")
    if model is not None:
        check_tensors_match(model.state_dict(), state["model"], path=source, what="this run's model")
    if optimizer is not None and state["optimizer"] is not None:
        _check_optimizer(state["optimizer"], optimizer, source)
    return state


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, source: str | Path) -> None:
    check_fields(saved, {"state": (lambda v: isinstance(v, dict), "an object"),
                         "param_groups": (lambda v: isinstance(v, list) and all(
                             isinstance(g, dict) and isinstance(g.get("params"), list) and all(is_int(i) for i in g["params"])
                             for g in v), "a list of parameter groups")}, path=source, where="optimizer.")
    own = [g["params"] for g in optimizer.param_groups]
    sizes = [len(g["params"]) for g in saved["param_groups"]]
    if sizes != [len(g) for g in own]:
        raise damaged(source, f"its optimizer has parameter groups of sizes {sizes}, this run's optimizer {[len(g) for g in own]}",
                      "the checkpoint belongs to another model or optimizer: resume the run it came from, or start again")
    params = {i: p for g, ps in zip(saved["param_groups"], own) for i, p in zip(g["params"], ps)}
    for index, entry in saved["state"].items():
        if index not in params or not isinstance(entry, dict):
            raise damaged(source, f"its optimizer state has an entry for unknown parameter {index!r}")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[index].shape:
                raise damaged(source, f"optimizer state '{name}' of parameter {index} has shape {tuple(value.shape)}, "
                                      f"but the parameter has {tuple(params[index].shape)}",
                              "the checkpoint belongs to another model: resume the run it came from, or start again")


def load_trainer_state(path: str | Path, *, map_location: str | torch.device | None = None) -> dict[str, Any]:
    """A checkpoint file read back and checked (`check_trainer_state`); errors name ``path``."""
    return check_trainer_state(load_checkpoint(path, map_location=map_location), source=path)
