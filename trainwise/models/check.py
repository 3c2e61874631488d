"""One eval-mode forward on two rows, so a model that does not fit the data is reported in words before training."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import TrainwiseError

__all__ = ["check_model_fits"]


def check_model_fits(model: nn.Module, x: torch.Tensor, recipe: dict, spec: str, expected: int | None) -> None:
    """One eval-mode forward on two rows, so a shape mismatch is reported in words before training."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        raise TrainwiseError(f"model '{spec}' cannot take the data: input rows have shape {tuple(x.shape[1:])} "
                             f"({type(e).__name__}: {str(e).splitlines()[0]})",
                             hint=f"make the model accept inputs of shape (batch, {', '.join(map(str, x.shape[1:]))})") from None
    finally:
        model.train(was)
    if expected is not None and tuple(out.shape) != (len(x), expected):
        raise TrainwiseError(f"model '{spec}' returns outputs of shape {tuple(out.shape)} for {len(x)} rows; "
                             f"the loss needs ({len(x)}, {expected})",
                             hint=f"make the model's last layer produce {expected} output(s) per row")
