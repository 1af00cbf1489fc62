"""Inference of one trained checkpoint on a split: class probabilities and attention weights.

Used by the collector's error analysis (confusion matrices, mistakes sheet). The model runs in
eval mode, in fp32, with no augmentation, over the split in its stored order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jersey_ray.config import ConfigError, TrainConfig, from_json
from jersey_ray.errors import UserError
from jersey_ray.loader import SplitData, iter_batches
from jersey_ray.metrics import N_ONES, N_TENS
from jersey_ray.models import build_model


@dataclass
class Predictions:
    """Per-sequence outputs, rows in the split's order, on the host."""

    tens_prob: torch.Tensor
    """[N, 11] softmax of the tens head (index 10 = blank)."""
    ones_prob: torch.Tensor
    """[N, 10] softmax of the ones head."""
    weights: torch.Tensor | None
    """[N, Tmax] attention weight per frame (0 past a sequence's length); None without one."""


def load_checkpoint(
    path: Path | str, device: torch.device | str = "cpu"
) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """The model of a ``best.pt`` (weights_only load), its TrainConfig and the raw checkpoint."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg = from_json(TrainConfig, ckpt["config"])
    except ConfigError as err:
        raise UserError(f"{path}: the checkpoint's config is not valid here ({err})") from err
    except Exception as err:  # truncated, foreign or pre-contract files mean the same to a user
        raise UserError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err
    model = build_model(cfg.model, pretrained="none")
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{path}: weights do not fit model {cfg.model} ({err})") from err
    return model.to(device).eval(), cfg, ckpt


@torch.inference_mode()
def predict(
    model: nn.Module,
    data: SplitData,
    *,
    sequence: bool,
    attention: bool,
    batch_size: int = 256,
    device: torch.device | str,
) -> Predictions:
    """Probabilities (and attention weights) for every sequence of ``data``."""
    model.eval()
    n = len(data.seq_id)
    tens = torch.zeros(n, N_TENS)
    ones = torch.zeros(n, N_ONES)
    weights = torch.zeros(n, int(data.lengths.max())) if attention and n else None
    for batch in iter_batches(data, batch_size, sequence=sequence, shuffle=False, augment=False):
        frames = batch.frames.to(device)
        out = model(frames, batch.mask.to(device)) if sequence else model(frames)
        rows = batch.index
        tens[rows] = out[0].float().softmax(1).cpu()
        ones[rows] = out[1].float().softmax(1).cpu()
        if weights is not None:
            w = out[2].float().cpu()
            weights[rows, : w.shape[1]] = w
    return Predictions(tens, ones, weights)
