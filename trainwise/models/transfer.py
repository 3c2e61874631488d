"""Transfer learning: start from saved weights, freeze layers, unfreeze later with a lower learning rate.

Weights are matched by name and shape: a head whose size differs (another number of classes) keeps its
fresh initialization, i.e. it is replaced. Frozen parameters get ``requires_grad=False``; they stay in the
optimizer, which skips parameters without gradients, so unfreezing needs no new optimizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import TrainwiseError, did_you_mean

__all__ = ["load_initial_weights", "freeze", "parameter_layers"]


def load_initial_weights(model: nn.Module, source: str | Path) -> dict[str, Any]:
    """Copy every tensor of ``source`` (a run folder or a .safetensors file) whose name and shape match.

    Returns what happened: ``loaded`` count, ``replaced`` (same name, other shape: kept fresh), ``unused``.
    """
    path = Path(source)
    path = path / "model.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise TrainwiseError(f"init_from='{source}': no such run folder or .safetensors file",
                             hint="give a run folder (with model.safetensors) or a state dict saved with safetensors.torch.save_file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise TrainwiseError(f"init_from='{source}': cannot read '{path}' as safetensors: {e}",
                             hint="give a file written by safetensors.torch.save_file (or a trainwise run folder)") from None
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    replaced = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    unused = sorted(k for k in state if k not in own)
    if not loaded:
        raise TrainwiseError(f"init_from='{source}': none of its {len(state)} tensors match the model's names and shapes "
                             f"(it has e.g. {sorted(state)[:3]}; the model has {sorted(own)[:3]})",
                             hint="build the same architecture as the source (same --model, --batch-norm), or a file with matching names")
    model.load_state_dict(loaded, strict=False)
    return {"source": str(source), "loaded": len(loaded), "replaced": replaced, "unused": unused}


def parameter_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters, input first: what ``train_last`` counts."""
    return [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def freeze(model: nn.Module, *, train_last: int | None = None, prefixes: str | list[str] | None = None) -> list[str]:
    """Freeze all but the last ``train_last`` parameter layers and/or the parameters under ``prefixes``;
    returns the frozen parameter names.

    >>> m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> freeze(m, train_last=1)
    ['0.weight', '0.bias']
    """
    names = [n for n, _ in model.named_parameters()]
    frozen: set[str] = set()
    if train_last is not None:
        layers = parameter_layers(model)
        if train_last > len(layers):
            raise TrainwiseError(f"train_last={train_last} but the model has only {len(layers)} layers with parameters ({', '.join(layers)})",
                                 hint=f"use --train-last {len(layers)} or less")
        keep = layers[len(layers) - train_last:]
        frozen |= {n for n in names if n.rpartition(".")[0] not in keep}  # the owning module's name
    if prefixes:
        for prefix in [p.strip() for p in (prefixes.split(",") if isinstance(prefixes, str) else prefixes) if p.strip()]:
            hit = [n for n in names if n.startswith(prefix)]
            if not hit:
                hint = did_you_mean(prefix, names) or "parameter names: " + ", ".join(names[:12])
                raise TrainwiseError(f"freeze: no parameter name starts with '{prefix}'", hint=hint)
            frozen |= set(hit)
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    return [n for n in names if n in frozen]
