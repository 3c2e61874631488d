"""Tuning and model selection: the sanity check, the learning-rate range test, k-fold cross-validation,
hyperparameter search, the `auto` recipe and ensembles of trained runs."""
from ..train.lr_finder import LRFinderResult, lr_find
from .cv import CVResult, cross_validate
from .sanity import SanityResult, sanity
from .search import grid_points, load_space, sample_random, tune

__all__ = ["CVResult", "LRFinderResult", "SanityResult", "cross_validate", "sanity", "grid_points", "load_space", "lr_find", "sample_random", "tune"]
