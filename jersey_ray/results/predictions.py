"""Per-sequence predictions of finished trials (``test_predictions.csv``, and
``unseen_predictions.csv`` for a held-out cache) as correct counts per test track: the input of
the paired bootstrap (:func:`jersey_ray.results.stats.bootstrap_difference`).

A trial without the file (a run made before trials wrote it) has no predictions: the comparison
falls back to Welch over seeds and says so. A file that cannot be used (malformed, or
disagreeing with the accuracy the trial reported) is a counted skip.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np

from jersey_ray.metrics import UNSEEN, key
from jersey_ray.results.runs import Run, Trial, record_skip
from jersey_ray.results.stats import Arm

FILES = {"test": "test_predictions.csv", UNSEEN: "unseen_predictions.csv"}
REQUIRED = ("seq_id", "track", "correct")
TOLERANCE = 1e-6
"""How far the file's share of correct sequences may sit from the reported accuracy."""

TrackMap = dict[str, tuple[int, int]]
"""track -> (correct sequences, sequences)."""


def _parse(path_text: str) -> TrackMap | str:
    """The track map of one predictions file, or why it cannot be used."""
    rows = list(csv.DictReader(path_text.splitlines()))
    if not rows:
        return "no prediction rows"
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        return f"no {', '.join(missing)} column"
    seen: set[str] = set()
    tracks: dict[str, list[int]] = {}
    for no, row in enumerate(rows, 2):
        seq, track, correct = (row[c] for c in REQUIRED)
        if not seq or not track or correct not in ("0", "1"):
            return f"line {no}: needs a seq_id, a track and correct 0 or 1"
        if seq in seen:
            return f"line {no}: sequence {seq} listed twice"
        seen.add(seq)
        cell = tracks.setdefault(track, [0, 0])
        cell[0] += correct == "1"
        cell[1] += 1
    return {t: (c, n) for t, (c, n) in tracks.items()}


def read_trial(
    trial: Trial, split: str, skipped: list[dict[str, str]], where: str = ""
) -> TrackMap | None:
    """The track map of a finished trial's predictions on ``split``; None without the file or
    when it cannot be used (a counted skip; ``where`` prefixes its path for another run)."""
    path = trial.path / FILES[split]
    rel = f"{where}{trial.dir}/{FILES[split]}"
    if not path.is_file():
        return None
    try:
        parsed = _parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        parsed = f"unreadable ({type(err).__name__}: {err})"
    if isinstance(parsed, str):
        record_skip(skipped, rel, f"malformed predictions: {parsed}")
        return None
    reported = trial.last.get(key(split, "acc_number"))
    share = sum(c for c, _ in parsed.values()) / sum(n for _, n in parsed.values())
    if not isinstance(reported, (int, float)) or not math.isclose(
        share, reported, abs_tol=TOLERANCE
    ):
        record_skip(
            skipped,
            rel,
            f"predictions give {share:.6f} correct but the trial reported "
            f"{key(split, 'acc_number')} {reported} (a stale file?)",
        )
        return None
    return parsed


@dataclass(frozen=True)
class ConfigPredictions:
    """A configuration's usable predictions on one split, over its finished seeds."""

    arm: Arm | None
    """None when no finished seed has usable predictions."""
    tracks: tuple[str, ...]
    seeds: tuple[int, ...]
    """The seeds behind ``arm``."""
    lacking: tuple[int, ...]
    """Finished seeds without usable predictions."""


def config_predictions(
    trials: list[Trial], split: str, skipped: list[dict[str, str]], where: str = ""
) -> ConfigPredictions:
    """Stack the finished trials' track maps; a seed whose tracks differ from the first
    usable seed's is a counted skip (the seeds of one configuration share one test split)."""
    maps: list[tuple[int, TrackMap]] = []
    lacking = []
    for t in (t for t in trials if t.status == "finished"):
        found = read_trial(t, split, skipped, where)
        if found is not None and maps and _shape(found) != _shape(maps[0][1]):
            record_skip(
                skipped,
                f"{where}{t.dir}/{FILES[split]}",
                f"its tracks differ from seed {maps[0][0]}'s (another cache?)",
            )
            found = None
        if found is None:
            lacking.append(t.seed)
        else:
            maps.append((t.seed, found))
    if not maps:
        return ConfigPredictions(None, (), (), tuple(lacking))
    tracks = tuple(sorted(maps[0][1]))
    correct = np.array([[m[t][0] for t in tracks] for _, m in maps], dtype=np.int64)
    totals = np.array([maps[0][1][t][1] for t in tracks], dtype=np.int64)
    return ConfigPredictions(
        Arm(correct, totals), tracks, tuple(s for s, _ in maps), tuple(lacking)
    )


def _shape(tracks: TrackMap) -> dict[str, int]:
    return {t: n for t, (_, n) in tracks.items()}


def same_tracks(a: ConfigPredictions, b: ConfigPredictions) -> bool:
    """Whether two configurations were tested on the same tracks with the same sequence counts
    (the condition for pairing them)."""
    if a.arm is None or b.arm is None:
        return False
    return a.tracks == b.tracks and np.array_equal(a.arm.totals, b.arm.totals)


class RunPredictions:
    """A run's predictions per (configuration, split), each file read once (so a bad file is
    counted once however many tables use it)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._cache: dict[tuple[str, str], ConfigPredictions] = {}

    def get(self, config: str, split: str = "test") -> ConfigPredictions:
        if (config, split) not in self._cache:
            trials = [t for t in self.run.trials if t.config == config]
            self._cache[config, split] = config_predictions(trials, split, self.run.skipped)
        return self._cache[config, split]


def arm_of_seeds(pred: ConfigPredictions, seeds: tuple[int, ...]) -> Arm:
    """``pred``'s arm restricted to ``seeds`` (in that order): two splits paired over seeds."""
    assert pred.arm is not None
    rows = [pred.seeds.index(s) for s in seeds]
    return Arm(pred.arm.correct[rows], pred.arm.totals)
