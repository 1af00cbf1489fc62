"""The one evaluation loop: a model (or any forward function) over a split, in stored order.

Training's validation and test, the collector's error analysis, the deployment benchmark's
accuracy check and ``predict`` all run :func:`infer` (batches and outputs) or :func:`evaluate`
(metrics, and optionally every sequence's probabilities). Evaluation runs in eval mode, fp32,
with no augmentation.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from jersey_ray import metrics as M
from jersey_ray.cache.loader import Batch, SplitData, iter_batches
from jersey_ray.models import ModelOutput

Forward = Callable[[torch.Tensor, torch.Tensor], ModelOutput]
"""``(frames, mask) -> ModelOutput``: a model, or a deployment variant's call."""

PREDICTION_COLUMNS = (
    "seq_id", "track", "jersey", "pred_tens", "pred_ones", "p_tens", "p_ones", "correct",
)  # fmt: skip


@dataclass
class Predictions:
    """Per-sequence outputs in the split's stored order, on the host."""

    tens_prob: torch.Tensor
    """[N, 11] softmax of the tens head (index 10 = blank)."""
    ones_prob: torch.Tensor
    """[N, 10] softmax of the ones head."""
    weights: torch.Tensor | None
    """[N, Tmax] per-frame pooling weights (0 past a sequence's length); None without them."""

    @property
    def tens(self) -> torch.Tensor:
        return self.tens_prob.argmax(1)

    @property
    def ones(self) -> torch.Tensor:
        return self.ones_prob.argmax(1)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    """``<split>_loss``, ``<split>_acc_number``, ``<split>_acc_tens``, ``<split>_acc_ones``."""
    predictions: Predictions | None


def infer(
    forward: Forward, data: SplitData, *, batch_size: int, frames: int | None
) -> Iterator[tuple[Batch, ModelOutput]]:
    """Every batch of ``data`` in stored order with ``forward``'s output, without gradients.

    ``frames``: frames per sequence the model reads (its ``input_frames``; None: all).
    """
    with torch.no_grad():
        for batch in iter_batches(data, batch_size, frames=frames, shuffle=False):
            yield batch, forward(batch.frames, batch.mask)


def evaluate(
    model: nn.Module,
    data: SplitData,
    *,
    batch_size: int,
    loss_weights: tuple[float, float] = (1.0, 1.0),
    keep: bool = False,
) -> Evaluation:
    """Metrics of ``model`` on ``data`` (eval mode, fp32) and, with ``keep``, every sequence's
    probabilities and pooling weights. The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    counter = M.SplitCounter(data.tens.device)
    tens, ones, weights = [], [], []
    # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
    for batch, out in infer(model, data, batch_size=batch_size, frames=model.input_frames):  # type: ignore[arg-type]
        loss = loss_weights[0] * nn.functional.cross_entropy(out.tens.float(), batch.tens)
        loss = loss + loss_weights[1] * nn.functional.cross_entropy(out.ones.float(), batch.ones)
        counter.update(loss, out.tens, out.ones, batch.tens, batch.ones)
        if keep:
            tens.append(out.tens.float().softmax(1))
            ones.append(out.ones.float().softmax(1))
            weights.append(out.weights)
    model.train(was_training)
    preds = _gather(tens, ones, weights, data) if keep else None
    return Evaluation(counter.compute(data.split), preds)


def _gather(tens: list, ones: list, weights: list, data: SplitData) -> Predictions:
    steps = int(data.lengths.max()) if len(data) else 0
    pooled = None
    if weights and weights[0] is not None:
        pooled = torch.zeros(len(data), steps)
        at = 0
        for w in weights:
            pooled[at : at + w.shape[0], : w.shape[1]] = w.float().cpu()
            at += w.shape[0]
    return Predictions(torch.cat(tens).cpu(), torch.cat(ones).cpu(), pooled)


def write_predictions(path: Path, data: SplitData, preds: Predictions) -> Path:
    """``test_predictions.csv``: one row per sequence with the predicted digits, their
    probabilities and whether the number is right (the paired bootstrap reads it)."""
    tens, ones = preds.tens, preds.ones
    rows = torch.arange(len(data))
    p_tens, p_ones = preds.tens_prob[rows, tens], preds.ones_prob[rows, ones]
    right = (tens == data.tens.cpu()) & (ones == data.ones.cpu())
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PREDICTION_COLUMNS)
        for i in range(len(data)):
            writer.writerow(
                [data.seq_id[i], data.track[i], data.jersey[i], int(tens[i]), int(ones[i]),
                 f"{float(p_tens[i]):.6f}", f"{float(p_ones[i]):.6f}", int(right[i])]
            )  # fmt: skip
    tmp.replace(path)
    return path
