"""CTC over a feature map's columns: the label encoding, the loss and the greedy decode to the
(tens, ones) contract of :class:`~jersey_ray.models.heads.ModelOutput`.

Per column the reader scores 11 classes: digits 0-9 at indices 0-9 and the CTC blank at
:data:`CTC_BLANK` = 10. (The tens head's index 10, :data:`jersey_ray.metrics.BLANK`, means "no
tens digit"; the CTC blank means "no new digit in this column". Both sit at index 10, which is
what :func:`decode_scores` uses: a tens column read as CTC blank is a missing tens digit.)

Targets: a number's digit string, ``(tens, ones)`` -> ``[tens, ones]``, and a one-digit number
(tens = BLANK) -> ``[ones]``; "07" (tens 0) is the two-digit string ``[0, 7]``. CTC needs a blank
between two equal digits ("11"), so at least 3 columns; the 32x32 crops give 8.

Greedy (best-path) decoding: the argmax class per column, repeats merged, blanks dropped. The
last digit read is the ones digit, the one before it the tens digit; a string of one digit has a
blank tens, a string of three or more keeps its last two, an empty one reads as a one-digit
number (below). All of it is tensor arithmetic without data-dependent shapes, so it runs without
a host sync and exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jersey_ray.metrics import BLANK

CTC_BLANK = 10
"""Index of the CTC blank among a column's 11 classes (digits 0-9 are indices 0-9)."""
CTC_CLASSES = 11
FLOOR = -30.0
"""Log-probability of a tens digit where the decode leaves no column that could hold one (a
single digit read in the first column): p ~ 1e-13, finite, so a sequence's mean over frames
stays finite."""


def ctc_targets(tens: torch.Tensor, ones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded targets [B,2] and target lengths [B] (1 or 2) of labels ``tens`` (BLANK = no tens
    digit) and ``ones``; a one-digit number's second slot is padding (never read)."""
    two = tens != BLANK
    first = torch.where(two, tens, ones)
    return torch.stack([first, ones], dim=1), 1 + two.long()


def ctc_loss(log_probs: torch.Tensor, tens: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each crop's CTC negative log-likelihood of its digit string.

    ``log_probs`` [N,T,11]: per-column log-probabilities. Summed per crop (not divided by the
    string's length, as ``reduction="mean"`` would) so one- and two-digit numbers weigh alike;
    an impossible alignment (T too short) is a zero loss rather than inf.
    """
    n, steps, _ = log_probs.shape
    targets, lengths = ctc_targets(tens, ones)
    inputs = torch.full((n,), steps, dtype=torch.long, device=log_probs.device)
    nll = F.ctc_loss(
        log_probs.float().transpose(0, 1),
        targets,
        inputs,
        lengths,
        blank=CTC_BLANK,
        reduction="sum",
        zero_infinity=True,
    )
    return nll / max(n, 1)


def greedy_regions(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best-path decode of [N,T,11] log-probabilities: (tens region [N,T] bool, ones region
    [N,T] bool, digits read [N]).

    The ones region is the column where the last digit was emitted; the tens region the column
    where the one before it was emitted. With one digit read, the tens region is every column
    before it (all read as blank); with none, both regions are every column.
    """
    # literals, not CTC_BLANK: TorchScript (bench infer's script variant) reads no globals
    best = log_probs.argmax(-1)
    prev = torch.cat([torch.full_like(best[:, :1], 10), best[:, :-1]], dim=1)
    emit = (best != 10) & (best != prev)
    rank = emit.long().cumsum(1)  # long: ONNX CumSum has no bool kernel
    count = rank[:, -1:]
    ones_at = emit & (rank == count)
    tens_at = emit & (rank == count - 1)
    two = count >= 2  # logical ops, not a bool torch.where: ONNX Runtime has no bool Where
    tens_region = (two & tens_at) | (~two & (rank == 0))
    ones_region = ones_at | (count == 0)
    return tens_region, ones_region, count.squeeze(1)


def _masked_max(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Max over dim 1 of ``values`` [N,T,C] where ``region`` [N,T] is True; FLOOR if none."""
    return values.masked_fill(~region[..., None], -30.0).amax(1)  # FLOOR


def decode_scores(log_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tens [N,11], ones [N,10]) scores of the greedy decode; their argmax is the decode.

    ``ones[d]``: the column posterior log p(d) where the ones digit was emitted (max over the
    columns when nothing was read: the best digit anywhere). ``tens[d]``: the same at the tens
    digit's column; ``tens[10]`` (no tens digit): that column's CTC-blank log-probability. With
    one digit read, the max of each class over the columns before it (every one of them
    argmaxes to blank, so ``tens[10]`` wins); if there are none, ``tens[10] = 0`` and the digits
    get :data:`FLOOR`. They are log-probabilities of single columns, not a normalised joint
    distribution over the 110 numbers: a softmax of them (what evaluation and ``predict`` take)
    renormalises each head.
    """
    log_probs = log_probs.float()
    tens_region, ones_region, _ = greedy_regions(log_probs)
    ones = _masked_max(log_probs[..., :10], ones_region)  # 10 = CTC_BLANK
    tens = _masked_max(log_probs, tens_region)
    has_column = tens_region.long().sum(1, keepdim=True) > 0
    blank = torch.where(has_column, tens[:, 10:], torch.zeros_like(tens[:, 10:]))
    return torch.cat([tens[:, :10], blank], dim=1), ones
