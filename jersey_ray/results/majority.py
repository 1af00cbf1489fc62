"""The majority-class baseline of a table: always predict the most frequent training number.

Its accuracy on the test sequences shows where chance is. The class counts come from
``sweep.json`` (``data.per_class``, recorded at sweep time from the cache manifest), else from
the cache manifest itself when it is a local folder; without either the row says why it is
unavailable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jersey_ray.data.index import class_key, label_digits, parse_label
from jersey_ray.metrics import UNSEEN

PerClass = dict[str, dict[str, dict[str, int]]]
"""jersey -> split -> {"tracks", "sequences", ...} (the manifest's counts.per_class)."""


def _sequences(per_class: PerClass, jersey: str, split: str) -> int:
    """Sequences of ``jersey`` in ``split`` (0 where the counts are absent or not numbers)."""
    splits = per_class.get(jersey)
    cell = splits.get(split) if isinstance(splits, dict) else None
    value = cell.get("sequences", 0) if isinstance(cell, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _from_manifest(cache: str) -> tuple[PerClass | None, str]:
    """The manifest's per-class counts of a local cache, or why there are none."""
    if not cache or "://" in cache or not Path(cache).is_dir():
        return None, f"the cache named in sweep.json ({cache!r}) is not a local folder"
    from jersey_ray.cache.store import CacheError, read_manifest  # pyarrow: only when needed

    try:
        per_class = read_manifest(cache)["counts"]["per_class"]
    except (CacheError, KeyError, TypeError) as err:
        return None, f"the cache manifest has no per-class counts ({err})"
    return (
        (per_class, f"cache manifest {cache}")
        if isinstance(per_class, dict)
        else (None, "the cache manifest's per-class counts are not a mapping")
    )


def _scores(per_class: PerClass, number: str, split: str) -> dict[str, Any] | None:
    """Accuracy of always predicting ``number`` on ``split``'s sequences."""
    counts = {j: _sequences(per_class, j, split) for j in per_class}
    total = sum(counts.values())
    if not total:
        return None
    digits = {j: label_digits(j) for j in counts}  # all numbers: checked by the caller
    tens, ones = digits[number]
    return {
        "sequences": total,
        "acc_number": counts.get(number, 0) / total,
        "acc_tens": sum(n for j, n in counts.items() if digits[j][0] == tens) / total,
        "acc_ones": sum(n for j, n in counts.items() if digits[j][1] == ones) / total,
    }


def majority_class(sweep: dict[str, Any]) -> dict[str, Any]:
    """``{"available": True, "number", "train_sequences", "tied_with", "source", "test",
    ["unseen"]}`` or ``{"available": False, "reason"}``; never raises on old run folders."""
    data = sweep.get("data") or {}
    per_class = data.get("per_class")
    source = "sweep.json"
    if not isinstance(per_class, dict) or not per_class:
        why = "sweep.json has no per-class counts (an older sweep)"
        per_class, found = _from_manifest(str(data.get("cache") or ""))
        if per_class is None:
            return {"available": False, "reason": f"{why}, and {found}"}
        source = found
    if not all(isinstance(k, str) and parse_label(k) for k in per_class):
        return {"available": False, "reason": f"{source}: per-class keys are not jersey numbers"}
    train = {j: _sequences(per_class, j, "train") for j in per_class}
    top = max(train.values(), default=0)
    if not top:
        return {"available": False, "reason": f"{source}: no training sequences per class"}
    # ties go to the first in display order (one-digit numbers first, then by value)
    tied = sorted((j for j, n in train.items() if n == top), key=class_key)
    result: dict[str, Any] = {
        "available": True,
        "number": tied[0],
        "train_sequences": top,
        "train_total": sum(train.values()),
        "tied_with": tied[1:],
        "source": source,
        "test": _scores(per_class, tied[0], "test"),
    }
    if result["test"] is None:
        return {"available": False, "reason": f"{source}: no test sequences per class"}
    unseen = _scores(per_class, tied[0], UNSEEN)
    if unseen is not None:
        result[UNSEEN] = unseen
    return result
