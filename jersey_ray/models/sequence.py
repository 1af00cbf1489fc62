"""Sequence models: a shared CNN on the real frames only, then a length-aware RNN (Phase A).

Frames come either padded [B,T,3,H,W] or packed [N,3,H,W] (the real frames in row-major mask
order, N == mask.sum(); what the loader produces without a host sync). Only the N real frames go
through the CNN, so padding costs nothing and never enters BatchNorm's batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from jersey_ray.models.heads import DigitHeads, GroupedModel, ModelOutput
from jersey_ray.models.recurrent import LengthAwareRNN


def pack_frames(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Padded [B,T,3,H,W] -> real frames [N,3,H,W]; boolean indexing syncs (convenience path)."""
    return frames[mask]


def unpack_features(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-real-frame features [N,F] -> [B,T,F] with zeros on padding, without a host sync.

    Row i of ``features`` belongs to the i-th True of ``mask`` in row-major order, so a running
    count of the mask gives every slot its source row (the same index trick inductor uses for
    ``masked_scatter``, whose backward would sync on ``masked_select``).
    """
    source = (mask.reshape(-1).long().cumsum(0) - 1).clamp(min=0)  # ONNX has no bool CumSum
    slots = features[source].reshape(mask.shape[0], mask.shape[1], features.shape[-1])
    return torch.where(mask[..., None], slots, 0)


class RecurrentModel(GroupedModel):
    """What every sequence model shares: a CNN per real frame, then a LengthAwareRNN.

    Subclasses add their pooling and ``heads``, in that order (the parameter order of the
    optimizer groups and of checkpoints). Encoding is a method rather than a function taking the
    backbone, because TorchScript cannot pass a module to a function.
    """

    def __init__(self, backbone: nn.Module, rnn: LengthAwareRNN) -> None:
        super().__init__()
        self.backbone = backbone
        self.rnn = rnn

    def encode(
        self, frames: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(outputs [B,T,D] zero on padding, final [B,D], lengths [B])`` of the RNN over the
        backbone's features of the real frames only."""
        if frames.dim() == 5:
            frames = pack_frames(frames, mask)
        lengths = mask.sum(dim=1)
        features = unpack_features(self.backbone(frames), mask)
        outputs, final = self.rnn(features, mask, lengths)
        return outputs, final, lengths


class SequenceModel(RecurrentModel):
    """CNN per real frame -> LengthAwareRNN -> masked mean over valid steps or final state -> heads.

    ``forward(frames, mask [B,T] bool)`` returns a :class:`ModelOutput` without weights.
    """

    def __init__(self, backbone: nn.Module, rnn: LengthAwareRNN, pooling: str) -> None:
        if pooling not in ("mean", "final"):
            raise ValueError(f"pooling must be 'mean' or 'final', not {pooling!r}")
        super().__init__(backbone, rnn)
        self.pooling = pooling
        self.heads = DigitHeads(rnn.out_features)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        outputs, final, lengths = self.encode(frames, mask)
        if self.pooling == "mean":  # outputs are zero on padding
            pooled = outputs.sum(dim=1) / lengths.clamp(min=1)[:, None]
        else:
            pooled = final
        tens, ones = self.heads(pooled)
        return ModelOutput(tens, ones, None)
