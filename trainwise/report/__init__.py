"""Reports: plots (curves, confusion matrix, gradient flow) and TensorBoard (imported lazily)."""
from .plots import confusion_matrix, plot_confusion, plot_curves, plot_gradient_flow

__all__ = ["confusion_matrix", "plot_confusion", "plot_curves", "plot_gradient_flow"]
