"""Comparisons of a phase table: every configuration against the phase's reference model, and
the report's own claims re-checked.

The verdict comes from a paired, hierarchical bootstrap over test tracks and seeds on the
trials' per-sequence predictions (:func:`stats.bootstrap_difference`), with the p-values of one
table adjusted by Holm's method. Welch's interval over seeds is kept beside it as a seed-only
check, and is the method (with a note) only where a side has no predictions (runs made before
trials wrote them). The report check has only the report's means and stds: Welch, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jersey_ray import metrics as M
from jersey_ray.errors import UserError
from jersey_ray.results import reference
from jersey_ray.results.predictions import (
    ConfigPredictions,
    RunPredictions,
    config_predictions,
    same_tracks,
)
from jersey_ray.results.runs import best_config_on_validation, read_run, record_skip
from jersey_ray.results.stats import ALPHA, bootstrap_difference, holm, welch

BEST_OF = "best:"
"""A sweep's ``reference = "best:phaseA"``: the best model of that phase, chosen on validation."""
BOOTSTRAP = "paired_bootstrap"
WELCH_SEEDS = "welch_seeds"


# --------------------------------------------------------------------------- the reference


def read_summary(path: Path, skipped: list[dict[str, str]]) -> dict[str, Any] | None:
    """Another phase's summary.json; an unusable one is a counted skip."""
    rel = f"{path.parent.name}/summary.json"
    try:
        other = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        record_skip(skipped, rel, f"unreadable summary ({type(err).__name__}: {err})")
        return None
    if not isinstance(other, dict) or not isinstance(other.get("models"), list):
        record_skip(skipped, rel, "not a phase summary (no 'models' list)")
        return None
    return other


@dataclass(frozen=True)
class ReferenceChoice:
    id: str
    """The reference configuration ("": none available)."""
    chosen: str
    """How it was chosen ("" when sweep.json names it directly)."""
    summary_path: Path | None = None
    """The phase summary it was chosen from (``best:<phase>``): its numbers come from there."""
    summary: dict[str, Any] | None = None


def choose_reference(
    declared: str, out_dir: Path, skipped: list[dict[str, str]]
) -> ReferenceChoice:
    """The reference sweep.json declares: a configuration id, or ``best:<phase>``, the
    configuration of that phase's summary with the highest mean best val acc_number."""
    if not declared.startswith(BEST_OF):
        return ReferenceChoice(declared, "")
    phase = declared[len(BEST_OF) :]
    path = out_dir.resolve().parent / phase / "summary.json"
    other = read_summary(path, skipped) if path.is_file() else None
    best = best_config_on_validation(other) if other else None
    if best is None:
        why = f"the best {phase} model on validation, but {path} has none: run {phase} first"
        return ReferenceChoice("", why)
    how = f"the best {phase} model on validation (highest mean best val acc_number)"
    return ReferenceChoice(best, how, path, other)


def resolve_reference(
    declared: str, out_dir: Path, skipped: list[dict[str, str]]
) -> tuple[str, str]:
    """The reference configuration id and how it was chosen (empty id: none available)."""
    choice = choose_reference(declared, out_dir, skipped)
    return choice.id, choice.chosen


def _record_in(ref: str, summary: dict[str, Any], path: Path) -> dict[str, Any] | None:
    for rec in summary["models"]:
        if not isinstance(rec, dict) or ref not in (rec.get("config"), rec.get("id")):
            continue
        if (rec.get(M.TEST_ACC_NUMBER) or {}).get("n", 0) >= 1:
            src = f"{path.parent.name}/summary.json (run {summary.get('run_dir')})"
            return {**rec, "source": src, "run_dir": summary.get("run_dir")}
    return None


def _reference_elsewhere(
    ref: str, out_dir: Path, skipped: list[dict[str, str]]
) -> dict[str, Any] | None:
    """The reference model's record in the first other phase's summary beside ``out_dir``
    that has it (a reference named directly, not chosen from a phase)."""
    for path in sorted(out_dir.resolve().parent.glob("*/summary.json")):
        if path.parent == out_dir.resolve():
            continue
        other = read_summary(path, skipped)
        found = _record_in(ref, other, path) if other else None
        if found is not None:
            return found
    return None


def find_reference(
    choice: ReferenceChoice,
    records: list[dict[str, Any]],
    out_dir: Path,
    skipped: list[dict[str, str]],
) -> dict[str, Any] | None:
    """The reference's record: from this run, else from the summary it was chosen from
    (``best:<phase>``: exactly that one), else from another phase's summary beside this one."""
    ref = choice.id
    if not ref:
        return None
    here = [r for r in records if r["config"] == ref] or [r for r in records if r["id"] == ref]
    if len(here) == 1 and here[0]["n_finished"] >= 1:
        return {**here[0], "source": "this run", "run_dir": None}
    if choice.summary is not None and choice.summary_path is not None:
        return _record_in(ref, choice.summary, choice.summary_path)
    return _reference_elsewhere(ref, out_dir, skipped)


# --------------------------------------------------------------------------- comparisons


def _stats_of(record: dict[str, Any]) -> tuple[float, float, int] | None:
    s = record[M.TEST_ACC_NUMBER]
    return (s["mean"], s["std"], s["n"]) if s["n"] >= 2 else None


ONE_SEED = (
    "one seed on a side: the interval holds the test set's noise (tracks) only, not the seeds'"
)


def _welch_seeds(rec: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """Welch over seeds where both sides have n >= 2, else its fields empty (n/a)."""
    a, b = _stats_of(rec), _stats_of(ref)
    if a is None or b is None:
        return dict.fromkeys(("diff", "ci_low", "ci_high", "df", "p"))
    w = welch(a, b)
    return {k: w[k] for k in ("diff", "ci_low", "ci_high", "df", "p")}


def reference_predictions(
    preds: RunPredictions, ref: dict[str, Any]
) -> tuple[ConfigPredictions | None, str]:
    """The reference's test predictions: from this run's trials, or from the run folder of the
    summary it came from (that run's own skips are not this run's; its predictions' are)."""
    if ref["source"] == "this run":
        return preds.get(ref["config"]), ""
    run_dir = ref.get("run_dir")
    remote = "://" in str(run_dir)  # a run in object storage: read_run fetches its small files
    if not run_dir or (not remote and not (Path(run_dir) / "sweep.json").is_file()):
        return None, f"the reference's run folder ({run_dir}) is not here"
    try:
        other = read_run(run_dir)
    except UserError as err:
        return None, f"the reference's run folder cannot be read ({err})"
    trials = [t for t in other.trials if t.config == ref["config"]]
    return config_predictions(trials, "test", preds.run.skipped, where=f"{run_dir}/"), ""


def _why_unpaired(mine: ConfigPredictions, ref: ConfigPredictions | None, ref_why: str) -> str:
    """Why the bootstrap cannot pair the two ("" when it can)."""
    if mine.arm is None:
        return "no usable test_predictions.csv (a run made before trials wrote it?)"
    if ref is None or ref.arm is None:
        return ref_why or "the reference has no usable test_predictions.csv"
    if not mine.seeds or not ref.seeds:
        return "no seed with usable predictions on a side"
    if not same_tracks(mine, ref):
        return "the two were tested on different tracks (another cache?)"
    return ""


def _lacking_note(mine: ConfigPredictions, ref: ConfigPredictions) -> str | None:
    parts = [
        f"{who} seeds {', '.join(map(str, p.lacking))} lack usable predictions"
        for who, p in (("model", mine), ("reference", ref))
        if p.lacking
    ]
    return "; ".join(parts) + ": the bootstrap uses the others" if parts else None


def compare_one(
    rec: dict[str, Any],
    mine: ConfigPredictions,
    ref: dict[str, Any],
    ref_pred: tuple[ConfigPredictions | None, str],
) -> dict[str, Any]:
    """One row of the comparison (before Holm): the bootstrap where both sides have paired
    predictions (with one seed a side, over tracks alone: noted), Welch over seeds otherwise;
    Welch over seeds beside it either way (n/a below 2 seeds a side)."""
    w = _welch_seeds(rec, ref)
    entry: dict[str, Any] = {
        "model": rec["config"],
        "id": rec["id"],
        "display": rec["display"],
        "reference": ref["config"],
        "source": ref["source"],
        "metric": M.TEST_ACC_NUMBER,
        "welch_seeds": w,
    }
    why = _why_unpaired(mine, *ref_pred)
    if why and w["p"] is None:
        return {}  # neither a bootstrap nor Welch: no comparison
    if why:
        ci = None if w["ci_low"] is None else [w["ci_low"], w["ci_high"]]
        return {
            **entry,
            "delta": w["diff"],
            "ci": ci,
            "p": w["p"],
            "method": WELCH_SEEDS,
            "n_seeds": rec[M.TEST_ACC_NUMBER]["n"],
            "n_seeds_reference": ref[M.TEST_ACC_NUMBER]["n"],
            "n_tracks": None,
            "note": why,
        }
    other = ref_pred[0]
    assert other is not None and mine.arm is not None and other.arm is not None
    b = bootstrap_difference(mine.arm, other.arm, paired_tracks=True, paired_seeds=False)
    return {
        **entry,
        "delta": b["delta"],
        "ci": b["ci"],
        "p": b["p"],
        "method": BOOTSTRAP,
        "n_seeds": len(mine.seeds),
        "n_seeds_reference": len(other.seeds),
        "n_tracks": len(mine.tracks),
        "replicates": b["replicates"],
        "bootstrap_seed": b["seed"],
        "note": _notes(
            _lacking_note(mine, other),
            ONE_SEED if min(len(mine.seeds), len(other.seeds)) < 2 else None,
        ),
    }


def _notes(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def adjust(entries: list[dict[str, Any]]) -> None:
    """Holm over one table's comparisons; significant only on the adjusted p-value."""
    for entry, p_holm in zip(entries, holm([e["p"] for e in entries]), strict=True):
        entry["p_holm"] = p_holm
        entry["significant"] = p_holm is not None and p_holm < ALPHA


def compare_to_reference(
    preds: RunPredictions, records: list[dict[str, Any]], ref: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The comparison of every finished configuration (not the reference itself) against the
    reference, Holm-adjusted together: the bootstrap where both have predictions (one seed a
    side is enough for its track level), else Welch over seeds where both have n >= 2."""
    if ref is None or not ref[M.TEST_ACC_NUMBER]["n"]:
        return []
    todo = [
        r
        for r in records
        if r[M.TEST_ACC_NUMBER]["n"]
        and not (ref["source"] == "this run" and r["config"] == ref["config"])
    ]
    if not todo:
        return []
    ref_pred = reference_predictions(preds, ref)
    entries = [compare_one(r, preds.get(r["config"]), ref, ref_pred) for r in todo]
    entries = [e for e in entries if e]
    adjust(entries)
    return entries


# --------------------------------------------------------------------------- report check


def report_check(phase: str) -> dict[str, Any] | None:
    """The report's own Table numbers against its baseline, with Welch's interval and p (the
    report gives only means and stds); the verdicts are Holm-adjusted over the table's rows
    (:func:`adjust`), as every other verdict of the tables."""
    baseline_id = reference.REPORT_BASELINE.get(phase)
    if baseline_id is None:
        return None
    base = reference.report_row(baseline_id)
    if base is None:  # the packaged table and REPORT_BASELINE disagree: a packaging bug
        raise RuntimeError(
            f"jersey_ray/results/report_tables.csv has no row for {baseline_id}, the {phase} "
            "baseline named in reference.REPORT_BASELINE; reinstall jersey-ray or fix the package "
            "data"
        )
    n = reference.REPORT_N

    def stats(row: reference.ReportRow) -> tuple[float, float, int]:
        return row.mean["acc_number"], reference.sample_std(row.std["acc_number"], n), n

    rows = []
    for row in reference.phase_rows(phase):
        if row.model_id == baseline_id:
            continue
        result = welch(stats(row), stats(base))
        rows.append({"id": row.model_id, "display": row.display, **result})
    adjust(rows)
    return {
        "table": reference.PHASE_TABLE[phase],
        "baseline": baseline_id,
        "baseline_display": base.display,
        "baseline_mean": base.mean["acc_number"],
        "baseline_std_sample": stats(base)[1],
        "n": n,
        "method": "welch",
        "p_adjust": "holm",
        "alpha": ALPHA,
        "std_conversion": f"sample std = report std x sqrt({n}/{n - 1})",
        "rows": rows,
        "higher_mean": sum(r["diff"] > 0 for r in rows),
        "significantly_higher": sum(r["significant"] and r["diff"] > 0 for r in rows),
    }
