"""Rendering a phase summary: ``table.md`` (Markdown) and ``table.csv``.

Everything here formats what :mod:`jersey_ray.results.collect` computed; no number is computed anew,
so the Markdown, the CSV and ``summary.json`` cannot disagree. The sections with verdicts are
:mod:`.verdicts`; the results index is :mod:`.index`.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from jersey_ray import metrics as M
from jersey_ray.results import reference
from jersey_ray.results.heldout import SEEN, UNSEEN
from jersey_ray.results.verdicts import (
    comparison_section,
    heldout_section,
    num,
    report_check_section,
)

TEST_KEYS = (M.TEST_ACC_NUMBER, M.TEST_ACC_TENS, M.TEST_ACC_ONES)
"""The test metrics of a configuration's record, in table order."""


# --------------------------------------------------------------------------- Markdown


def _acc(stat: dict[str, Any]) -> str:
    if not stat["n"]:
        return "—"
    std = "n/a" if stat["std"] is None else f"{stat['std']:.4f}"
    return f"{stat['mean']:.4f} ± {std}"


def _rep(report: dict[str, Any] | None, metric: str) -> str:
    if report is None:
        return "—"
    return f"{report[f'{metric}_mean']:.4f} ± {report[f'{metric}_std']:.4f}"


def _bold_sets(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Configs holding the best displayed value per column (ties all bold)."""
    columns: dict[str, tuple[Any, Any]] = {
        key: (lambda r, k=key: round(r[k]["mean"], 4) if r[k]["n"] else None, max)
        for key in TEST_KEYS
    }
    columns["params"] = (lambda r: r["params"], min)
    columns["train_minutes_mean"] = (
        lambda r: None if r["train_minutes_mean"] is None else round(r["train_minutes_mean"], 1),
        min,
    )
    best: dict[str, set[str]] = {}
    for col, (value, pick) in columns.items():
        values = {r["config"]: value(r) for r in rows}
        present = [v for v in values.values() if v is not None]
        target = pick(present) if present else None
        best[col] = {c for c, v in values.items() if present and v == target}
    return best


def _b(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


TABLE_HEADER = (
    "| Model | id | Params | n | Acc number | Report | Acc tens | Report | Acc ones | Report "
    "| Best epoch (mean) | Train min/trial (mean) | Finished / pruned / failed |"
)


def _majority_row(majority: dict[str, Any]) -> str:
    """The majority-class baseline as a row of the main table."""
    if not majority.get("available"):
        return f"| Majority class (unavailable: {majority.get('reason')}) |" + " — |" * 12
    test = majority["test"]
    accs = [f"{test[m]:.4f} | —" for m in reference.METRICS]
    return (
        f"| Majority class: always {majority['number']} (chance) | — | — | — | "
        + " | ".join(accs)
        + " | — | — | — |"
    )


def _seed_gaps(r: dict[str, Any]) -> str:
    """Which declared seeds a row's statistics lack, and why ("" when none)."""
    seeds = r["seeds"]
    why = {s: "failed" for s in seeds["failed"]}
    why.update({s: "stopped without test metrics" for s in seeds["pruned"]})
    why.update({s: "no trial folder" for s in seeds.get("missing", [])})
    return ", ".join(f"seed {s} {w}" for s, w in sorted(why.items()))


def _seed_notes(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Below the main table: the rows that lack some of the declared seeds, and why."""
    gaps = [(r["config"], g) for r in rows if (g := _seed_gaps(r))]
    if not gaps:
        return []
    declared = summary["sweep"].get("seeds") or []
    lines = [
        "",
        f"Rows with fewer than the {len(declared)} declared seeds "
        f"({', '.join(map(str, declared))}):",
        "",
    ]
    return lines + [f"- `{c}`: {g}." for c, g in gaps]


def _main_table(rows: list[dict[str, Any]]) -> list[str]:
    bold = _bold_sets(rows)
    lines = [TABLE_HEADER, "|" + "---|" * 13]
    for r in rows:
        c = r["config"]
        cells = [
            r["display"],
            f"`{c}`",
            _b(num(r["params"], ","), c in bold["params"]),
            str(r[M.TEST_ACC_NUMBER]["n"]),
        ]
        for key, metric in zip(TEST_KEYS, reference.METRICS, strict=True):
            cells += [_b(_acc(r[key]), c in bold[key]), _rep(r["report"], metric)]
        cells += [
            num(r["best_epoch_mean"], ".1f"),
            _b(num(r["train_minutes_mean"], ".1f"), c in bold["train_minutes_mean"]),
            f"{r['n_finished']} / {r['n_pruned']} / {r['n_failed']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(summary: dict[str, Any]) -> list[str]:
    s = summary["sweep"]
    data = s.get("data") or {}
    size = data.get("size")
    facts = [
        f"run `{summary['run_dir']}`",
        f"sweep `{s.get('name')}`",
        f"scheduler {s.get('scheduler')}",
        f"{len(s.get('models') or [])} models × {summary['n_seeds_declared']} seeds declared",
        f"{s.get('epochs')} epochs",
        f"data `{data.get('root')}`",
        f"image {size[0]}×{size[1]}" if isinstance(size, list) and len(size) == 2 else "",
    ]
    title = f"# {summary['phase']}" + (f": {s['description']}" if s.get("description") else "")
    return [
        title,
        "",
        " · ".join(f for f in facts if f),
        "",
        "Test accuracies: mean ± sample std (ddof=1) over n seeds, n = the finished seeds of the "
        'row (column n); a std needs n ≥ 2 ("n/a" otherwise). Only finished trials enter the '
        "statistics; pruned and failed seeds are counted in the last column and listed below. "
        "Majority class: always predicting the most frequent training number, scored on the "
        "test sequences (acc tens and ones: the share of test sequences with its digits): chance.",
        "",
        "Report: the reference study's value on its own data and protocol, not this run's "
        "(mean ± population std, ddof=0, over 5 seeds; its sample std is × sqrt(5/4) = 1.118 "
        'larger); "—" where the report has no such model.',
        "",
        "Bold: best per column among these rows (accuracies: highest mean; parameters and train "
        "time: lowest). Params: trainable parameters the trials reported. Train time: Tune's "
        "time_total_s of finished trials.",
        "",
    ]


def _pruned_section(rows: list[dict[str, Any]]) -> list[str]:
    pruned = [r for r in rows if r["pruned"]]
    if not pruned:
        return []
    lines = [
        "## Pruned configurations (not in the statistics above)",
        "",
        "| Model | id | Seeds | Pruned at epoch | Rung val acc_number | Source |",
        "|" + "---|" * 6,
    ]
    for r in pruned:
        p = r["pruned"]
        seeds = ", ".join(str(s) for s in p["seeds"])
        if p.get("missing"):
            seeds += f" (judged without {', '.join(str(s) for s in p['missing'])})"
        lines.append(
            f"| {r['display']} | `{r['config']}` | {seeds} | {num(p['epoch'], 'd')} "
            f"| {num(p['rung_acc'], '.4f')} | {p['source']} |"
        )
    return [*lines, ""]


def _failed_section(failed: list[dict[str, Any]]) -> list[str]:
    if not failed:
        return []
    lines = [
        f"## Failed trials ({len(failed)})",
        "",
        "| Trial | Seed | Epochs reported | error.txt, first line | last line |",
        "|" + "---|" * 5,
    ]
    for f in failed:
        first, last = (x.replace("|", "\\|") for x in (f["error_first_line"], f["error_last_line"]))
        lines.append(
            f"| `{f['trial']}` | {f['seed']} | {f['epochs_reported']} | {first} | {last} |"
        )
    return [*lines, ""]


def _notes(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Figures", ""]
    lines += [f"- [{name}]({name})" for name in summary["figures"]]
    lines += [f"- {note}" for note in summary["figure_notes"]]
    lines += ["", "## Notes", ""]
    for r in rows:
        rep = r["report"]
        if rep and r["params"] is not None and r["params"] != rep["params"]:
            why = reference.PARAMS_WHY.get(r["id"], "")
            lines.append(
                f"- `{r['config']}` has {r['params']:,} parameters, the report {rep['params']:,}"
                + (f": {why}." if why else ".")
            )
    declared = summary["sweep"].get("models") or []
    absent = [m for m in declared if m not in {r["id"] for r in summary["models"]}]
    if absent:
        lines.append(f"- Declared in sweep.json but no trial folder: {', '.join(absent)}.")
    unfinished = summary["unfinished"]
    if unfinished:
        trials = ", ".join(f"`{u['trial']}`" for u in unfinished)
        lines.append(
            f"- Unfinished: {len(unfinished)} trial(s) stopped without test metrics, error or "
            f"pruning record (interrupted? resume the sweep): {trials}."
        )
    c = summary["compute"]
    lines.append(f"- Compute: {c['hours']:.2f} {c['unit']} hours ({c['per_trial']:g} per trial).")
    skipped = summary["skipped"]
    lines.append(f"- Skipped inputs: {len(skipped)}.")
    lines += [f"  - `{s['path']}`: {s['reason']}" for s in skipped]
    return [*lines, ""]


def render_markdown(summary: dict[str, Any]) -> str:
    """``table.md``: the main table of finished configurations, then the comparison, the
    report check, pruned and failed trials, figures and notes."""
    rows = [r for r in summary["models"] if r["n_finished"]]
    lines = _header(summary)
    if rows:
        lines += [*_main_table(rows), _majority_row(summary["majority_class"])]
        lines += _seed_notes(summary, rows)
    else:
        lines += ["No configuration has a finished trial."]
    lines += [""]
    lines += comparison_section(summary, rows)
    lines += heldout_section(summary, rows)
    lines += report_check_section(summary["report_check"])
    lines += _pruned_section(summary["models"])
    lines += _failed_section(summary["failed"])
    lines += _notes(summary, rows)
    return "\n".join(lines)


# --------------------------------------------------------------------------- CSV


CSV_FIELDS = [
    "config",
    "model_id",
    "display",
    "params",
    "n_finished",
    "n_pruned",
    "n_failed",
    *(f"{k}_{s}" for k in TEST_KEYS for s in ("mean", "std", "n")),
    *(f"report_{m}_{s}" for m in reference.METRICS for s in ("mean", "std")),
    "report_params",
    "best_epoch_mean",
    "train_minutes_mean",
    "vs_reference",
    "diff_vs_reference",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "significant",
    "method",
    "n_tracks",
    "welch_seeds_ci_low",
    "welch_seeds_ci_high",
    "welch_seeds_p",
    "pruned_epoch",
    "pruned_rung_acc",
]
HELDOUT_FIELDS = [
    *(f"{k}_{s}" for k in (SEEN, UNSEEN) for s in ("mean", "std", "n")),
    *(f"{k}_mean" for k in (M.UNSEEN_ACC_TENS, M.UNSEEN_ACC_ONES)),
    "unseen_minus_seen",
    "unseen_minus_seen_ci_low",
    "unseen_minus_seen_ci_high",
    "unseen_minus_seen_p_holm",
]
"""Extra columns of a held-out sweep's table.csv."""


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _comparison_cells(cmp: dict[str, Any] | None) -> dict[str, Any]:
    c = cmp or {}
    ci, w = c.get("ci") or (None, None), c.get("welch_seeds") or {}
    return {
        "vs_reference": c.get("reference"),
        "diff_vs_reference": c.get("delta"),
        "ci_low": ci[0],
        "ci_high": ci[1],
        "p": c.get("p"),
        "p_holm": c.get("p_holm"),
        "significant": c.get("significant"),
        "method": c.get("method"),
        "n_tracks": c.get("n_tracks"),
        "welch_seeds_ci_low": w.get("ci_low"),
        "welch_seeds_ci_high": w.get("ci_high"),
        "welch_seeds_p": w.get("p"),
    }


def _heldout_cells(r: dict[str, Any], cmp: dict[str, Any] | None) -> dict[str, Any]:
    row = {f"{k}_{s}": r[k][s] for k in (SEEN, UNSEEN) for s in ("mean", "std", "n")}
    row.update({f"{k}_mean": r[k]["mean"] for k in (M.UNSEEN_ACC_TENS, M.UNSEEN_ACC_ONES)})
    c = cmp or {}
    ci = c.get("ci") or (None, None)
    row.update(
        {
            "unseen_minus_seen": c.get("delta"),
            "unseen_minus_seen_ci_low": ci[0],
            "unseen_minus_seen_ci_high": ci[1],
            "unseen_minus_seen_p_holm": c.get("p_holm"),
        }
    )
    return row


def _csv_row(r: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "config": r["config"],
        "model_id": r["id"],
        "display": r["display"],
        "params": r["params"],
        "n_finished": r["n_finished"],
        "n_pruned": r["n_pruned"],
        "n_failed": r["n_failed"],
        "best_epoch_mean": r["best_epoch_mean"],
        "train_minutes_mean": r["train_minutes_mean"],
    }
    for k in TEST_KEYS:
        row.update({f"{k}_{s}": r[k][s] for s in ("mean", "std", "n")})
    rep = r["report"] or {}
    for m in reference.METRICS:
        row.update({f"report_{m}_{s}": rep.get(f"{m}_{s}") for s in ("mean", "std")})
    row["report_params"] = rep.get("params")
    p = r["pruned"] or {}
    row.update({"pruned_epoch": p.get("epoch"), "pruned_rung_acc": p.get("rung_acc")})
    return row


def render_csv(summary: dict[str, Any]) -> str:
    """One row per configuration (pruned-only and failed-only ones too), full precision."""
    held = summary.get("heldout")
    buf = io.StringIO()
    fields = CSV_FIELDS + (HELDOUT_FIELDS if held is not None else [])
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    comparisons = {c["model"]: c for c in summary["comparisons"]}
    gaps = {c["model"]: c for c in held["comparisons"]} if held is not None else {}
    for r in summary["models"]:
        row = {**_csv_row(r), **_comparison_cells(comparisons.get(r["config"]))}
        if held is not None:
            row.update(_heldout_cells(r, gaps.get(r["config"])))
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buf.getvalue()
