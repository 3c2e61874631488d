"""Plots as PNG (matplotlib's Agg backend, no display needed): learning curves, confusion matrix, gradient flow."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np

from ..runs import atomic_write

__all__ = ["plot_curves", "plot_confusion", "plot_gradient_flow", "plot_lr_find", "confusion_matrix"]


def _pyplot():
    import matplotlib  # heavy: loaded at the first plot, so `import trainwise` stays fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend

    return plt


def _save(fig, path: str | Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_curves(history: list[dict[str, float]], path: str | Path, *, metric: str, best_epoch: int | None = None) -> None:
    """Loss and ``metric``, train vs validation, per epoch; the best epoch marked with a dashed line."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("loss", metric)):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}/{name}"
            if history and key in history[0]:
                ax.plot(epochs, [h[key] for h in history], style, label=key)
        if best_epoch:
            ax.axvline(best_epoch, color="tab:red", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name}: train vs validation")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def confusion_matrix(y_true, y_pred, n_classes: int) -> list[list[int]]:
    """Counts: row = true class, column = predicted class.

    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """

    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m.tolist()


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: str | Path, *, title: str = "test split") -> None:
    """The confusion matrix as a heat map with counts; rows are true classes."""

    plt = _pyplot()
    m = np.asarray(matrix)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * k, 1.0 + 0.5 * k))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title})")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    _save(fig, path)


def plot_gradient_flow(weight_names: list[str], grad_norms: list[list[float]], path: str | Path) -> None:
    """Per-layer gradient norm (log scale), input layer on the left: one faint line per sampled epoch and the
    median in bold. A slope down to the left of several orders of magnitude is vanishing gradients."""

    plt = _pyplot()
    g = np.asarray(grad_norms, dtype=float)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(weight_names) + 2), 4))
    x = np.arange(len(weight_names))
    for row in g:
        ax.plot(x, np.where(row > 0, row, np.nan), color="tab:blue", alpha=0.15)
    ax.plot(x, np.nanmedian(np.where(g > 0, g, np.nan), axis=0), "o-", color="tab:blue", label="median over epochs")
    ax.set_yscale("log")
    ax.set_xticks(x, weight_names, rotation=45, ha="right")
    ax.set_ylabel("gradient norm")
    ax.set_title("gradient flow (first step of each epoch)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_lr_find(lrs: list[float], losses: list[float], smoothed: list[float], suggestion: float | None,
                 path: str | Path) -> None:
    """Loss against learning rate (log x axis), raw and smoothed, the suggested LR marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses, color="tab:blue", alpha=0.3, label="loss")
    ax.plot(lrs, smoothed, color="tab:blue", label="smoothed")
    if suggestion:
        ax.axvline(suggestion, color="tab:red", linestyle=":", label=f"suggested {suggestion:.1e}")
    finite = [v for v in smoothed if v == v]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
