"""The held-out numbers one by one: their in-place coverage, each model's accuracy on each, each
model's unseen accuracy against the sweep's reference, and which models saw renders of them.

A held-out number can be read only if its digits were seen in place in training (the fair rule,
:mod:`jersey_ray.data.split`), so every seen/unseen table lists each number with its coverage
("tens 2 in 21,27 (34 seq); ones 3 in 13,43 (28 seq)", from the cache's per-class counts in
``sweep.json``) beside every model's accuracy on it: a reader sees which numbers could not be
composed from the training data. Unseen accuracy against the reference: the paired bootstrap
over the unseen tracks (the same tracks for both models), seeds drawn independently,
Holm-adjusted over the table, as the seen comparison (:mod:`jersey_ray.results.compare`).

A model fine-tuned from a run or checkpoint of this project (``pretrained``) may have seen
renders of the held-out numbers there: the table marks each row ``yes`` when the source's
training data held them (a ``tracks`` split, or a held-out split that did not hold out every
number held out here), ``no`` when it did not, so the two synthetic-to-real variants stay apart.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from typing import Any

from jersey_ray import metrics as M
from jersey_ray.data.split import coverage, coverage_text, is_fair
from jersey_ray.results.compare import adjust
from jersey_ray.results.predictions import FILES, RunPredictions, same_tracks
from jersey_ray.results.runs import Trial
from jersey_ray.results.stats import bootstrap_difference

RENDERS_NOTE = (
    "Saw renders: whether the model's starting weights (`pretrained`, a run or checkpoint of "
    "this project) were trained on images of the held-out numbers (yes: e.g. synthetic data "
    "covering all 00-99; no: that run held them out too; — : no such start)."
)


def train_counts(sweep: dict[str, Any]) -> dict[str, int]:
    """Training sequences per number, from ``sweep.json``'s per-class counts."""
    per_class = (sweep.get("data") or {}).get("per_class") or {}
    return {
        str(n): int((cells.get("train") or {}).get("sequences", 0))
        for n, cells in per_class.items()
    }


def coverage_entries(sweep: dict[str, Any], numbers: list[str]) -> list[dict[str, Any]]:
    """Per held-out number: its coverage text and parts, and whether it is fair."""
    counts = train_counts(sweep)
    out = []
    for number in numbers:
        parts = coverage(number, counts, numbers)
        out.append(
            {
                "number": number,
                "coverage": coverage_text(number, counts, numbers) if counts else "unknown",
                "fair": is_fair(number, counts, numbers) if counts else None,
                "parts": [_part(p) for p in parts],
            }
        )
    return out


def _part(p: Any) -> dict[str, Any]:
    return {
        "place": p.place,
        "digit": p.digit,
        "numbers": list(p.numbers),
        "sequences": p.sequences,
    }


def per_number_accuracy(trials: list[Trial]) -> dict[str, float]:
    """Mean over the finished seeds of each held-out number's unseen acc_number (from
    ``unseen_predictions.csv``; a seed without the file is left out)."""
    per_seed: dict[str, list[float]] = defaultdict(list)
    for trial in trials:
        path = trial.path / FILES[M.UNSEEN]
        if trial.status != "finished" or not path.is_file():
            continue
        right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        try:
            with path.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f):
                    cell = right[row["jersey"]]
                    cell[0] += row["correct"] == "1"
                    cell[1] += 1
        except (OSError, KeyError, csv.Error):
            continue  # the collector's predictions reader records the bad file
        for number, (c, n) in right.items():
            per_seed[number].append(c / n)
    return {n: sum(v) / len(v) for n, v in per_seed.items()}


def saw_renders(trials: list[Trial], numbers: list[str]) -> str | None:
    """``yes``/``no`` (see the module docstring), ``unknown`` when the source cannot be read,
    None when the model did not start from a run or checkpoint of this project."""
    from jersey_ray.models.warmstart import is_project_source, source_data

    for trial in trials:
        pretrained = _pretrained(trial)
        if pretrained is None:
            continue
        if not is_project_source(pretrained):
            return None
        data = source_data(pretrained)
        if data is None:
            return "unknown"
        held_there = set(data.heldout_numbers) if data.split == "heldout" else set()
        kept = set(data.numbers)
        trained = [n for n in numbers if n not in held_there and (not kept or n in kept)]
        return "yes" if trained else "no"
    return None


def _pretrained(trial: Trial) -> str | None:
    path = trial.path / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["train"]["pretrained"])
    except (OSError, ValueError, KeyError, TypeError):
        value = trial.params.get("pretrained")
        return str(value) if value is not None else None


def against_reference(
    preds: RunPredictions, records: list[dict[str, Any]], reference: str
) -> list[dict[str, Any]]:
    """Unseen acc_number of every configuration minus the reference's, paired over the unseen
    tracks, Holm-adjusted together (configurations without usable predictions are left out)."""
    ref = preds.get(reference, M.UNSEEN)
    if ref.arm is None:
        return []
    entries = []
    for rec in records:
        mine = preds.get(rec["config"], M.UNSEEN)
        if rec["config"] == reference or mine.arm is None or not same_tracks(mine, ref):
            continue
        b = bootstrap_difference(mine.arm, ref.arm, paired_tracks=True, paired_seeds=False)
        entries.append(
            {
                "model": rec["config"],
                "reference": reference,
                "delta": b["delta"],
                "ci": b["ci"],
                "p": b["p"],
                "n_seeds": len(mine.seeds),
                "n_seeds_reference": len(ref.seeds),
            }
        )
    adjust(entries)
    return entries


def details(
    sweep: dict[str, Any], preds: RunPredictions, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The per-number part of the held-out summary."""
    numbers = [str(n) for n in (sweep.get("data") or {}).get("heldout_numbers") or []]
    by_config: dict[str, list[Trial]] = defaultdict(list)
    for t in preds.run.trials:
        by_config[t.config].append(t)
    reference = str(sweep.get("reference") or "")
    configs = {r["config"] for r in records}
    return {
        "coverage": coverage_entries(sweep, numbers),
        "per_number": {r["config"]: per_number_accuracy(by_config[r["config"]]) for r in records},
        "saw_renders": {r["config"]: saw_renders(by_config[r["config"]], numbers) for r in records},
        "unseen_reference": reference if reference in configs else None,
        "unseen_vs_reference": against_reference(preds, records, reference)
        if reference in configs
        else [],
    }


def number_lines(held: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: the per-number table, then unseen accuracy against the reference."""
    from jersey_ray.results.verdicts import interval, pvalue, signed, verdict

    cover = held.get("coverage") or []
    if not cover:
        return []
    per_number = held.get("per_number") or {}
    lines = [
        "### Each held-out number: in-place coverage and unseen acc number per model",
        "",
        "Coverage: the two-digit training numbers holding the number's tens and ones digit in "
        "place, with their training sequences. Fair: each digit in >= 2 such numbers with "
        ">= 20 sequences between them (`jersey_ray.data.split`); an unfair number's accuracy "
        "measures missing data more than composition. Accuracy: mean over the seeds.",
        "",
        "| Number | In-place coverage | Fair | "
        + " | ".join(f"`{r['config']}`" for r in rows)
        + " |",
        "|" + "---|" * (3 + len(rows)),
    ]
    for c in cover:
        fair = {True: "yes", False: "**no**", None: "?"}[c["fair"]]
        accs = [per_number.get(r["config"], {}).get(c["number"]) for r in rows]
        cells = ["—" if a is None else f"{a:.3f}" for a in accs]
        lines.append(f"| {c['number']} | {c['coverage']} | {fair} | " + " | ".join(cells) + " |")
    lines.append("")
    renders = held.get("saw_renders") or {}
    vs = {e["model"]: e for e in held.get("unseen_vs_reference") or []}
    ref = held.get("unseen_reference")
    if ref is None and not any(renders.values()):
        return lines
    lines += [
        f"### Unseen acc number against the reference (`{ref or 'none'}`)",
        "",
        "Δ = unseen acc number − the reference's; paired bootstrap over the unseen tracks, seeds "
        "drawn independently, Holm-adjusted over this table. " + RENDERS_NOTE,
        "",
        "| Model | Saw renders | Unseen acc number | Δ vs reference | CI | p | p (Holm) "
        "| Verdict |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        e = vs.get(r["config"])
        stat = ["—"] * 5
        if e is not None:
            stat = [signed(e["delta"]), interval(*(e["ci"] or (None, None))), pvalue(e["p"]),
                    pvalue(e["p_holm"]), verdict(e["delta"], e["significant"], e["p"])]  # fmt: skip
        mean = (r.get("test_acc_number_unseen") or {}).get("mean")
        acc = "—" if mean is None else f"{mean:.4f}"
        saw = renders.get(r["config"]) or "—"
        lines.append(f"| `{r['config']}` | {saw} | {acc} | " + " | ".join(stat) + " |")
    return [*lines, ""]
