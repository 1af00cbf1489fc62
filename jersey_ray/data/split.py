"""Train/val/test split by track, stratified by jersey (decisions.md row 14).

Every jersey is split on its own: its track ids are sorted, then shuffled with an RNG seeded by
``"<seed>/<jersey>"``. So the split depends only on the seed and that jersey's track ids: not on
the file system's order, and not on which other jerseys exist (adding a class leaves the others'
splits alone). Sizes per jersey with ``n`` tracks:

- ``n == 1``: train only;  ``n == 2``: one train, one test;
- ``n >= 3``: largest-remainder apportionment of ``n`` by the ratios (ties go to the earlier
  split: train, val, test), then every empty split takes one track from the largest split, so
  3 -> (1, 1, 1), 4 -> (2, 1, 1), 10 -> (8, 1, 1), 20 -> (16, 2, 2).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable

from jersey_ray.data.index import Sequence, class_key
from jersey_ray.metrics import SPLITS


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
    "per_class": {jersey: {split: {"tracks", "sequences"}}}}`` with every split present and
    classes in display order.
    """
    seqs: dict[tuple[str, str], int] = defaultdict(int)
    tracks: dict[tuple[str, str], set[str]] = defaultdict(set)
    for seq in sequences:
        cell = (seq.jersey, assignment[seq.track])
        seqs[cell] += 1
        tracks[cell].add(seq.track)
    jerseys = sorted({jersey for jersey, _ in seqs}, key=class_key)
    per_class = {
        j: {s: {"tracks": len(tracks[j, s]), "sequences": seqs[j, s]} for s in SPLITS}
        for j in jerseys
    }
    splits = {
        s: {
            "tracks": sum(per_class[j][s]["tracks"] for j in jerseys),
            "sequences": sum(per_class[j][s]["sequences"] for j in jerseys),
        }
        for s in SPLITS
    }
    return {"splits": splits, "per_class": per_class}
