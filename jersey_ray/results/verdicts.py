"""The Markdown sections of ``table.md`` that carry verdicts: the difference from the reference,
seen vs unseen numbers (held-out caches) and the report check.

Formatting only: every number was computed by :mod:`.compare` and :mod:`.heldout`. The
confidence level is read from :mod:`.stats` when rendering.
"""

from __future__ import annotations

import math
from typing import Any

from jersey_ray import metrics as M
from jersey_ray.results import stats
from jersey_ray.results.compare import BOOTSTRAP, WELCH_SEEDS
from jersey_ray.results.heldout import BOOTSTRAP as HELDOUT_BOOTSTRAP
from jersey_ray.results.heldout import PAIRED_T, SEEN, UNSEEN

METHOD_LABEL = {
    BOOTSTRAP: "paired bootstrap",
    WELCH_SEEDS: "seed-only Welch",
    HELDOUT_BOOTSTRAP: "bootstrap (seeds paired)",
    PAIRED_T: "seed-only paired t",
}


def level() -> str:
    """The confidence level of every interval, as a percentage (``95%``)."""
    return f"{stats.CONFIDENCE * 100:g}%"


def num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def signed(x: float) -> str:
    return f"{x:+.4f}"


def interval(low: float | None, high: float | None) -> str:
    return "n/a" if low is None or high is None else f"[{signed(low)}, {signed(high)}]"


def pvalue(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.4f}"


def verdict(diff: float, significant: bool | None, p: float | None = 0.0) -> str:
    if p is None:
        return "n/a (zero variance)"
    if not significant:
        return "not significant"
    return "higher (significant)" if diff > 0 else "lower (significant)"


def _bootstrap_text() -> str:
    return (
        f"{level()} CI and p: paired hierarchical bootstrap, {stats.REPLICATES:,} replicates "
        f"(seed {stats.BOOTSTRAP_SEED}); each replicate draws the test tracks with replacement, "
        "the same tracks for both models (paired; a track's sequences move together), and each "
        "model's seeds with replacement, and scores each model on the drawn (seed, track) "
        "cells. Percentile interval; two-sided p = 2 × the smaller share of replicates on "
        "either side of 0, each share (k + 1) / (R + 1). p (Holm): adjusted by Holm's method "
        "over this table's comparisons; a difference is significant only when p (Holm) < "
        f"{stats.ALPHA:g}. Seed-only Welch: {stats.CI_METHOD} over the seeds' accuracies "
        "(unpaired, blind to which tracks are hard), shown as a check, never the verdict; "
        '"n/a" when both sides have zero variance. A row whose method is seed-only Welch has no '
        "usable predictions (its note says why): Welch's p then enters Holm."
    )


def _reference_intro(summary: dict[str, Any]) -> tuple[list[str], bool]:
    """The section's opening, and whether comparisons follow."""
    ref = summary["reference"]
    lines = ["## Difference from the reference (test acc_number)", ""]
    if not ref["id"] and ref.get("declared"):
        return [*lines, f"Reference: {ref['chosen']}; no comparison is made.", ""], False
    if not ref["id"]:
        return [*lines, "No reference model is declared for this phase (sweep.json).", ""], False
    if ref["source"] is None:
        return [
            *lines,
            f"Reference `{ref['id']}` is not in this run, and no other phase's summary.json "
            "beside this table has it: no comparison is made.",
            "",
        ], False
    chosen = f" ({ref['chosen']})" if ref.get("chosen") else ""
    lines += [
        f"Reference: `{ref['id']}`{chosen} (n = {ref['n']}, from {ref['source']}). "
        "Δ = model − reference test acc_number (over the seeds).",
        "",
        _bootstrap_text(),
        "",
    ]
    return lines, True


COMPARISON_HEADER = (
    "| Model | id | n | Tracks | Δ acc_number | {level} CI | p | p (Holm) | Verdict | Method "
    "| Seed-only Welch {level} CI | Welch df | Welch p |"
)


def comparison_section(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines, go_on = _reference_intro(summary)
    if not go_on:
        return lines
    entries = summary["comparisons"]
    if not entries:
        return [
            *lines,
            "No comparison possible: it needs test predictions on both sides, or n ≥ 2 seeds.",
            "",
        ]
    lines += [COMPARISON_HEADER.format(level=level()), "|" + "---|" * 13]
    for e in entries:
        w = e["welch_seeds"]
        lines.append(
            f"| {e['display']} | `{e['model']}` | {e['n_seeds']} | {num(e['n_tracks'], 'd')} "
            f"| {signed(e['delta'])} | {interval(*(e['ci'] or (None, None)))} | {pvalue(e['p'])} "
            f"| {pvalue(e['p_holm'])} | {verdict(e['delta'], e['significant'], e['p'])} "
            f"| {METHOD_LABEL[e['method']]} | {interval(w['ci_low'], w['ci_high'])} "
            f"| {num(w['df'], '.1f')} | {pvalue(w['p'])} |"
        )
    notes = [f"- `{e['model']}`: {e['note']}." for e in entries if e.get("note")]
    compared = {e["model"] for e in entries}
    missing = [
        r["config"]
        for r in rows
        if r["config"] not in compared and r["config"] != summary["reference"]["id"]
    ]
    if missing:
        notes.append(
            f"- Not compared (no predictions and n < 2): {', '.join(f'`{m}`' for m in missing)}."
        )
    return [*lines, *(["", *notes] if notes else []), ""]


def report_check_section(check: dict[str, Any] | None) -> list[str]:
    if check is None:
        return []
    base = f"{check['baseline_display']} (`{check['baseline']}`)"
    lines = [
        "## Report check: the report's own numbers",
        "",
        f"The report's Table {check['table']} against its baseline {base}, "
        f"{check['baseline_mean']:.4f}: Δ = mean − baseline mean with a {level()} "
        f"{stats.CI_METHOD}, n = {check['n']} per side (only the report's means and stds "
        "exist, so no bootstrap). The report's std is the population std (ddof 0): "
        f"{check['std_conversion']} = ×{math.sqrt(check['n'] / (check['n'] - 1)):.4f}. "
        "Report means are rounded to 4 decimals. p: Welch's two-sided p; p (Holm): adjusted "
        "by Holm's method over this table's rows, as every verdict in these tables; a "
        f"difference is significant only when p (Holm) < {stats.ALPHA:g} (the interval is "
        "unadjusted).",
        "",
        f"| Model (report) | id | Δ acc_number | {level()} CI | df | p | p (Holm) | Verdict |",
        "|" + "---|" * 8,
    ]
    for r in check["rows"]:
        lines.append(
            f"| {r['display']} | `{r['id']}` | {signed(r['diff'])} "
            f"| {interval(r['ci_low'], r['ci_high'])} | {num(r['df'], '.1f')} "
            f"| {pvalue(r.get('p'))} | {pvalue(r.get('p_holm'))} "
            f"| {verdict(r['diff'], r['significant'], r.get('p', 0.0))} |"
        )
    lines += [
        "",
        f"{check['higher_mean']} of {len(check['rows'])} models have a higher mean than the "
        f"baseline; {check['significantly_higher']} of them significantly.",
        "",
    ]
    return lines


def _acc(stat: dict[str, Any] | None) -> str:
    if not stat or not stat["n"]:
        return "—"
    std = "n/a" if stat["std"] is None else f"{stat['std']:.4f}"
    return f"{stat['mean']:.4f} ± {std}"


def _larger_drop(r: dict[str, Any]) -> str:
    """The head that loses more accuracy from seen to unseen numbers (means)."""
    cells = [r[M.TEST_ACC_TENS], r[M.UNSEEN_ACC_TENS], r[M.TEST_ACC_ONES], r[M.UNSEEN_ACC_ONES]]
    if not all(c["n"] for c in cells):
        return "—"
    tens = cells[0]["mean"] - cells[1]["mean"]
    ones = cells[2]["mean"] - cells[3]["mean"]
    if tens == ones:
        return f"equal ({signed(-tens)})"
    head = "tens" if tens > ones else "ones"
    return f"{head} ({signed(-tens)} tens, {signed(-ones)} ones)"


HELDOUT_HEADER = (
    "| Model | id | n | Seen acc number | Unseen acc number | Δ unseen − seen | {level} CI | p "
    "| p (Holm) | Verdict | Method | Unseen acc tens | Unseen acc ones | Seen acc tens "
    "| Seen acc ones | Larger drop |"
)


def _majority_heldout(majority: dict[str, Any]) -> str:
    if not majority.get("available"):
        return f"| Majority class (unavailable: {majority.get('reason')}) |" + " — |" * 15
    seen, unseen = majority["test"], majority.get(M.UNSEEN) or {}
    u = {k: num(unseen.get(k), ".4f") for k in ("acc_number", "acc_tens", "acc_ones")}
    return (
        f"| Majority class: always {majority['number']} (chance) | — | — "
        f"| {seen['acc_number']:.4f} | {u['acc_number']} |"
        + " — |"
        * 6
        + f" {u['acc_tens']} | {u['acc_ones']} | {seen['acc_tens']:.4f} "
        f"| {seen['acc_ones']:.4f} | — |"
    )


def heldout_section(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Seen vs unseen numbers: one row per finished configuration, then the majority class."""
    held = summary.get("heldout")
    if held is None:
        return []
    numbers = ", ".join(held["numbers"]) or "none listed in sweep.json"
    lines = [
        f"## Seen vs unseen numbers (held out of training: {numbers})",
        "",
        "Seen: the test split, which holds only numbers seen in training; unseen: the held-out "
        "numbers' tracks. Accuracies: mean ± sample std over the finished seeds. Δ = "
        f"{held['method']} Significant only when p (Holm) < {stats.ALPHA:g}. Larger drop: the "
        "head (tens or ones digit) whose mean accuracy falls more from seen to unseen numbers.",
        "",
        HELDOUT_HEADER.format(level=level()),
        "|" + "---|" * 16,
    ]
    by_model = {e["model"]: e for e in held["comparisons"]}
    for r in rows:
        e = by_model.get(r["config"])
        if e is None:
            stat = ["—"] * 6
        else:
            stat = [
                signed(e["delta"]),
                interval(*(e["ci"] or (None, None))),
                pvalue(e["p"]),
                pvalue(e["p_holm"]),
                verdict(e["delta"], e["significant"], e["p"]),
                METHOD_LABEL[e["method"]],
            ]
        cells = [
            r["display"],
            f"`{r['config']}`",
            str(r[SEEN]["n"]),
            _acc(r[SEEN]),
            _acc(r[UNSEEN]),
            *stat,
            _acc(r[M.UNSEEN_ACC_TENS]),
            _acc(r[M.UNSEEN_ACC_ONES]),
            _acc(r[M.TEST_ACC_TENS]),
            _acc(r[M.TEST_ACC_ONES]),
            _larger_drop(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(_majority_heldout(summary["majority_class"]))
    notes = [f"- `{e['model']}`: {e['note']}." for e in held["comparisons"] if e.get("note")]
    from jersey_ray.results.heldout_numbers import number_lines  # it formats with this module

    return [*lines, *(["", *notes] if notes else []), "", *number_lines(held, rows)]
