"""Phase 0: one CNN on the anchor frame, straight into the digit heads (report-spec 2.2)."""

from __future__ import annotations

import torch
from torch import nn

from jersey_ray.models.heads import DigitHeads, GroupedModel


class SingleFrameModel(GroupedModel):
    """images [B,3,H,W] -> backbone pooled features [B,F] -> (tens [B,11], ones [B,10])."""

    def __init__(self, backbone: nn.Module, features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = DigitHeads(features)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.backbone(images))
