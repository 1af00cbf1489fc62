"""Predictions per sequence and per track, and the files they are written to.

A sequence's prediction is the argmax of each head; its confidence is p(tens) * p(ones), the
probability the model gives the predicted number (the heads are independent). A track's
log-probabilities are the mean of its sequences' log-probabilities, per head; its
probabilities are their softmax (the normalized geometric mean of the sequences'
distributions), so its prediction is the number its sequences agree on most and its
confidence reads like a sequence's.

Files (rows in the folder's sorted order, numbers as text: ``07`` and ``7`` are different
numbers, so read them as strings): ``predictions.csv`` one row per sequence,
``predictions_tracks.csv`` one per track, ``predictions_skipped.csv`` every skipped input,
and with ``--json`` a ``{track: number}`` map.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from jersey_ray.data.index import Skip
from jersey_ray.metrics import number_string

SEQUENCE_COLUMNS = (
    "seq_id", "track", "true", "predicted", "confidence", "p_tens", "p_ones", "frames", "correct",
)  # fmt: skip
TRACK_COLUMNS = (
    "track", "true", "predicted", "confidence", "p_tens", "p_ones", "sequences", "correct",
)  # fmt: skip
SKIP_COLUMNS = ("path", "reason", "stage")


@dataclass
class Level:
    """Predictions at one level (sequences or tracks), rows in the folder's order."""

    ids: list[str]
    """seq_id, or the track."""
    tracks: list[str]
    true: list[str]
    """The true number (the jersey folder), "" where unlabelled."""
    counts: list[int]
    """Frames the model read per sequence, or sequences per track."""
    tens: torch.Tensor
    """[R, 11] log-probabilities of the tens digit (index 10 = none)."""
    ones: torch.Tensor
    """[R, 10] log-probabilities of the ones digit."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def predicted(self) -> list[str]:
        return [
            number_string(int(t), int(o))
            for t, o in zip(self.tens.argmax(1), self.ones.argmax(1), strict=True)
        ]

    @property
    def p_tens(self) -> torch.Tensor:
        return self.tens.max(1).values.exp()

    @property
    def p_ones(self) -> torch.Tensor:
        return self.ones.max(1).values.exp()

    def correct(self) -> list[bool | None]:
        """Per row: the prediction is the true number; None where unlabelled."""
        return [(p == t) if t else None for p, t in zip(self.predicted, self.true, strict=True)]

    def accuracy(self) -> tuple[int, int]:
        """(correct, labelled) rows."""
        marks = [c for c in self.correct() if c is not None]
        return sum(marks), len(marks)


def by_track(seqs: Level) -> Level:
    """Tracks in order of first appearance: per head, the softmax of the mean of their
    sequences' log-probabilities."""
    names = list(dict.fromkeys(seqs.tracks))
    where = {t: i for i, t in enumerate(names)}
    index = torch.tensor([where[t] for t in seqs.tracks], dtype=torch.int64)
    counts = torch.bincount(index, minlength=len(names))

    def mean_log(logp: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros(len(names), logp.shape[1], dtype=torch.float64)
        sums.index_add_(0, index, logp.double())
        return torch.log_softmax(sums / counts[:, None], dim=1)

    first = {t: i for i, t in reversed(list(enumerate(seqs.tracks)))}
    return Level(
        ids=names,
        tracks=names,
        true=[seqs.true[first[t]] for t in names],  # a track lives in one jersey folder
        counts=counts.tolist(),
        tens=mean_log(seqs.tens),
        ones=mean_log(seqs.ones),
    )


def _rows(level: Level, with_track: bool) -> list[list]:
    p_tens, p_ones = level.p_tens.tolist(), level.p_ones.tolist()
    rows = []
    for i, (pred, right) in enumerate(zip(level.predicted, level.correct(), strict=True)):
        head = [level.ids[i], level.tracks[i]] if with_track else [level.ids[i]]
        rows.append(
            [*head, level.true[i], pred, f"{p_tens[i] * p_ones[i]:.6f}", f"{p_tens[i]:.6f}",
             f"{p_ones[i]:.6f}", level.counts[i], "" if right is None else int(right)]
        )  # fmt: skip
    return rows


def _write_rows(path: Path, header: tuple[str, ...], rows: list[list]) -> Path:
    """A CSV written under a temporary name and renamed: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def output_paths(out: Path) -> dict[str, Path]:
    """``predictions.csv`` -> it, ``predictions_tracks.csv`` and ``predictions_skipped.csv``."""
    stem, suffix = out.stem, out.suffix or ".csv"
    return {
        "sequences": out,
        "tracks": out.with_name(f"{stem}_tracks{suffix}"),
        "skipped": out.with_name(f"{stem}_skipped{suffix}"),
    }


def write_outputs(
    out: Path, seqs: Level, tracks: Level, skipped: list[tuple[Skip, str]]
) -> dict[str, Path]:
    """The three CSV files (module docstring); ``skipped`` holds (skip, stage) pairs."""
    paths = output_paths(out)
    _write_rows(paths["sequences"], SEQUENCE_COLUMNS, _rows(seqs, with_track=True))
    _write_rows(paths["tracks"], TRACK_COLUMNS, _rows(tracks, with_track=False))
    skip_rows = [[s.path, s.reason, stage] for s, stage in skipped]
    _write_rows(paths["skipped"], SKIP_COLUMNS, skip_rows)
    return paths


def write_json(path: Path, tracks: Level) -> Path:
    """``{track: predicted number}`` in the folder's order."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(dict(zip(tracks.ids, tracks.predicted, strict=True)), indent=2)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
