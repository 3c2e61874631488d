"""Learning curves as PNG (matplotlib, no display needed)."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(history: list[dict[str, float]], path: str | Path, *, metric: str, best_epoch: int | None = None) -> None:
    """Loss and ``metric``, train vs validation, per epoch; the best epoch marked with a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..runs import atomic_write

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
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
