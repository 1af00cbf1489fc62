"""Digit splice: new two-digit training examples composed from the parts of two real ones.

A spliced sequence is the LEFT part of one two-digit sequence (A) beside the RIGHT part of
another (B), cut at one seeded column near the middle, and is labelled by the composed number:
A's tens digit, B's ones digit. It shows the model a digit in its place next to digits it never
sat beside in the data, so the heads can learn digits in a place rather than whole numbers
(issue 20: composition is limited by how many digit combinations training covers, Uselis et
al. 2025, arXiv 2507.07102; a throwaway probe here read unseen numbers at 0.516 with a
position-tied reader and this splice, against 0.351 for pooled heads without it).

- Both crops come from one cache, letterboxed to one size, so the two parts already share a
  height; one cut column for both keeps the spliced frame at the cache's width without any
  resampling (the pixels are the crops' own).
- Sequences are spliced frame by frame with the same cut, aligned by frame index: the spliced
  sequence has ``min(len(A), len(B))`` frames (the shorter one's mask).
- A composed number in ``forbidden`` (the held-out numbers of a ``heldout`` cache) is never
  made: a partner that would compose one is never drawn, and a sequence with no allowed partner
  stays as it is. The unseen split never reaches training by this path.
- Only sequences with a tens digit take part (one-digit numbers have no left digit to keep).
- Every draw (which sequences, which partners, which cuts) comes from one CPU generator, so a
  seed gives the same batches; the trial seeds it per epoch (:func:`epoch_generator`), which
  also makes a resumed run splice exactly as one that never stopped.

The splice runs on the uint8 frames before the per-frame augmentations, so a spliced frame is
augmented like any other. Evaluation never splices (:func:`jersey_ray.cache.loader.iter_batches`
splices only when asked, and only the training epoch asks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from jersey_ray.data.index import parse_label
from jersey_ray.metrics import BLANK

CUT_RANGE = (0.4, 0.6)
"""The cut column is drawn uniformly in this share of the frame's width (both ends in)."""
SPLICE_SEED_OFFSET = 2_000_029
"""Offset of the splice stream from the trial seed (must not replay shuffle or augmentation)."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The splice draws of one epoch: a function of the seed and the epoch alone."""
    return torch.Generator().manual_seed(seed + SPLICE_SEED_OFFSET + 7919 * epoch)


def forbidden_labels(numbers: Iterable[str]) -> frozenset[tuple[int, int]]:
    """The (tens, ones) labels of ``numbers`` (e.g. a cache's held-out numbers)."""
    labels = (parse_label(str(n)) for n in numbers)
    return frozenset(label for label in labels if label is not None)


@dataclass
class Spliced:
    """A batch's frames and labels after splicing (host ``lengths``, labels on the device)."""

    frames: torch.Tensor  # [F', H, W, 3] uint8, packed sequence-major
    lengths: torch.Tensor  # [B] int64 host
    tens: torch.Tensor  # [B]
    ones: torch.Tensor  # [B]
    partner: torch.Tensor  # [B] int64 host: B's row for a spliced sequence, -1 elsewhere
    cut: torch.Tensor  # [B] int64 host: the cut column of a spliced sequence, W elsewhere


def choose_pairs(
    tens: torch.Tensor,
    ones: torch.Tensor,
    rate: float,
    forbidden: frozenset[tuple[int, int]],
    width: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(partner, cut) per row of a batch from host labels: partner -1 leaves a row alone.

    Each two-digit row is spliced with probability ``rate``; its partner is drawn uniformly
    among the other two-digit rows whose ones digit does not compose a ``forbidden`` number
    with the row's tens digit.
    """
    n = len(tens)
    partner = torch.full((n,), -1, dtype=torch.int64)
    cut = torch.full((n,), width, dtype=torch.int64)
    if rate <= 0 or n < 2:
        return partner, cut
    eligible = tens != BLANK
    chosen = eligible & (torch.rand(n, generator=generator) < rate)
    lo = max(1, round(CUT_RANGE[0] * width))
    hi = min(width - 1, round(CUT_RANGE[1] * width))
    for i in chosen.nonzero().flatten().tolist():
        allowed = eligible.clone()
        allowed[i] = False
        t = int(tens[i])
        for j in allowed.nonzero().flatten().tolist():
            if (t, int(ones[j])) in forbidden:
                allowed[j] = False
        options = allowed.nonzero().flatten()
        if not len(options):
            continue  # every partner would compose a held-out number: leave the row alone
        pick = torch.randint(len(options), (1,), generator=generator)
        partner[i] = options[pick]
        cut[i] = torch.randint(lo, hi + 1, (1,), generator=generator)
    return partner, cut


def splice_batch(
    frames: torch.Tensor,
    lengths: torch.Tensor,
    tens: torch.Tensor,
    ones: torch.Tensor,
    rate: float,
    forbidden: frozenset[tuple[int, int]],
    generator: torch.Generator,
    labels: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Spliced:
    """Splice a batch of packed uint8 frames [F, H, W, 3] (see the module docstring).

    ``lengths`` are the host frame counts of the batch's sequences; ``tens``/``ones`` their
    labels on the frames' device. ``labels`` are host copies of them (drawn from them when
    absent: a device sync).
    """
    host_tens, host_ones = labels if labels is not None else (tens.cpu(), ones.cpu())
    width = frames.shape[2]
    partner, cut = choose_pairs(host_tens, host_ones, rate, forbidden, width, generator)
    spliced = partner >= 0
    if not spliced.any():
        return Spliced(frames, lengths, tens, ones, partner, cut)
    starts = torch.cumsum(lengths, 0) - lengths
    source = torch.where(spliced, partner, torch.arange(len(lengths)))
    new_lengths = torch.minimum(lengths, lengths[source])
    rows = torch.repeat_interleave(torch.arange(len(lengths)), new_lengths)
    within = torch.arange(int(new_lengths.sum())) - torch.repeat_interleave(
        torch.cumsum(new_lengths, 0) - new_lengths, new_lengths
    )
    left = (starts[rows] + within).to(frames.device)
    right = (starts[source[rows]] + within).to(frames.device)
    columns = torch.arange(width, device=frames.device)
    keep_left = columns.unsqueeze(0) < cut[rows].to(frames.device).unsqueeze(1)  # [F', W]
    out = torch.where(
        keep_left[:, None, :, None], frames.index_select(0, left), frames.index_select(0, right)
    )
    dev_source = source.to(tens.device)
    return Spliced(
        frames=out,
        lengths=new_lengths,
        tens=tens,
        ones=ones.index_select(0, dev_source),
        partner=partner,
        cut=cut,
    )
