"""Diagnostics: can the model learn at all (sanity), gradient checks, the backprop walk-through."""
from .backprop import explain_backprop, format_backprop
from .gradcheck import GradcheckResult, gradcheck
from .sanity import SanityResult, sanity

__all__ = ["GradcheckResult", "SanityResult", "explain_backprop", "format_backprop", "gradcheck", "sanity"]
