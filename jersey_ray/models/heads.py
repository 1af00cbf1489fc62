"""The digit heads every model ends in, and the optimizer-group contract they share."""

from __future__ import annotations

import torch
from torch import nn

TENS_CLASSES = 11  # digits 0-9 and blank (metrics.BLANK = 10)
ONES_CLASSES = 10


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

    Groups are assigned by top-level child name, so a new scorer or a root-level parameter (the
    top-k temperature) can never fall outside the optimizer (decisions row 3).
    """

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "temporal": [], "heads": []}
        for name, param in self.named_parameters():
            if param.requires_grad:
                top = name.split(".", 1)[0]
                groups[top if top in ("backbone", "heads") else "temporal"].append(param)
        return groups
