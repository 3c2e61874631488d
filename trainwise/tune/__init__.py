"""Tuning and model selection: the learning-rate range test, k-fold cross-validation."""
from .cv import CVResult, cross_validate
from .lr_finder import LRFinderResult, lr_find

__all__ = ["CVResult", "LRFinderResult", "cross_validate", "lr_find"]
