"""The phase figures: learning curves, accuracy vs parameters, and the error analysis
(confusion matrices and a mistakes sheet) of the run chosen on validation.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, so nothing
needs a display and no global pyplot state is touched.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from jersey_ray.metrics import N_ONES, N_TENS, number_string

DPI = 110
MISTAKES_CAP = 24
"""Rows on the mistakes sheet; the sheet states the total."""
TENS_LABELS = [str(d) for d in range(10)] + ["blank"]
ONES_LABELS = [str(d) for d in range(10)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def curve_band(series: list[dict[int, float]]) -> tuple[list[int], list[float], list[float]]:
    """Epochs, mean and sample std (0 where one seed reported the epoch) over seeds."""
    epochs = sorted({e for s in series for e in s})
    means, stds = [], []
    for e in epochs:
        values = [s[e] for s in series if e in s]
        means.append(statistics.fmean(values))
        stds.append(statistics.stdev(values) if len(values) >= 2 else 0.0)
    return epochs, means, stds


def learning_curves(curves: dict[str, list[dict[int, float]]], path: Path, *, phase: str) -> Path:
    """Validation acc_number per epoch: one mean line per model with a ±1 sample-std band."""
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot()
    for (label, series), color in zip(curves.items(), _colors(len(curves)), strict=True):
        epochs, mean, std = curve_band([s for s in series if s])
        if not epochs:
            continue
        # Drawn within [0, 1]: a band below 0 (n = 2, a large std) only hides the other lines.
        lo = [max(m - s, 0.0) for m, s in zip(mean, std, strict=True)]
        hi = [min(m + s, 1.0) for m, s in zip(mean, std, strict=True)]
        ax.plot(epochs, mean, color=color, lw=1.8, label=f"{label} (n={len(series)})")
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.18, lw=0)
    ax.set_title(f"{phase}: validation acc_number per epoch (mean ± sample std over seeds)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation acc_number")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def accuracy_vs_params(
    points: list[tuple[str, int | None, dict[str, Any]]], path: Path, *, phase: str
) -> Path:
    """Test acc_number (mean, error bar = sample std) against trainable parameters, log x."""
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    shown = [(label, p, s) for label, p, s in points if p and s["n"]]
    for (label, params, stat), color in zip(shown, _colors(len(shown)), strict=True):
        err = stat["std"] or 0.0
        ax.errorbar(
            params,
            stat["mean"],
            yerr=err,
            fmt="o",
            color=color,
            capsize=4,
            label=f"{label} (n={stat['n']})",
        )
        ax.annotate(
            label, (params, stat["mean"]), textcoords="offset points", xytext=(6, 4), fontsize=7
        )
    ax.set_xscale("log")
    millions = FuncFormatter(lambda x, _: f"{x / 1e6:.3g}M")
    ax.xaxis.set_major_formatter(millions)
    ax.xaxis.set_minor_formatter(millions)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_title(f"{phase}: test acc_number vs parameters (error bars: sample std over seeds)")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test acc_number")
    ax.grid(alpha=0.3, which="both")
    if shown:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def confusion_counts(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def _confusion_axes(ax: Any, counts: np.ndarray, labels: list[str], name: str) -> Any:
    rows = counts.sum(1, keepdims=True)
    pct = np.divide(100.0 * counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    image = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(
                j,
                i,
                str(c),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if pct[i, j] > 60 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel(f"predicted {name}")
    ax.set_ylabel(f"true {name}")
    acc = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{name} digit: accuracy {acc:.4f} (n={counts.sum()})")
    return image


def confusion_figure(
    tens: tuple[np.ndarray, np.ndarray],
    ones: tuple[np.ndarray, np.ndarray],
    path: Path,
    *,
    title: str,
) -> Path:
    """Tens (11x11 with blank) and ones (10x10) confusion matrices: colour = row %, text = count.

    ``tens`` and ``ones`` are (true, predicted) label arrays.
    """
    fig = Figure(figsize=(14, 6.5))
    axes = fig.subplots(1, 2)
    _confusion_axes(axes[0], confusion_counts(*tens, N_TENS), TENS_LABELS, "tens")
    image = _confusion_axes(axes[1], confusion_counts(*ones, N_ONES), ONES_LABELS, "ones")
    fig.colorbar(image, ax=list(axes), label="% of the true class (row)", shrink=0.8)
    fig.suptitle(f"Test-split confusion matrices\n{title}", fontsize=10)
    return _save(fig, path)


@dataclass
class Mistake:
    """One misclassified sequence as the mistakes sheet shows it."""

    seq_id: str
    frames: np.ndarray
    """[T, H, W, 3] uint8, the frames the model saw, in stored order."""
    truth: tuple[int, int]
    pred: tuple[int, int]
    confidence: float
    """Probability of the predicted number: p(tens) x p(ones) (the heads are separate)."""
    weights: np.ndarray | None = None
    """[T] attention weight per frame (attention models only)."""


def sheet_rows(mistakes: list[Mistake]) -> list[Mistake]:
    """The mistakes the sheet shows: the most confident first, at most MISTAKES_CAP."""
    return sorted(mistakes, key=lambda m: -m.confidence)[:MISTAKES_CAP]


FRAME_W_IN = 0.55
"""Displayed width of one frame on the mistakes sheet (inches); heights keep the aspect."""
SHEET_MIN_W_IN = 6.0


def mistakes_sheet(
    mistakes: list[Mistake], path: Path, *, title: str, total: int, n_test: int
) -> Path:
    """The most confident mistakes first, one strip of frames per row, capped at MISTAKES_CAP."""
    return _save(mistakes_figure(mistakes, title=title, total=total, n_test=n_test), path)


def mistakes_figure(mistakes: list[Mistake], *, title: str, total: int, n_test: int) -> Figure:
    """The figure :func:`mistakes_sheet` saves."""
    shown = sheet_rows(mistakes)
    header = (
        f"{title}\nMisclassified test sequences: {total} of {n_test}; showing {len(shown)} "
        "(most confident first). Confidence = p(tens) × p(ones) of the prediction."
    )
    if not shown:
        fig = Figure(figsize=(SHEET_MIN_W_IN, 1.5))
        text = _wrap(header + "\nNo mistakes.", SHEET_MIN_W_IN)
        fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=9)
        return fig
    h, w = shown[0].frames.shape[1:3]
    # pad every strip to the same number of frame slots so that frames keep their aspect
    slots = max(max(m.frames.shape[0] for m in shown), math.ceil(SHEET_MIN_W_IN / FRAME_W_IN))
    fig_w = slots * FRAME_W_IN / 0.94
    attention = any(m.weights is not None for m in shown)
    ratios = [FRAME_W_IN * h / w, 0.4] if attention else [FRAME_W_IN * h / w]
    gap = 0.55  # inches per row for its title and the frame numbers
    header = _wrap(header, fig_w)
    # the header hangs a fixed distance from the top edge: suptitle's default y (a fraction of
    # the height) sinks it into the first row of a tall sheet
    margin = 0.1
    top = margin + 0.18 * (header.count("\n") + 1) + 0.3  # + the first row's own title
    fig = Figure(figsize=(fig_w, len(shown) * (sum(ratios) + gap) + top))
    rows = fig.add_gridspec(
        len(shown),
        1,
        hspace=gap / sum(ratios),
        left=0.03,
        right=0.97,
        top=1 - top / fig.get_figheight(),
        bottom=0.2 / fig.get_figheight(),
    )
    for cell, m in zip(rows, shown, strict=False):
        sub = cell.subgridspec(len(ratios), 1, height_ratios=ratios, hspace=0.08)
        _mistake_row(fig, sub, m, slots, attention)
    fig.suptitle(header, fontsize=9, y=1 - margin / fig.get_figheight(), va="top")
    return fig


def _wrap(text: str, width_in: float) -> str:
    """Wrap each line of a 9-point title to the figure width (about 14 characters per inch)."""
    chars = max(int(width_in * 14), 40)
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def _mistake_row(fig: Figure, grid: Any, m: Mistake, t_max: int, attention: bool) -> None:
    t, h, w = m.frames.shape[:3]
    strip = np.full((h, t_max * w, 3), 255, dtype=np.uint8)  # white beyond a short sequence
    strip[:, : t * w] = np.concatenate(list(m.frames), axis=1)
    ax = fig.add_subplot(grid[0])
    ax.imshow(strip, extent=(0, t_max * w, h, 0), aspect="auto")
    ax.set_yticks([])
    centers = [(i + 0.5) * w for i in range(t)]
    ax.set_xticks(centers, [str(i) for i in range(t)], fontsize=6)
    truth, pred = number_string(*m.truth), number_string(*m.pred)
    ax.set_title(
        f"{m.seq_id}: true {truth}, predicted {pred} (confidence {m.confidence:.2f})",
        fontsize=8,
        loc="left",
    )
    if not attention:
        return
    ax.tick_params(labelbottom=False)
    bars = fig.add_subplot(grid[1], sharex=ax)
    if m.weights is not None:
        bars.bar(centers, m.weights[:t], width=0.8 * w, color="tab:orange")
        bars.set_ylim(0, max(float(m.weights[:t].max()), 1e-6) * 1.15)
    bars.set_ylabel("attn", fontsize=7)
    bars.tick_params(labelsize=6)


def _test_predictions(checkpoint: Path, cache: str) -> tuple[Any, Any, bool]:
    # torch, the model zoo and the loader are needed only here: import them only when used
    import torch

    from jersey_ray.errors import UserError
    from jersey_ray.loader import load_split
    from jersey_ray.models import get_spec
    from jersey_ray.predict import load_checkpoint, predict

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, cfg, _ = load_checkpoint(checkpoint, device=device)
    spec = get_spec(cfg.model)
    data = load_split(cache, "test", device)
    if tuple(data.size) != tuple(cfg.size):
        raise UserError(
            f"{checkpoint} was trained on {cfg.size} frames but the cache {cache} has {data.size}"
        )
    preds = predict(model, data, sequence=spec.sequence, attention=spec.attention, device=device)
    return data, preds, spec.sequence


def error_figures(checkpoint: Path, cache: str, out_dir: Path, *, title: str) -> list[str]:
    """Confusion matrices and the mistakes sheet of one checkpoint on the cache's test split."""
    data, preds, sequence = _test_predictions(checkpoint, cache)
    truth = data.tens.cpu().numpy(), data.ones.cpu().numpy()
    tens_prob, ones_prob = preds.tens_prob.numpy(), preds.ones_prob.numpy()
    pred = tens_prob.argmax(1), ones_prob.argmax(1)
    rows = np.arange(len(pred[0]))
    conf = tens_prob[rows, pred[0]] * ones_prob[rows, pred[1]]
    confusion = confusion_figure(
        (truth[0], pred[0]), (truth[1], pred[1]), out_dir / "confusion.png", title=title
    )
    wrong = np.flatnonzero((truth[0] != pred[0]) | (truth[1] != pred[1]))
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:MISTAKES_CAP]
    mistakes = [_mistake(data, preds.weights, sequence, int(i), pred, conf) for i in order]
    sheet = mistakes_sheet(
        mistakes, out_dir / "mistakes.png", title=title, total=len(wrong), n_test=len(rows)
    )
    return [confusion.name, sheet.name]


def _mistake(
    data: Any,
    weights: Any,
    sequence: bool,
    i: int,
    pred: tuple[np.ndarray, np.ndarray],
    conf: np.ndarray,
) -> Mistake:
    start, length = int(data.offsets[i]), int(data.lengths[i])
    frames = data.frames[start : start + length].cpu().numpy()
    if not sequence:  # a single-frame model saw only the anchor
        anchor = int(data.anchor[i])
        frames = frames[anchor : anchor + 1]
    return Mistake(
        seq_id=data.seq_id[i],
        frames=frames,
        truth=(int(data.tens[i]), int(data.ones[i])),
        pred=(int(pred[0][i]), int(pred[1][i])),
        confidence=float(conf[i]),
        weights=None if weights is None else weights[i, :length].numpy(),
    )
