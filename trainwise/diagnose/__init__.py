"""Diagnostics: the training doctor (health tracking + rules), gradient checks, the backprop walk-through.
(The "can the model learn at all" check is `trainwise.tune.sanity`: it trains through the pipeline.)"""
from .backprop import explain_backprop, format_backprop
from .gradcheck import GradcheckResult, gradcheck

__all__ = ["GradcheckResult", "explain_backprop", "format_backprop", "gradcheck"]
