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

from jersey_ray.metrics import number_string
from jersey_ray.plots import confusion_figure

DPI = 110
MISTAKES_CAP = 24
"""Rows on the mistakes sheet; the sheet states the total."""


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


def seen_vs_unseen(
    points: list[tuple[str, dict[str, Any], dict[str, Any]]], path: Path, *, phase: str
) -> Path:
    """Test acc_number on seen and on unseen (held-out) numbers per model: two markers joined
    by a line, error bars = sample std over seeds."""
    fig = Figure(figsize=(max(6.0, 0.9 * len(points) + 2.0), 5.0))
    ax = fig.add_subplot()
    labelled: set[str] = set()
    for x, (_, seen, unseen) in enumerate(points):
        if seen["n"] and unseen["n"]:
            ys = [seen["mean"], unseen["mean"]]
            ax.plot([x - 0.12, x + 0.12], ys, color="0.6", lw=1, zorder=1)
        for dx, stat, color, name in (
            (-0.12, seen, "tab:blue", "seen"),
            (0.12, unseen, "tab:orange", "unseen"),
        ):
            if stat["n"]:
                label = None if name in labelled else name
                labelled.add(name)
                ax.errorbar(
                    x + dx,
                    stat["mean"],
                    yerr=stat["std"] or 0.0,
                    fmt="o",
                    color=color,
                    capsize=4,
                    label=label,
                )
    ax.set_xticks(range(len(points)), [label for label, _, _ in points], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"{phase}: test acc_number on seen vs unseen numbers (± sample std over seeds)")
    ax.set_ylabel("acc_number")
    ax.grid(alpha=0.3, axis="y")
    if labelled:
        ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def confusion_png(
    truth: dict[str, np.ndarray], pred: dict[str, np.ndarray], path: Path, *, title: str
) -> Path:
    """Tens (11x11 with blank) and ones (10x10) confusion matrices side by side: colour = row %,
    text = count. ``truth`` and ``pred`` map "tens"/"ones" to label arrays."""
    fig = confusion_figure(truth, pred, ("tens", "ones"), f"Test-split confusion matrices\n{title}")
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
    # a GridSpec iterates through __getitem__, which mypy does not count as iterable
    for cell, m in zip(rows, shown, strict=False):  # type: ignore[call-overload]
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


def _test_predictions(checkpoint: Path, cache: str) -> tuple[Any, Any, Any]:
    # torch and the trial layer are needed only here: import them only when used
    import torch

    from jersey_ray.cache.loader import load_split
    from jersey_ray.errors import UserError
    from jersey_ray.train.checkpoint import load_model
    from jersey_ray.train.evaluate import evaluate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    trained = load_model(checkpoint, device=device)
    data = load_split(cache, "test", device)
    if tuple(data.size) != trained.data.size:
        raise UserError(
            f"{checkpoint} was trained on {trained.data.size} frames but the cache {cache} "
            f"has {tuple(data.size)}"
        )
    preds = evaluate(trained.model, data, batch_size=trained.train.eval_batch_size, keep=True)
    return data, preds.predictions, trained.model.input_frames


def error_figures(checkpoint: Path, cache: str, out_dir: Path, *, title: str) -> list[str]:
    """Confusion matrices and the mistakes sheet of one checkpoint on the cache's test split."""
    data, preds, input_frames = _test_predictions(checkpoint, cache)
    truth = {"tens": data.tens.cpu().numpy(), "ones": data.ones.cpu().numpy()}
    tens_prob, ones_prob = preds.tens_prob.numpy(), preds.ones_prob.numpy()
    pred = {"tens": tens_prob.argmax(1), "ones": ones_prob.argmax(1)}
    rows = np.arange(len(pred["tens"]))
    conf = tens_prob[rows, pred["tens"]] * ones_prob[rows, pred["ones"]]
    confusion = confusion_png(truth, pred, out_dir / "confusion.png", title=title)
    wrong = np.flatnonzero((truth["tens"] != pred["tens"]) | (truth["ones"] != pred["ones"]))
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:MISTAKES_CAP]
    mistakes = [_mistake(data, preds.weights, input_frames, int(i), pred, conf) for i in order]
    sheet = mistakes_sheet(
        mistakes, out_dir / "mistakes.png", title=title, total=len(wrong), n_test=len(rows)
    )
    return [confusion.name, sheet.name]


def _mistake(
    data: Any, weights: Any, input_frames: int | None, i: int, pred: dict, conf: np.ndarray
) -> Mistake:
    """Sequence ``i`` as the model saw it: its frames from the anchor on (all of them, or the
    model's ``input_frames``)."""
    start, length = int(data.offsets[i]), int(data.lengths[i])
    seen = length if input_frames is None else min(length, input_frames)
    return Mistake(
        seq_id=data.seq_id[i],
        frames=data.frames[start : start + seen].cpu().numpy(),
        truth=(int(data.tens[i]), int(data.ones[i])),
        pred=(int(pred["tens"][i]), int(pred["ones"][i])),
        confidence=float(conf[i]),
        weights=None if weights is None else weights[i, :seen].numpy(),
    )
