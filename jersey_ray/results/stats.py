"""Statistics of the tables: mean and sample std over seeds, Welch's interval over seeds, the
paired hierarchical bootstrap over test tracks and seeds, and Holm's adjustment.

Distributions come from SciPy. ``scipy.stats.bootstrap`` resamples one level of observations;
the bootstrap here resamples two (tracks, then seeds) and pairs the two sides on the tracks, so
it is written in NumPy, vectorised over the replicates.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
"""A difference is significant when its Holm-adjusted p-value is below this."""
STD_LABEL = "sample (ddof=1)"
CI_METHOD = "Welch's t interval (unequal variances)"
REPLICATES = 10_000
BOOTSTRAP_SEED = 0
"""Every bootstrap starts from this seed: a table is reproducible, and a comparison's numbers do
not depend on which other models share the table."""


def describe(values: list[float]) -> dict[str, Any]:
    """Mean, sample std (None below 2 values), n and the values themselves."""
    n = len(values)
    return {
        "mean": statistics.fmean(values) if n else None,
        "std": statistics.stdev(values) if n >= 2 else None,
        "n": n,
        "values": list(values),
    }


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with ``df`` (real, > 0) degrees of freedom."""
    return float(sps.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile for any real ``df`` > 0."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(sps.t.ppf(p, df))


def welch(
    a: tuple[float, float, int], b: tuple[float, float, int], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Welch's interval and two-sided p for mean(a) - mean(b); ``a``, ``b`` = (mean, sample std,
    n >= 2).

    With zero variance on both sides there is no interval: ``ci_low``, ``ci_high``, ``df`` and
    ``p`` are None and the difference is never significant (any gap would be, otherwise).
    """
    (m1, s1, n1), (m2, s2, n2) = a, b
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's interval needs at least 2 values on each side")
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    diff = m1 - m2
    result: dict[str, Any] = {"diff": diff, "confidence": confidence}
    if v1 + v2 == 0.0:
        return {
            **result,
            "ci_low": None,
            "ci_high": None,
            "df": None,
            "p": None,
            "significant": False,
        }
    df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(v1 + v2)
    test = sps.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False)
    low, high = diff - half, diff + half
    return {
        **result,
        "ci_low": low,
        "ci_high": high,
        "df": df,
        "p": float(test.pvalue),
        "significant": not low <= 0.0 <= high,
    }


def paired_t(diffs: list[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Student's interval and two-sided p for the mean of paired differences (n >= 2); with
    zero variance there is no interval (None), as in :func:`welch`."""
    n = len(diffs)
    if n < 2:
        raise ValueError("a paired t interval needs at least 2 differences")
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    result: dict[str, Any] = {"diff": mean, "df": n - 1, "confidence": confidence}
    if sd == 0.0:
        return {**result, "ci_low": None, "ci_high": None, "p": None}
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    p = float(sps.ttest_1samp(diffs, 0.0).pvalue)
    return {**result, "ci_low": mean - half, "ci_high": mean + half, "p": p}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of one family of p-values (None: no test, left out of m).

    The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: correct sequences per (seed, track) and sequences per track."""

    correct: np.ndarray
    """[seeds, tracks] correct sequences."""
    totals: np.ndarray
    """[tracks] sequences per track (the same for every seed: one test split)."""

    def accuracy(self) -> float:
        """Pooled over seeds and tracks: the mean over seeds of each seed's accuracy."""
        return float(self.correct.sum() / (self.correct.shape[0] * self.totals.sum()))


def _counts(rng: np.random.Generator, n: int, replicates: int) -> np.ndarray:
    """[replicates, n] how often each of n items is drawn in n draws with replacement."""
    draws = rng.integers(0, n, size=(replicates, n), dtype=np.int64)
    draws += n * np.arange(replicates)[:, None]  # row r counts into bins [r n, (r + 1) n)
    return np.bincount(draws.ravel(), minlength=replicates * n).reshape(replicates, n)


def _replicates(arm: Arm, tracks: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Accuracy of ``arm`` in every replicate: correct over sequences of the drawn (seed, track)
    cells, with ``tracks`` and ``seeds`` the draw counts ([R, T] and [R, S])."""
    per_track = seeds @ arm.correct  # [R, T] correct over the drawn seeds
    correct = np.einsum("rt,rt->r", per_track, tracks)
    return correct / (arm.correct.shape[0] * (tracks @ arm.totals))


def bootstrap_difference(
    a: Arm,
    b: Arm,
    *,
    paired_tracks: bool,
    paired_seeds: bool,
    replicates: int = REPLICATES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Hierarchical bootstrap of accuracy(a) - accuracy(b).

    Each replicate draws tracks with replacement (a track's sequences move together) and seeds
    with replacement. ``paired_tracks``: both arms are scored on the same drawn tracks (the same
    test split for two models); otherwise each arm draws its own. ``paired_seeds``: both arms
    use the same drawn seeds (seen and unseen accuracy of one model's seeds); otherwise each
    draws its own. Percentile interval; two-sided p = min(1, 2 min(k<=0 + 1, k>=0 + 1) / (R + 1))
    with k the replicates on either side of 0 (the +1 keeps p above 0).
    """
    if paired_tracks and not np.array_equal(a.totals, b.totals):
        raise ValueError("paired tracks need the same tracks on both sides")
    if paired_seeds and a.correct.shape[0] != b.correct.shape[0]:
        raise ValueError("paired seeds need the same seeds on both sides")
    rng = np.random.default_rng(seed)
    tracks_a = _counts(rng, a.totals.size, replicates)
    tracks_b = tracks_a if paired_tracks else _counts(rng, b.totals.size, replicates)
    seeds_a = _counts(rng, a.correct.shape[0], replicates)
    seeds_b = seeds_a if paired_seeds else _counts(rng, b.correct.shape[0], replicates)
    diffs = _replicates(a, tracks_a, seeds_a) - _replicates(b, tracks_b, seeds_b)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
    p = min(1.0, 2.0 * (min(below, above) + 1) / (replicates + 1))
    return {
        "delta": a.accuracy() - b.accuracy(),
        "ci": [float(low), float(high)],
        "p": p,
        "replicates": replicates,
        "seed": seed,
        "confidence": confidence,
    }
