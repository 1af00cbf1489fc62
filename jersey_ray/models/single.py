"""Phase 0: one CNN on the anchor frame, straight into the digit heads (report-spec 2.2)."""

from __future__ import annotations

import torch
from torch import nn

from jersey_ray.models.heads import DigitHeads, GroupedModel, ModelOutput


def anchors(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's first frame (its anchor) as images [B,3,H,W], without a host sync."""
    if frames.dim() == 5:
        return frames[:, 0]
    if mask.shape[1] == 1:  # the loader's anchor-only batches: already one frame per sequence
        return frames
    lengths = mask.sum(dim=1)
    return frames.index_select(0, torch.cumsum(lengths, 0) - lengths)


class SingleFrameModel(GroupedModel):
    """(frames, mask) -> the anchors [B,3,H,W] -> backbone features [B,F] -> digit heads."""

    input_frames = 1

    def __init__(self, backbone: nn.Module, features: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = DigitHeads(features)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        tens, ones = self.heads(self.backbone(anchors(frames, mask)))
        return ModelOutput(tens, ones, None)
