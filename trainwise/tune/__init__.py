"""Tuning and model selection: the learning-rate range test, k-fold cross-validation, hyperparameter search."""
from .cv import CVResult, cross_validate
from .lr_finder import LRFinderResult, lr_find
from .search import grid_points, load_space, sample_random, tune

__all__ = ["CVResult", "LRFinderResult", "cross_validate", "grid_points", "load_space", "lr_find", "sample_random", "tune"]
