"""Helpers the model tests share: one cached model per id, and prefix masks."""

from __future__ import annotations

import functools

import torch
from torch import nn

from jersey_ray.models import build_model


@functools.cache
def model(model_id: str) -> nn.Module:
    """The model with id ``model_id``, random weights from a fixed seed, built once per run."""
    torch.manual_seed(0)
    return build_model(model_id)


def prefix_mask(lengths: list[int], t: int | None = None) -> torch.Tensor:
    """A (B, T) mask whose row b has its first ``lengths[b]`` entries set."""
    t = max(lengths) if t is None else t
    return torch.arange(t)[None] < torch.tensor(lengths)[:, None]
