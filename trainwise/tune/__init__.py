"""Tuning: the learning-rate range test (more in later issues: search, cross-validation, the recipe)."""
from .lr_finder import LRFinderResult, lr_find

__all__ = ["LRFinderResult", "lr_find"]
