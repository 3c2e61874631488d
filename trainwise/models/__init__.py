"""Models: spec strings and recipes -> nn.Modules."""
from .builders import ACTIVATIONS, MLP, build_model, resolve_model

__all__ = ["ACTIVATIONS", "MLP", "build_model", "resolve_model"]
