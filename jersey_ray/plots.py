"""Drawing shared by TensorBoard (each trial's test confusion) and the collector's figures.

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas: no display, no global
pyplot state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from jersey_ray.metrics import N_ONES, N_TENS, confusion

TENS_LABELS = [str(d) for d in range(10)] + ["blank"]
ONES_LABELS = [str(d) for d in range(10)]
HEADS = {"tens": (N_TENS, TENS_LABELS), "ones": (N_ONES, ONES_LABELS)}
"""Head name -> (classes, tick labels)."""


def draw_confusion(ax: Any, counts: np.ndarray, head: str) -> Any:
    """One head's confusion matrix on ``ax``: colour = % of the true class (row), text = count."""
    labels = HEADS[head][1]
    rows = counts.sum(1, keepdims=True)
    pct = np.divide(100.0 * counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    image = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for (i, j), c in np.ndenumerate(counts):
        if c:
            color = "white" if pct[i, j] > 60 else "black"
            ax.text(j, i, str(c), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(f"predicted {head}")
    ax.set_ylabel(f"true {head}")
    acc = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{head} digit: accuracy {acc:.4f} (n={counts.sum()})")
    return image


def confusion_figure(
    truth: dict[str, np.ndarray], pred: dict[str, np.ndarray], heads: tuple[str, ...], title: str
) -> Figure:
    """The confusion matrices of ``heads`` ("tens", "ones") side by side; ``truth`` and ``pred``
    map a head to its label arrays."""
    fig = Figure(figsize=(7 * len(heads), 6.5))
    axes = np.atleast_1d(fig.subplots(1, len(heads)))
    image = None
    for ax, head in zip(axes, heads, strict=True):
        counts = confusion(truth[head], pred[head], HEADS[head][0])
        image = draw_confusion(ax, counts, head)
    assert image is not None  # heads is never empty
    fig.colorbar(image, ax=list(axes), label="% of the true class (row)", shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return fig
