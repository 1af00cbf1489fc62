"""A sweep on a held-out cache (``data.split == "heldout"``): do the models read two-digit
numbers they never trained on?

The test split of such a cache holds only numbers seen in training; the ``unseen`` split holds
the held-out numbers. Per model: accuracy on seen test numbers, on unseen numbers, their
difference (unseen - seen) with a bootstrap interval paired over seeds (each seed's two
accuracies move together) that resamples tracks within each set, and the unseen set's per-digit
accuracy (is the failure in the tens or the ones head?). Each held-out number is listed with
its in-place coverage and each model's accuracy on it (:mod:`.heldout_numbers`).
"""

from __future__ import annotations

from typing import Any

from jersey_ray import metrics as M
from jersey_ray.results.compare import adjust
from jersey_ray.results.predictions import RunPredictions, arm_of_seeds
from jersey_ray.results.runs import Trial
from jersey_ray.results.stats import (
    BOOTSTRAP_SEED,
    REPLICATES,
    bootstrap_difference,
    describe,
    paired_t,
)

SEEN = "test_acc_number_seen"
UNSEEN = "test_acc_number_unseen"
DIGITS = (M.UNSEEN_ACC_TENS, M.UNSEEN_ACC_ONES)
BOOTSTRAP = "bootstrap_paired_seeds"
PAIRED_T = "paired_t_seeds"
METHOD = (
    "unseen - seen test acc_number. Interval and p: hierarchical bootstrap, "
    f"{REPLICATES:,} replicates (seed {BOOTSTRAP_SEED}), each drawing the finished seeds with "
    "replacement (the same seeds for both sets: paired) and the tracks of each set with "
    "replacement (a track's sequences move together); percentile interval; two-sided p = 2 x "
    "the smaller share of replicates on either side of 0, each share (k + 1) / (R + 1); "
    "Holm-adjusted over this table. Where the predictions files are missing: Student's t over "
    "the seeds' paired differences."
)


def is_heldout(sweep: dict[str, Any]) -> bool:
    return (sweep.get("data") or {}).get("split") == "heldout"


def _values(trials: list[Trial], key: str) -> list[float]:
    return [float(t.last[key]) for t in trials if isinstance(t.last.get(key), (int, float))]


def add_fields(record: dict[str, Any], done: list[Trial]) -> None:
    """Seen and unseen acc_number ({mean, std, n, values} over the finished seeds, like
    test_acc_number) and the unseen per-digit accuracies."""
    record[SEEN] = describe(_values(done, M.TEST_ACC_NUMBER))
    record[UNSEEN] = describe(_values(done, M.UNSEEN_ACC_NUMBER))
    for key in DIGITS:
        record[key] = describe(_values(done, key))


def _by_seeds(preds: RunPredictions, config: str) -> dict[str, Any] | None:
    """Bootstrap of unseen - seen on the seeds with both predictions files (None: no such
    seed; with one, over the tracks alone: noted)."""
    seen, unseen = preds.get(config, "test"), preds.get(config, M.UNSEEN)
    seeds = tuple(s for s in seen.seeds if s in unseen.seeds)
    if not seeds:
        return None
    b = bootstrap_difference(
        arm_of_seeds(unseen, seeds),
        arm_of_seeds(seen, seeds),
        paired_tracks=False,
        paired_seeds=True,
    )
    return {
        "delta": b["delta"],
        "ci": b["ci"],
        "p": b["p"],
        "method": BOOTSTRAP,
        "n_seeds": len(seeds),
        "n_tracks": {"seen": len(seen.tracks), "unseen": len(unseen.tracks)},
        "note": "one seed: the interval holds the test set's noise only"
        if len(seeds) < 2
        else None,
    }


def _by_t(trials: list[Trial]) -> dict[str, Any] | None:
    """Student's t over the seeds' unseen - seen differences (no predictions files)."""
    both = [
        t
        for t in trials
        if t.status == "finished" and isinstance(t.last.get(M.UNSEEN_ACC_NUMBER), (int, float))
    ]
    if len(both) < 2:
        return None
    t = paired_t([t.last[M.UNSEEN_ACC_NUMBER] - t.last[M.TEST_ACC_NUMBER] for t in both])
    ci = None if t["ci_low"] is None else [t["ci_low"], t["ci_high"]]
    return {
        "delta": t["diff"],
        "ci": ci,
        "p": t["p"],
        "method": PAIRED_T,
        "n_seeds": len(both),
        "n_tracks": None,
        "note": "no usable predictions files for 2 seeds: seed-only paired t",
    }


def seen_vs_unseen(preds: RunPredictions, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per configuration with a bootstrap (predictions) or 2+ seeds, Holm-adjusted."""
    entries = []
    for rec in records:
        trials = [t for t in preds.run.trials if t.config == rec["config"]]
        found = _by_seeds(preds, rec["config"]) or _by_t(trials)
        if found is None:
            continue
        entries.append(
            {
                "model": rec["config"],
                "id": rec["id"],
                "display": rec["display"],
                "seen": rec[SEEN]["mean"],
                "unseen": rec[UNSEEN]["mean"],
                **found,
            }
        )
    adjust(entries)
    return entries


def heldout_summary(
    sweep: dict[str, Any], preds: RunPredictions, records: list[dict[str, Any]]
) -> dict[str, Any]:
    from jersey_ray.results.heldout_numbers import details

    numbers = (sweep.get("data") or {}).get("heldout_numbers") or []
    return {
        "numbers": [str(n) for n in numbers],
        "method": METHOD,
        "comparisons": seen_vs_unseen(preds, records),
        # each number's in-place coverage and accuracy, unseen vs the reference, renders seen
        **details(sweep, preds, records),
    }
