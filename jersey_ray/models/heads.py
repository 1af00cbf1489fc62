"""The contract every model keeps: the digit heads it ends in, the output it returns, and its
optimizer groups.

Every model is called the same way, ``model(frames, mask)``: ``frames`` are the real frames
packed [N,3,H,W] (or padded [B,T,3,H,W]) and ``mask`` [B,T] marks them; single-frame models read
each sequence's first frame, the anchor. Every model returns a :class:`ModelOutput`. A model's
``input_frames`` says how many frames per sequence it reads (1 for single-frame models, None for
all), so a loader can skip the rest.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

TENS_CLASSES = 11  # digits 0-9 and blank (metrics.BLANK = 10)
ONES_CLASSES = 10


class ModelOutput(NamedTuple):
    """What every model returns (TorchScript, torch.compile and ONNX export all accept it)."""

    tens: torch.Tensor
    """[B, 11] tens logits, index 10 = blank."""
    ones: torch.Tensor
    """[B, 10] ones logits."""
    weights: Optional[torch.Tensor]  # noqa: UP045 (TorchScript reads typing.Optional only)
    """[B, T] per-frame pooling weights (attention models), 0 on padding; None otherwise."""
    columns: Optional[torch.Tensor] = None  # noqa: UP045
    """Training mode only: a CTC reader's per-column log-probabilities [N, w, 11] (N: the
    crops it read), what its loss needs; None otherwise (and always in eval mode)."""


class DigitHeads(nn.Module):
    """Two independent single Linear layers, feature -> 11 tens logits and feature -> 10 ones."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.fc_tens = nn.Linear(features, TENS_CLASSES)
        self.fc_ones = nn.Linear(features, ONES_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc_tens(x), self.fc_ones(x)


class GroupedModel(nn.Module):
    """Base of every model: a ``backbone`` child, ``heads`` (DigitHeads), anything else temporal.

    ``input_frames``: frames per sequence the model reads from the anchor on (None: all).

    Groups are assigned by top-level child name, so a new scorer or a root-level parameter (the
    top-k temperature) can never fall outside the optimizer (decisions row 3).
    """

    input_frames: Optional[int] = None  # noqa: UP045

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "temporal": [], "heads": []}
        for name, param in self.named_parameters():
            if param.requires_grad:
                top = name.split(".", 1)[0]
                groups[top if top in ("backbone", "heads") else "temporal"].append(param)
        return groups
