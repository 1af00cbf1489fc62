"""Compositional two-digit readers (the ``comp_`` family): read each digit in its place, so a
number never seen in training can be read from digits seen in place in other numbers.

Every reader keeps the one contract: ``model(frames, mask) -> ModelOutput(tens [B,11], ones
[B,10], weights None)``, and a small CNN that keeps the width axis
(:class:`~jersey_ray.models.small_backbone.DigitCNN`: a 32x32 crop -> 128 x 4 x 8) as its
``backbone``; the reader is its ``heads`` group, so ``param_groups()`` works as for the report's
models. Four readers:

* :class:`PooledHeads` (``comp_pooled``): the study's reading, global average pool -> two
  independent Linear heads, on this CNN: the baseline that separates what a reader buys from
  what the backbone buys.
* :class:`TiedReader` (``comp_tied``): one shared digit classifier read at each position, after
  Grad et al. 2025 ("Single-Stage Uncertainty-Aware Jersey Number Recognition in Soccer", CVPR
  workshops; github.com/lukaszgrad/uncertainty-jnr, ``src/uncertainty_jnr/model.py``,
  ``TiedDigitAwareClassifier``). Checked in their ``model.py``: one ``Linear(embed_dim, 10,
  bias=False)`` shared by three positions (single, tens, ones), a learned position embedding
  added to (or multiplying) the ViT's pooled CLS feature, a per-position per-digit bias, and a
  number's logit = tens + ones (single-digit numbers: the "single" position) in one softmax
  over 100 numbers + "absent". Not checked: their held-out table (the issue's 78-86% vs 61% is
  second-hand). Here, because one pooled vector cannot say where a digit is, each position has
  a learned spatial query over the feature map (keys from the features and their x/y
  coordinates), so the two positions pool two different regions; the pooled feature gets its
  position embedding (additive, as their default; before a linear classifier it amounts to a
  learned per-position class bias) and goes through the SAME classifier.
* :class:`CTCReader` (``comp_ctc``): the map's columns (height averaged) through a small BiGRU,
  per-column logits over 10 digits + the CTC blank, trained with CTC on the digit string and
  decoded greedily (CRNN, Shi et al. 2015, arXiv 1507.05717; LPRNet). Out-of-vocabulary strings
  are still harder for such readers than seen ones (Wan et al. 2020, "On Vocabulary Reliance in
  Scene Text Recognition", CVPR). :mod:`jersey_ray.models.ctc` has the encoding and decode.
* a sequence version (``comp_seq_*``): any of them read per real frame, the per-frame
  log-softmax of each head averaged over the valid frames (the normalised geometric mean
  ``predict`` uses for tracks), so a tracklet is read as a tracklet; padding never counts.

**Tied reader, scoring.** The shared classifier has 11 outputs (digits 0-9, blank). The tens
position reads all 11 (blank = a one-digit number); the ones position drops the blank logit (a
number always has a ones digit), so the ones head is the classifier's first 10 outputs. Scored
as two heads, CE(tens) + CE(ones): with this label encoding (a one-digit number is a blank tens)
that IS the 110-way softmax over numbers with logit(t, o) = tens[t] + ones[o], because such a
softmax factorises into softmax(tens)[t] * softmax(ones)[o]; the two choices are one model.

Why composition can still fail: it is driven by how many digit combinations training covers
more than by data volume (Uselis et al. 2025, arXiv 2507.07102), and it needs every digit to have
been seen in its place; synthetic renders of numbers help rare ones (Bhargavi et al. 2022, arXiv
2203.00734).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from jersey_ray.metrics import N_TENS
from jersey_ray.models.ctc import CTC_CLASSES, ctc_loss, decode_scores
from jersey_ray.models.heads import DigitHeads, GroupedModel, ModelOutput
from jersey_ray.models.sequence import pack_frames, unpack_features
from jersey_ray.models.single import anchors
from jersey_ray.models.small_backbone import DigitCNN

Read = tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]  # noqa: UP045 (TorchScript)


class PooledHeads(nn.Module):
    """Feature map -> global average pool -> :class:`DigitHeads` (the study's heads)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.digits = DigitHeads(channels)

    def forward(self, fmap: torch.Tensor) -> Read:
        tens, ones = self.digits(fmap.mean(dim=(2, 3)))
        return tens, ones, None


def coordinates(fmap: torch.Tensor) -> torch.Tensor:
    """[N,2,h,w] x and y of every cell of ``fmap`` in [-1, 1] (any map size)."""
    n, _, h, w = fmap.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=fmap.dtype, device=fmap.device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=fmap.dtype, device=fmap.device)
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])
    return grid[None].expand(n, 2, h, w)


class TiedReader(nn.Module):
    """Two learned spatial queries (tens, ones) pool the map; one shared 11-way classifier.

    Keys: a 1x1 conv of the features and their coordinates; per position a softmax over the
    h*w cells of query . key / sqrt(d) pools the features; the pooled feature plus the
    position's embedding goes through the shared ``classifier``. Returns (tens [N,11], ones
    [N,10] = the first 10 of the ones position's 11, None).
    """

    def __init__(self, channels: int, key_dim: int = 64) -> None:
        super().__init__()
        self.keys = nn.Conv2d(channels + 2, key_dim, 1)
        self.queries = nn.Parameter(torch.randn(2, key_dim) / key_dim**0.5)
        self.position = nn.Parameter(torch.randn(2, channels) * 0.02)
        self.classifier = nn.Linear(channels, N_TENS)
        self.scale = key_dim**-0.5

    def attention(self, fmap: torch.Tensor) -> torch.Tensor:
        """[N,2,h*w] pooling weights of the tens and ones positions."""
        keys = self.keys(torch.cat([fmap, coordinates(fmap)], dim=1)).flatten(2)
        scores = torch.matmul(self.queries, keys) * self.scale  # [N,2,h*w]
        return scores.float().softmax(-1).to(fmap.dtype)

    def forward(self, fmap: torch.Tensor) -> Read:
        weights = self.attention(fmap)
        pooled = torch.bmm(weights, fmap.flatten(2).transpose(1, 2))  # [N,2,C]
        logits = self.classifier(pooled + self.position)  # [N,2,11]: the same classifier
        return logits[:, 0], logits[:, 1, :10], None  # 10 = N_ONES (TorchScript: no globals)


class CTCReader(nn.Module):
    """Columns (height averaged) -> BiGRU -> Linear to 11 per column -> greedy decode.

    Returns (tens [N,11], ones [N,10], per-column log-probabilities [N,w,11]);
    :func:`~jersey_ray.models.ctc.decode_scores` says what the two heads' scores are.
    """

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.rnn = nn.GRU(channels, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, CTC_CLASSES)

    def columns(self, fmap: torch.Tensor) -> torch.Tensor:
        """[N,w,11] per-column log-probabilities (digits 0-9, CTC blank at 10)."""
        out, _ = self.rnn(fmap.mean(dim=2).transpose(1, 2))
        return self.classifier(out).float().log_softmax(-1)

    def forward(self, fmap: torch.Tensor) -> Read:
        log_probs = self.columns(fmap)
        tens, ones = decode_scores(log_probs)
        return tens, ones, log_probs


def masked_mean_log_prob(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-real-frame logits [N,C] -> [B,C]: the mean of their log-softmax over each sequence's
    valid frames (padding and other sequences never count; no host sync)."""
    per_frame = unpack_features(logits.float().log_softmax(-1), mask)  # zeros on padding
    return per_frame.sum(dim=1) / mask.sum(dim=1).clamp(min=1)[:, None]


class CompositionalModel(GroupedModel):
    """:class:`DigitCNN` ``backbone`` -> a reader as ``heads``, on the anchor or on every frame.

    ``sequence`` False: each sequence's anchor (``input_frames`` 1). True: every real frame,
    heads averaged as log-probabilities over the valid frames (``input_frames`` None).
    ``forward`` returns the CTC reader's per-column log-probabilities in ``columns`` while
    training (its loss needs them), None in eval mode.
    """

    # set per instance below; TorchScript cannot read GroupedModel's string annotation of it
    __jit_ignored_attributes__ = ("input_frames",)

    def __init__(self, reader: str, sequence: bool) -> None:
        super().__init__()
        self.backbone = DigitCNN()
        channels = DigitCNN.out_channels
        if reader == "pooled":
            self.heads: nn.Module = PooledHeads(channels)
        elif reader == "tied":
            self.heads = TiedReader(channels)
        elif reader == "ctc":
            self.heads = CTCReader(channels)
        else:
            raise ValueError(f"reader must be pooled, tied or ctc, not {reader!r}")
        self.reader = reader
        self.sequence = sequence
        self.input_frames = None if sequence else 1

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        if self.sequence:
            if frames.dim() == 5:
                frames = pack_frames(frames, mask)
        else:
            frames = anchors(frames, mask)
        tens, ones, columns = self.heads(self.backbone(frames))
        if self.sequence:
            tens = masked_mean_log_prob(tens, mask)
            ones = masked_mean_log_prob(ones, mask)
        return ModelOutput(tens, ones, None, columns if self.training else None)

    def training_loss(
        self,
        out: ModelOutput,
        mask: torch.Tensor,
        tens: torch.Tensor,
        ones: torch.Tensor,
        weights: tuple[float, float],
    ) -> torch.Tensor:
        """The training loss (:func:`jersey_ray.train.step.loss_fn` calls it): CTC on every
        frame the CTC reader read (each labelled with its sequence's number; ``weights`` do not
        apply), else ``w_t*CE(tens) + w_o*CE(ones)`` of the output."""
        if out.columns is None:
            ce_tens = F.cross_entropy(out.tens.float(), tens)
            return weights[0] * ce_tens + weights[1] * F.cross_entropy(out.ones.float(), ones)
        if self.sequence:  # packed frames -> their sequence, without a host sync
            ends = mask.sum(dim=1).cumsum(0)
            frame = torch.arange(out.columns.shape[0], device=ends.device)
            owner = torch.searchsorted(ends, frame, right=True)
            tens, ones = tens[owner], ones[owner]
        return ctc_loss(out.columns, tens, ones)
