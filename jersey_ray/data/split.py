"""Train/val/test split by track, stratified by jersey (decisions.md row 14), and the held-out
split that measures two-digit generalization.

Every jersey is split on its own: its track ids are sorted, then shuffled with an RNG seeded by
``"<seed>/<jersey>"``. So the split depends only on the seed and that jersey's track ids: not on
the file system's order, and not on which other jerseys exist (adding a class leaves the others'
splits alone). Sizes per jersey with ``n`` tracks:

- ``n == 1``: train only;  ``n == 2``: one train, one test;
- ``n >= 3``: largest-remainder apportionment of ``n`` by the ratios (ties go to the earlier
  split: train, val, test), then every empty split takes one track from the largest split, so
  3 -> (1, 1, 1), 4 -> (2, 1, 1), 10 -> (8, 1, 1), 20 -> (16, 2, 2).

Held-out mode (``DataConfig.split == "heldout"``): every track of a held-out number goes to a
fourth split, ``unseen``; the other numbers are split as above. A held-out number must be a
new *combination* of digits the heads have seen in place: its tens digit (or blank) in the tens
place and its ones digit in the ones place of some training number. Without a list, about a
fifth of the two-digit numbers are chosen (seeded by the split seed) among those that keep
that true for every held-out number.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable

from jersey_ray.config import DataConfig, replace
from jersey_ray.data.index import DataError, Sequence, class_key, parse_label
from jersey_ray.metrics import BLANK, SPLITS, UNSEEN

ALL_SPLITS = (*SPLITS, UNSEEN)
HELDOUT_SHARE = 0.2
"""The automatic held-out set: this share of the two-digit numbers (rounded, at least one)."""


def split_sizes(n: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[int, ...]:
    """Tracks per split (train, val, test) for a jersey with ``n`` tracks."""
    if len(ratios) != len(SPLITS) or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be {len(SPLITS)} non-negative numbers, got {ratios}")
    if n <= 2:
        return ((0, 0, 0), (1, 0, 0), (1, 0, 1))[max(n, 0)]
    quotas = [n * r / sum(ratios) for r in ratios]
    sizes = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    for i, size in enumerate(sizes):
        if size == 0:
            largest = max(range(len(sizes)), key=lambda j: (sizes[j], -j))
            sizes[largest] -= 1
            sizes[i] = 1
    return tuple(sizes)


def split_tracks(
    sequences: Iterable[Sequence],
    seed: int = 42,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, str]:
    """``{track id: split}`` for every track of ``sequences``, tracks sorted by id."""
    tracks: dict[str, set[str]] = defaultdict(set)
    for seq in sequences:
        tracks[seq.jersey].add(seq.track)
    assignment: dict[str, str] = {}
    for jersey in sorted(tracks):
        ids = sorted(tracks[jersey])
        # str seeds hash with SHA-512 in random.seed: stable across runs and PYTHONHASHSEED
        random.Random(f"{seed}/{jersey}").shuffle(ids)
        start = 0
        for split, size in zip(SPLITS, split_sizes(len(ids), ratios), strict=True):
            assignment.update((track, split) for track in ids[start : start + size])
            start += size
    return dict(sorted(assignment.items()))


def split_order(assignment: dict[str, str]) -> dict[str, int]:
    """Rank of every split name, for sorting rows train, val, test, unseen."""
    return {split: i for i, split in enumerate(ALL_SPLITS)}


def assign_splits(sequences: list[Sequence], data: DataConfig) -> tuple[dict[str, str], DataConfig]:
    """``{track: split}`` under ``data``'s split mode, and ``data`` with the held-out numbers
    actually used (the automatic choice filled in)."""
    if data.split == "tracks":
        return split_tracks(sequences, seed=data.split_seed), data
    present = sorted({s.jersey for s in sequences}, key=class_key)
    held = list(data.heldout_numbers) or choose_heldout(present, data.split_seed)
    check_heldout(held, present)
    kept = [s for s in sequences if s.jersey not in held]
    assignment = split_tracks(kept, seed=data.split_seed)
    assignment.update((s.track, UNSEEN) for s in sequences if s.jersey in held)
    resolved = replace(data, heldout_numbers=tuple(sorted(held, key=class_key)))
    return dict(sorted(assignment.items())), resolved


def _places(numbers: Iterable[str]) -> tuple[set[int], set[int]]:
    """The digits (BLANK for a one-digit number's tens) seen in the tens and the ones place."""
    labels = [parse_label(n) for n in numbers]
    return {t for t, _ in labels}, {o for _, o in labels}


def _tens_text(tens: int) -> str:
    return "a blank (a one-digit number)" if tens == BLANK else f"a {tens}"


def check_heldout(held: list[str], present: list[str]) -> None:
    """Refuse held-out numbers that are absent or not a new combination of trained digits."""
    missing = [n for n in held if n not in present]
    if missing:
        raise DataError(f"held-out number(s) {', '.join(missing)} have no tracks in the data")
    train = [n for n in present if n not in held]
    if not train:
        raise DataError("every number is held out: nothing is left to train on")
    tens_seen, ones_seen = _places(train)
    for number in held:
        tens, ones = parse_label(number)
        if tens not in tens_seen or ones not in ones_seen:
            example = "e.g. 0-9" if tens == BLANK else f"e.g. {tens}0-{tens}9"
            raise DataError(
                f"held-out number {number} cannot test generalization: it needs "
                f"{_tens_text(tens)} in the tens place somewhere in training ({example}) and a "
                f"{ones} in the ones place, and training has tens {_digits(tens_seen)}, ones "
                f"{_digits(ones_seen)}; hold out other numbers or add data"
            )


def _digits(digits: set[int]) -> str:
    return ",".join("blank" if d == BLANK else str(d) for d in sorted(digits)) or "none"


def choose_heldout(present: list[str], seed: int) -> list[str]:
    """About :data:`HELDOUT_SHARE` of the two-digit numbers, chosen in a seeded order among
    those whose digits stay covered in place by the numbers left for training."""
    two_digit = sorted(n for n in present if len(n) == 2)
    target = max(1, round(HELDOUT_SHARE * len(two_digit)))
    order = list(two_digit)
    random.Random(f"{seed}/heldout").shuffle(order)
    held: list[str] = []
    for number in order:
        if len(held) == target:
            break
        trial = [*held, number]
        tens_seen, ones_seen = _places(n for n in present if n not in trial)
        if all(parse_label(n)[0] in tens_seen and parse_label(n)[1] in ones_seen for n in trial):
            held = trial
    if not held:
        raise DataError(
            "split heldout: no number can be held out, since every two-digit number's tens or "
            "ones digit occurs in no other number in that place; add numbers or give "
            "heldout_numbers"
        )
    return sorted(held, key=class_key)


def by_split(
    sequences: Iterable[Sequence], assignment: dict[str, str]
) -> dict[str, list[Sequence]]:
    """The sequences of each split, in their given order."""
    out: dict[str, list[Sequence]] = {split: [] for split in SPLITS}
    for seq in sequences:
        out[assignment[seq.track]].append(seq)
    return out


def split_counts(sequences: Iterable[Sequence], assignment: dict[str, str]) -> dict[str, dict]:
    """Track and sequence counts per split and per class per split.

    Returns ``{"splits": {split: {"tracks", "sequences"}},
    "per_class": {jersey: {split: {"tracks", "sequences"}}}}`` with train, val and test (and
    unseen when the assignment has it) present and classes in display order.
    """
    seqs: dict[tuple[str, str], int] = defaultdict(int)
    tracks: dict[tuple[str, str], set[str]] = defaultdict(set)
    splits_used = ALL_SPLITS if UNSEEN in assignment.values() else SPLITS
    for seq in sequences:
        cell = (seq.jersey, assignment[seq.track])
        seqs[cell] += 1
        tracks[cell].add(seq.track)
    jerseys = sorted({jersey for jersey, _ in seqs}, key=class_key)
    per_class = {
        j: {s: {"tracks": len(tracks[j, s]), "sequences": seqs[j, s]} for s in splits_used}
        for j in jerseys
    }
    splits = {
        s: {
            "tracks": sum(per_class[j][s]["tracks"] for j in jerseys),
            "sequences": sum(per_class[j][s]["sequences"] for j in jerseys),
        }
        for s in splits_used
    }
    return {"splits": splits, "per_class": per_class}
