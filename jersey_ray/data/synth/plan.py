"""The data set's plan: which sequences of which numbers, tracks and teams, and their style.

Sizes and counts (the reference classes, the defaults of :func:`~.dataset.generate`), the
:class:`Style` of a data set, one :class:`SeqJob` per sequence, and :func:`plan_dataset`, which
draws them all from the seed before any frame is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jersey_ray.errors import UserError

REFERENCE_NUMBERS = ("4", "6", "8", "9", "48", "49", "64", "66", "88", "89")
DEFAULT_SEQUENCES = 1200
DEFAULT_SEQUENCES_PER_TRACK = 5.0
DEFAULT_IMBALANCE = 0.8
TRACKS_PER_TEAM = 30
MIN_TRACKS_PER_NUMBER = 3  # so the track-level split can give every class train, val and test
CROPS = ("player", "number")
ANCHORS = ("random", "clearest")
QUALITIES = ("broadcast", "clean")


@dataclass(frozen=True)
class Style:
    """How the frames of the data set are cut and which one is the anchor."""

    crop: str = "player"
    """``player``: the whole player box; ``number``: the number region of each frame."""
    anchor: str = "random"
    """``random``: the anchor is a frame drawn like any other; ``clearest``: the clearest."""
    quality: str = "broadcast"
    """``broadcast``: low-resolution sources, motion blur, codec artefacts, occluding players,
    players turning away; ``clean``: full resolution, little blur and noise, no occluders,
    backs to the camera (a data set a model learns in minutes on a CPU: the demo's)."""

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise UserError(f"quality {self.quality!r} is invalid: choose {' or '.join(QUALITIES)}")
        if self.crop not in CROPS:
            raise UserError(f"crop {self.crop!r} is invalid: choose {' or '.join(CROPS)}")
        if self.anchor not in ANCHORS:
            raise UserError(f"anchor {self.anchor!r} is invalid: choose {' or '.join(ANCHORS)}")


@dataclass(frozen=True)
class SeqJob:
    """One sequence to render; ``team``, ``track`` (global) and ``seq`` key its random
    streams (kit, player, sequence)."""

    jersey: str
    team: int
    track: int
    track_dir: str
    seq: int
    seq_dir: str
    n_frames: int
    size: tuple[int, int]
    seed: int
    style: Style = Style()

    @property
    def rel(self) -> str:
        return f"{self.jersey}/{self.track_dir}/{self.seq_dir}"


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (ties to the earlier index)."""
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def plan_dataset(
    numbers: tuple[str, ...],
    sequences: int,
    frames: tuple[int, int],
    size: tuple[int, int],
    seed: int,
    sequences_per_track: float,
    imbalance: float,
    style: Style = Style(),
) -> list[SeqJob]:
    """Tracks per number follow a Zipf law over the list order (earlier numbers are commoner),
    at least 3 each; sequences per track are skewed too; lengths are uniform in ``frames``.
    Tracks are spread at random over teams of about 30 players, whatever their number."""
    rng = np.random.default_rng([seed, 0])
    n_cls = len(numbers)
    n_tracks = round(sequences / sequences_per_track)
    n_tracks = min(sequences, max(MIN_TRACKS_PER_NUMBER * n_cls, n_tracks))
    zipf = 1.0 / np.arange(1, n_cls + 1) ** imbalance
    per_class = MIN_TRACKS_PER_NUMBER + largest_remainder(
        n_tracks - MIN_TRACKS_PER_NUMBER * n_cls, zipf
    )
    per_track = 1 + largest_remainder(sequences - n_tracks, rng.lognormal(0.0, 0.6, n_tracks))
    lengths = rng.integers(frames[0], frames[1] + 1, sequences)
    teams = rng.integers(max(2, round(n_tracks / TRACKS_PER_TEAM)), size=n_tracks)
    jobs: list[SeqJob] = []
    track = 0
    for jersey, n_class_tracks in zip(numbers, per_class, strict=True):
        for local in range(int(n_class_tracks)):
            for seq in range(int(per_track[track])):
                n, team = int(lengths[len(jobs)]), int(teams[track])
                track_dir, seq_dir = f"track{local:03d}", f"seq{seq:02d}"
                jobs.append(
                    SeqJob(jersey, team, track, track_dir, seq, seq_dir, n, size, seed, style)
                )
            track += 1
    return jobs
