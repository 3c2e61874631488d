"""Models: spec strings and recipes -> nn.Modules; checking recipes read back; weight initialization."""
from .builders import ACTIVATIONS, MLP, build_model, is_builtin_spec, resolve_model
from .init import INITS, init_weights
from .recipe import check_recipe, user_code

__all__ = ["ACTIVATIONS", "INITS", "MLP", "build_model", "check_recipe", "init_weights", "is_builtin_spec", "resolve_model",
           "user_code"]
