"""Diagnostics: can the model learn at all (sanity)."""
from .sanity import SanityResult, sanity

__all__ = ["SanityResult", "sanity"]
