"""Plots as PNG (matplotlib's Agg backend, no display needed): learning curves, confusion matrix, gradient flow,
training images (as loaded and augmented), test images with their predictions, and regression fit/residuals."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np

from ..runs import atomic_write

__all__ = ["pyplot", "plot_curves", "plot_confusion", "plot_gradient_flow", "plot_lr_find", "confusion_matrix", "denormalize_images",
           "pick_by_class", "pick_test_samples", "regression_points", "plot_samples", "plot_test_predictions",
           "plot_regression"]


def pyplot():
    import matplotlib  # heavy: loaded at the first plot, so `import trainwise` stays fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend

    return plt


def _save(fig, path: str | Path) -> None:
    plt = pyplot()
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_curves(history: list[dict[str, float]], path: str | Path, *, metric: str, best_epoch: int | None = None) -> None:
    """Loss and ``metric``, train vs validation, per epoch; the best epoch marked with a dashed line."""
    plt = pyplot()
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

    plt = pyplot()
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
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black",
                    fontsize=8, in_layout=False)  # inside its cell: the layout need not measure it (the same PNG, faster)
    _save(fig, path)


def plot_gradient_flow(weight_names: list[str], grad_norms: list[list[float]], path: str | Path) -> None:
    """Per-layer gradient norm (log scale), input layer on the left: one faint line per sampled epoch and the
    median in bold. A slope down to the left of several orders of magnitude is vanishing gradients."""

    plt = pyplot()
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
    plt = pyplot()
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


# --- images and regression ----------------------------------------------------------------------------
def denormalize_images(X, mean, std) -> np.ndarray:
    """Normalized images (N, C, H, W) back to pixels: ``x * std + mean`` per channel (the inverse of the
    preprocessor's ``(p - mean) / std``; not clipped). One value given for a multi-channel set is used for each.

    >>> denormalize_images(np.zeros((1, 2, 1, 1)), [0.5, 0.1], [0.5, 2.0]).ravel().tolist()
    [0.5, 0.1]
    """
    X = np.asarray(X, dtype=np.float64)
    C = X.shape[1]
    mean, std = np.asarray(mean, dtype=np.float64).ravel(), np.asarray(std, dtype=np.float64).ravel()
    mean, std = np.resize(mean, C), np.resize(std, C)  # a single statistic repeats for every channel
    return X * std.reshape(1, C, 1, 1) + mean.reshape(1, C, 1, 1)


def pick_by_class(labels, n: int) -> list[int]:
    """Up to ``n`` row indices taken class by class in turn (each class's rows in their order), so every class
    shows before any shows twice.

    >>> pick_by_class([0, 0, 0, 1, 2, 1], 5)
    [0, 3, 4, 1, 5]
    """
    labels = np.asarray(labels).reshape(-1)
    queues = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    out: list[int] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        out += [q[depth] for q in queues if depth < len(q)]
        if len(out) >= n:
            break
    return out[:n]


def pick_test_samples(y_true, y_pred, n: int) -> list[int]:
    """Which test rows to show, ``n`` at most: the wrong predictions first (class by class of the true label),
    then correct ones. While correct ones exist, a quarter of the places is kept for them, for comparison.

    >>> pick_test_samples([0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 1, 0], 4)
    [3, 1, 0, 2]
    """
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    wrong, right = np.flatnonzero(y_true != y_pred), np.flatnonzero(y_true == y_pred)
    n_wrong = min(len(wrong), n - min(len(right), n // 4))
    chosen = wrong[pick_by_class(y_true[wrong], n_wrong)].tolist()
    return chosen + right[pick_by_class(y_true[right], n - len(chosen))].tolist()


def regression_points(pred, y, *, mean: float | list[float] = 0.0, std: float | list[float] = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True values, predictions and residuals (true - predicted) in the target's original units, from the model's
    outputs ``pred`` and the encoded targets ``y`` (both standardized with the training split's ``mean``/``std``;
    several targets: lists of them, and arrays of one column per target).

    >>> [v.tolist() for v in regression_points([0.0, 1.0], [1.0, 1.0], mean=10.0, std=2.0)]
    [[12.0, 12.0], [10.0, 12.0], [2.0, 0.0]]
    >>> regression_points([[0.0, 1.0]], [[1.0, 1.0]], mean=[10.0, 0.0], std=[2.0, 3.0])[1].tolist()
    [[10.0, 3.0]]
    """
    if isinstance(mean, list):  # several targets: one column each
        mean, std = np.asarray(mean), np.asarray(std)
        true = np.asarray(y, dtype=np.float64).reshape(-1, len(mean)) * std + mean
        predicted = np.asarray(pred, dtype=np.float64).reshape(-1, len(mean)) * std + mean
        return true, predicted, true - predicted
    true = np.asarray(y, dtype=np.float64).reshape(-1) * std + mean
    predicted = np.asarray(pred, dtype=np.float64).reshape(-1) * std + mean
    return true, predicted, true - predicted


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def _mosaic(ax, pixels: np.ndarray, cols: int, labels: list[str], *, lines: int = 1,
            wrong: list[bool] | None = None, title: str = "") -> None:
    """Draw images (N, C, H, W) in [0, 1] as one picture on ``ax`` (one imshow: 30 small axes would cost ~1 s),
    each with its label above it; the ``wrong`` ones labelled in red and framed."""
    n, C, H, W = pixels.shape
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo < -0.01 or hi > 1.01:  # not pixels in [0, 1] (e.g. an .npz of 0-255 values): stretch min..max for display
        pixels = (pixels - lo) / max(hi - lo, 1e-12)
    rows = -(-n // cols)
    gap_y, gap_x = int(np.ceil(H * 0.22 * lines)) + 2, max(2, W // 8)
    tiles = pixels[:, :3] if C >= 3 else pixels[:, :1].repeat(3, axis=1)  # gray (or other) -> RGB for one colormap
    canvas = np.ones((rows * (H + gap_y), cols * (W + gap_x), 3))
    plt = pyplot()
    for i in range(n):
        top, left = (i // cols) * (H + gap_y) + gap_y, (i % cols) * (W + gap_x) + gap_x // 2
        canvas[top:top + H, left:left + W] = np.clip(tiles[i], 0, 1).transpose(1, 2, 0)
        bad = bool(wrong and wrong[i])
        ax.text(left + W / 2, top - 1, labels[i], ha="center", va="bottom", fontsize=7,
                color="tab:red" if bad else "black", fontweight="bold" if bad else "normal")
        if bad:
            ax.add_patch(plt.Rectangle((left - 1, top - 1), W + 1, H + 1, fill=False, edgecolor="tab:red", linewidth=2))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def plot_samples(images: np.ndarray, labels: list[str], path: str | Path, *, mean=(0.0,), std=(1.0,),
                 augmented: np.ndarray | None = None, augment: str = "", cols: int = 8) -> None:
    """Training images (N, C, H, W), normalized with ``mean``/``std`` (undone here), each with its label (class
    name), as loaded; with ``augmented`` (the same images after the training batches' augmentation ``augment``,
    normalized the same way) a second block below.

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "samples.png"
    >>> plot_samples(np.zeros((2, 1, 8, 8)), ["cat", "dog"], path, mean=[0.5], std=[0.5]); path.read_bytes()[:4]
    b'\\x89PNG'
    """
    plt = pyplot()
    blocks = [(images, "training images as loaded")]
    if augmented is not None:
        blocks.append((augmented, f"the same images as the training batches see them (--augment {augment})"))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(len(blocks), 1, figsize=(1.1 * cols, (1.3 * rows + 0.4) * len(blocks)), squeeze=False)
    for ax, (x, title) in zip(axes[:, 0], blocks):
        _mosaic(ax, denormalize_images(x, mean, std), cols, [_short(t) for t in labels], title=title)
    _save(fig, path)


def plot_test_predictions(images: np.ndarray, y_true, y_pred, class_names: list[str], path: str | Path, *,
                          mean=(0.0,), std=(1.0,), n: int = 24, cols: int = 8) -> list[int]:
    """Test images (N, C, H, W; normalized with ``mean``/``std``, undone here) labelled "predicted / true", the
    wrong ones first, in red and framed (`pick_test_samples` chooses ``n``). Returns the indices shown, in order.

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "test_predictions.png"
    >>> plot_test_predictions(np.zeros((4, 1, 8, 8)), [0, 1, 0, 1], [0, 1, 1, 1], ["cat", "dog"], path)
    [2, 0, 1, 3]
    """
    plt = pyplot()
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    shown = pick_test_samples(y_true, y_pred, n)
    labels = [f"{_short(class_names[int(y_pred[i])])} /\n{_short(class_names[int(y_true[i])])}" for i in shown]
    n_wrong = int((y_true != y_pred).sum())
    rows = -(-len(shown) // cols)
    fig, ax = plt.subplots(figsize=(1.1 * cols, 1.5 * rows + 0.5))
    _mosaic(ax, denormalize_images(np.asarray(images)[shown], mean, std), cols, labels, lines=2,
            wrong=[bool(y_true[i] != y_pred[i]) for i in shown],
            title=f"test split: predicted / true — {n_wrong} of {len(y_true)} wrong (red, shown first)")
    _save(fig, path)
    return shown


def plot_regression(y_true, y_pred, path: str | Path, *, target_name: str | list[str] = "target") -> None:
    """Test split in original units: predicted vs true with the line y = x, and residuals (true - predicted)
    vs predicted with the zero line; several targets (arrays of one column each, a list of names): one row of
    the two panels per target.

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "regression.png"
    >>> plot_regression([1.0, 2.0, 3.0], [1.1, 1.9, 3.4], path, target_name="price"); path.is_file()
    True
    """
    plt = pyplot()
    names = [target_name] if isinstance(target_name, str) else list(target_name)
    y_true = np.asarray(y_true, dtype=float).reshape(-1, len(names))
    y_pred = np.asarray(y_pred, dtype=float).reshape(-1, len(names))
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 4.3 * len(names)), squeeze=False)
    for (a, b), name, t, p in zip(axes, names, y_true.T, y_pred.T):
        _regression_panels(a, b, t, p, name)
    _save(fig, path)


def _regression_panels(a, b, y_true: np.ndarray, y_pred: np.ndarray, target_name: str) -> None:
    resid = y_true - y_pred
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    r2 = f", R² {1 - float((resid ** 2).sum()) / ss_tot:.3f}" if ss_tot > 0 else ""
    alpha = 0.7 if len(y_true) <= 500 else 0.3
    a.scatter(y_true, y_pred, s=14, alpha=alpha)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    a.plot([lo, hi], [lo, hi], "--", color="tab:red", label="y = x (perfect)")
    a.set_xlabel(f"true {target_name}")
    a.set_ylabel(f"predicted {target_name}")
    a.set_title(f"test split: predicted vs true ({len(y_true)} rows{r2})")
    a.legend()
    b.scatter(y_pred, resid, s=14, alpha=alpha)
    b.axhline(0, linestyle="--", color="tab:red")
    b.set_xlabel(f"predicted {target_name}")
    b.set_ylabel("residual (true − predicted)")
    b.set_title(f"residuals: RMSE {float(np.sqrt((resid ** 2).mean())):.4g}, mean {float(resid.mean()):.3g}")
    for ax in (a, b):
        ax.grid(alpha=0.3)
