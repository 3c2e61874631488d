"""Reports: plots (more in later issues)."""
from .plots import plot_curves

__all__ = ["plot_curves"]
