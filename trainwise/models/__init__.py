"""Models: spec strings and recipes -> nn.Modules; weight initialization."""
from .builders import ACTIVATIONS, MLP, build_model, resolve_model
from .init import INITS, init_weights

__all__ = ["ACTIVATIONS", "INITS", "MLP", "build_model", "init_weights", "resolve_model"]
