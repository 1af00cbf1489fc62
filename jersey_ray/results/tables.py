"""Rendering a phase summary: ``table.md`` (Markdown), ``table.csv``, and the results index.

Everything here formats what :mod:`jersey_ray.results.collect` computed; no number is computed anew,
so the Markdown, the CSV and ``summary.json`` cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from jersey_ray import metrics as M
from jersey_ray.results import reference
from jersey_ray.results.stats import CI_METHOD, CONFIDENCE

log = logging.getLogger(__name__)

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


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _verdict(cmp: dict[str, Any]) -> str:
    if not cmp["significant"]:
        return "not significant"
    return "higher (significant)" if cmp["diff"] > 0 else "lower (significant)"


def _ci(cmp: dict[str, Any]) -> str:
    return f"[{_signed(cmp['ci_low'])}, {_signed(cmp['ci_high'])}]"


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


def _main_table(rows: list[dict[str, Any]]) -> list[str]:
    bold = _bold_sets(rows)
    lines = [TABLE_HEADER, "|" + "---|" * 13]
    for r in rows:
        c = r["config"]
        cells = [
            r["display"],
            f"`{c}`",
            _b(_num(r["params"], ","), c in bold["params"]),
            str(r[M.TEST_ACC_NUMBER]["n"]),
        ]
        for key, metric in zip(TEST_KEYS, reference.METRICS, strict=True):
            cells += [_b(_acc(r[key]), c in bold[key]), _rep(r["report"], metric)]
        cells += [
            _num(r["best_epoch_mean"], ".1f"),
            _b(_num(r["train_minutes_mean"], ".1f"), c in bold["train_minutes_mean"]),
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
        "statistics; pruned and failed seeds are counted in the last column and listed below.",
        "",
        "Report: the reference study's value (mean ± population std, ddof=0, over 5 seeds; its "
        'sample std is × sqrt(5/4) = 1.118 larger); "—" where the report has no such model.',
        "",
        "Bold: best per column among these rows (accuracies: highest mean; parameters and train "
        "time: lowest). Params: trainable parameters the trials reported. Train time: Tune's "
        "time_total_s of finished trials.",
        "",
    ]


def _level() -> str:
    """The confidence level of every interval, as a percentage (``95%``)."""
    return f"{CONFIDENCE * 100:g}%"


def _comparison(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    ref = summary["reference"]
    lines = ["## Difference from the reference (test acc_number)", ""]
    chosen = f" ({ref['chosen']})" if ref.get("chosen") else ""
    if not ref["id"] and ref.get("declared"):
        return [*lines, f"Reference: {ref['chosen']}; no comparison is made.", ""]
    if not ref["id"]:
        return [*lines, "No reference model is declared for this phase (sweep.json).", ""]
    if ref["source"] is None:
        return [
            *lines,
            f"Reference `{ref['id']}` is not in this run, and no other phase's summary.json "
            "beside this table has it: no comparison is made.",
            "",
        ]
    lines += [
        f"Reference: `{ref['id']}`{chosen} (n = {ref['n']}, from {ref['source']}). "
        f"Δ = model mean − reference mean; {_level()} CI: {CI_METHOD} over seeds; "
        '"not significant" when the CI contains 0.',
        "",
    ]
    compared = [r for r in rows if r["vs_reference"]]
    if not compared:
        return [*lines, "No comparison possible: it needs n ≥ 2 on both sides.", ""]
    lines += [f"| Model | id | n | Δ acc_number | {_level()} CI | df | Verdict |", "|" + "---|" * 7]
    for r in compared:
        v = r["vs_reference"]
        lines.append(
            f"| {r['display']} | `{r['config']}` | {r[M.TEST_ACC_NUMBER]['n']} "
            f"| {_signed(v['diff'])} | {_ci(v)} | {_num(v['df'], '.1f')} | {_verdict(v)} |"
        )
    missing = [r["config"] for r in rows if not r["vs_reference"] and r["config"] != ref["id"]]
    if missing:
        lines += ["", f"Not compared (n < 2): {', '.join(f'`{m}`' for m in missing)}."]
    return [*lines, ""]


def _report_check(check: dict[str, Any] | None) -> list[str]:
    if check is None:
        return []
    base = f"{check['baseline_display']} (`{check['baseline']}`)"
    lines = [
        "## Report check: the report's own numbers",
        "",
        f"The report's Table {check['table']} against its baseline {base}, "
        f"{check['baseline_mean']:.4f}: Δ = mean − baseline mean with a {_level()} {CI_METHOD}, "
        f"n = {check['n']} per side. The report's std is the population std (ddof 0): "
        f"{check['std_conversion']} = ×{math.sqrt(check['n'] / (check['n'] - 1)):.4f}. "
        "Report means are rounded to 4 decimals.",
        "",
        f"| Model (report) | id | Δ acc_number | {_level()} CI | df | Verdict |",
        "|" + "---|" * 6,
    ]
    for r in check["rows"]:
        lines.append(
            f"| {r['display']} | `{r['id']}` | {_signed(r['diff'])} | {_ci(r)} "
            f"| {_num(r['df'], '.1f')} | {_verdict(r)} |"
        )
    lines += [
        "",
        f"{check['higher_mean']} of {len(check['rows'])} models have a higher mean than the "
        f"baseline; {check['significantly_higher']} of them significantly.",
        "",
    ]
    return lines


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
        lines.append(
            f"| {r['display']} | `{r['config']}` | {seeds} | {_num(p['epoch'], 'd')} "
            f"| {_num(p['rung_acc'], '.4f')} | {p['source']} |"
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
    lines += _main_table(rows) if rows else ["No configuration has a finished trial."]
    lines += [""]
    lines += _comparison(summary, rows)
    lines += _report_check(summary["report_check"])
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
    "significant",
    "pruned_epoch",
    "pruned_rung_acc",
]


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


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
    v = r["vs_reference"] or {}
    row.update(
        {
            "vs_reference": v.get("reference"),
            "diff_vs_reference": v.get("diff"),
            "ci_low": v.get("ci_low"),
            "ci_high": v.get("ci_high"),
            "significant": v.get("significant"),
        }
    )
    p = r["pruned"] or {}
    row.update({"pruned_epoch": p.get("epoch"), "pruned_rung_acc": p.get("rung_acc")})
    return row


def render_csv(summary: dict[str, Any]) -> str:
    """One row per configuration (pruned-only and failed-only ones too), full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in summary["models"]:
        writer.writerow({k: _csv_value(v) for k, v in _csv_row(r).items()})
    return buf.getvalue()


# --------------------------------------------------------------------------- results index


def _data_cell(data: dict[str, Any]) -> str:
    counts = data.get("counts") or {}
    split = " / ".join(f"{k} {v}" for k, v in counts.items())
    total = sum(v for v in counts.values() if isinstance(v, int))
    fingerprint = str(data.get("fingerprint") or "")[:12]
    return f"`{data.get('root')}` ({total} sequences: {split}; fingerprint `{fingerprint}`)"


def _hardware_cell(hardware: Any) -> str:
    if isinstance(hardware, dict):
        return ", ".join(f"{k}: {v}" for k, v in hardware.items())
    return str(hardware)


def _index_row(phase_dir: str, summary: dict[str, Any]) -> str:
    s = summary.get("sweep") or {}
    data = s.get("data") or {}
    size = data.get("size") or []
    c = summary.get("compute") or {}
    cells = [
        str(summary.get("phase")),
        f"[table]({phase_dir}/table.md) · [csv]({phase_dir}/table.csv) "
        f"· [json]({phase_dir}/summary.json)",
        str(s.get("description") or ""),
        _data_cell(data),
        "×".join(str(x) for x in size),
        str(s.get("epochs")),
        ", ".join(str(x) for x in s.get("seeds") or []),
        _hardware_cell(s.get("hardware")),
        f"{c.get('hours', 0.0):.2f} {c.get('unit', 'GPU')} h ({c.get('per_trial', 0):g}/trial)",
        f"`{summary.get('run_dir')}`",
    ]
    return "| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |"


def _index_summary(path: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("index: skipped %s (%s)", path, err)
        return None
    if not isinstance(summary, dict):
        log.warning("index: skipped %s (not a JSON object)", path)
        return None
    return summary


def write_index(results_root: Path) -> Path:
    """Regenerate ``results_root/README.md`` from every ``*/summary.json`` below it."""
    lines = [
        "# Results",
        "",
        "One table per phase, written by `python -m jersey_ray.results RUN_DIR` from what the "
        "trials reported (this index is regenerated each time; do not edit it by hand). "
        "Compute: the sum over trials of Tune's time_total_s × GPUs per trial (CPUs when a "
        "trial has no GPU).",
        "",
        "| Phase | Files | Description | Data | Image size | Epochs | Seeds | Hardware "
        "| Compute | Run |",
        "|" + "---|" * 10,
    ]
    unreadable = []
    for path in sorted(results_root.glob("*/summary.json")):
        summary = _index_summary(path)
        if summary is None:
            unreadable.append(path.parent.name)
            continue
        lines.append(_index_row(path.parent.name, summary))
    if unreadable:
        lines += ["", f"Unreadable summaries (skipped): {', '.join(unreadable)}."]
    out = results_root / "README.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
