"""Rendering of a ``bench infer`` result dict: the Markdown tables and the latency plot.

Everything here reads only the result (the JSON that ``--json`` writes), so the three outputs
cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ok_rows(rows: list[dict]) -> list[dict]:
    """The timing rows that ran."""
    return [r for r in rows if r["status"] == "ok"]


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.4g}" if x < 1000 else f"{x:.1f}"


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _acc_cells(record: dict) -> list[str]:
    acc = record.get("accuracy")
    if not acc:
        return ["n/a"] * 4
    return [
        f"{100 * acc['acc_number']:.2f}",
        f"{acc['delta_sequences']:+d}",
        f"{acc['delta_points']:+.2f}",
        "yes" if acc["preserved"] else "no",
    ]


MAIN_HEADER = (
    "Source",
    "Setting",
    "Precision",
    "Compiled / runtime",
    "Input",
    "Batch",
    "ms/batch",
    "ms/seq",
    "seq/s",
    "Speedup vs fp32",
    "First call (s)",
    "Acc (%)",
    "Δ seq",
    "Δ pts",
    "Preserved",
)
STATS_HEADER = (
    "Variant",
    "Input",
    "Batch",
    "Frames",
    "ms/batch mean",
    "median",
    "p95",
    "p99",
    "ms/seq mean",
    "median",
    "p95",
    "p99",
    "seq/s",
)
VARIANT_HEADER = (
    "Variant",
    "Status",
    "Build (s)",
    "vs fp32: max |Δlogit|, same prediction",
    "Notes",
)


def _table(header: tuple[str, ...], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_cell(c) for c in line) + " |" for line in lines]


def main_lines(result: dict[str, Any]) -> list[list[str]]:
    """Table 4 as this run measured it, then the report's own rows."""
    return _run_lines(result) + _report_lines(result["report_table4"])


def _run_lines(result: dict[str, Any]) -> list[list[str]]:
    source = f"this run ({result['machine']['device_name']})"
    records = {r["name"]: r for r in result["variants"]}
    lines = []
    for record in result["variants"]:
        head = [source, record["setting"], record["precision"], record["runtime"]]
        rows = [r for r in result["rows"] if r["variant"] == record["name"]]
        if not rows:
            lines.append([*head, f"{record['status']}: {record['reason']}", *["–"] * 10])
        for r in rows:
            if r["status"] != "ok":
                lines.append(
                    [*head, r["input"], str(r["batch"]), f"failed: {r['reason']}", *["–"] * 8]
                )
                continue
            lines.append(
                [
                    *head,
                    r["input"],
                    str(r["batch"]),
                    _fmt_ms(r["latency_ms"]["mean"]),
                    _fmt_ms(r["per_seq_ms"]["mean"]),
                    _fmt(r["seq_per_s"], ",.1f"),
                    _fmt(r["speedup_vs_fp32"], ".2f"),
                    _fmt(r["first_call_s"], ".2f"),
                    *_acc_cells(records[r["variant"]]),
                ]
            )
    return lines


def _report_lines(table4: dict[str, Any]) -> list[list[str]]:
    """The report measured only ms/seq, speedup and accuracy, on fixed inputs."""
    return [
        [
            table4["source"],
            r["setting"],
            r["precision"],
            r["runtime"],
            "fixed",
            str(r["batch"]),
            "–",
            _fmt(r["ms_per_seq"], ".2f"),
            "–",
            _fmt(r["speedup"], ".2f"),
            "–",
            _fmt(r["acc_percent"], ".2f"),
            "–",
            "–",
            "–",
        ]
        for r in table4["rows"]
    ]


def stats_lines(result: dict[str, Any]) -> list[list[str]]:
    lines = []
    for r in ok_rows(result["rows"]):
        b, s = r["latency_ms"], r["per_seq_ms"]
        lines.append(
            [
                r["variant"],
                r["input"],
                str(r["batch"]),
                str(r["frames"]),
                *(_fmt_ms(b[k]) for k in ("mean", "median", "p95", "p99")),
                *(_fmt_ms(s[k]) for k in ("mean", "median", "p95", "p99")),
                _fmt(r["seq_per_s"], ",.1f"),
            ]
        )
    return lines


def variant_lines(result: dict[str, Any]) -> list[list[str]]:
    lines = []
    for v in result["variants"]:
        agree = v["agreement"]
        agree_text = (
            "–"
            if not agree
            else f"{agree['max_abs_logit_diff']:.2e}, {100 * agree['same_prediction']:.1f}%"
        )
        text = "; ".join(([v["reason"]] if v["reason"] else []) + v["notes"])
        lines.append([v["name"], v["status"], _fmt(v["build_s"], ".2f"), agree_text, text])
    return lines


def _model_line(result: dict[str, Any]) -> str:
    m = result["model"]
    if m["weights"] == "random":
        return f"Model: {m['id']} ({m['display']}), **{m['note']}**."
    line = f"Model: {m['id']} ({m['display']}), checkpoint `{m['checkpoint']}` (epoch {m['epoch']})"
    chosen = m.get("chosen")
    if chosen:
        line += (
            f", chosen from run `{chosen['run']}`: trial `{chosen['trial']}`, seed "
            f"{chosen['seed']}, best_val_acc_number {chosen['best_val_acc_number']:.4f} "
            f"({chosen['rule']}; {chosen['finished_trials']} finished trials)"
        )
    return line + "."


def _accuracy_line(result: dict[str, Any]) -> str:
    a = result["accuracy"]
    if not a["checked"]:
        return f"Accuracy: not checked ({a['reason']})."
    return (
        f"Accuracy: test acc_number on `{a['cache']}` ({a['sequences']} sequences, batches of "
        f"{a['eval_batch']}); {a['rule']}. Δ seq / Δ pts: change in correct sequences and in "
        "percentage points."
    )


def render_markdown(result: dict[str, Any]) -> str:
    mach, st = result["machine"], result["settings"]
    out = [
        f"# Deployment benchmark: {result['model']['id']}",
        "",
        _model_line(result),
        "",
        f"Machine: {mach['device']} ({mach['device_name']}), torch {mach['torch']}, "
        f"onnxruntime {mach['onnxruntime']}, {mach['cpu_count']} CPUs, "
        f"{mach['torch_threads']} torch threads.",
        "",
        f"Inputs: {st['size'][0]}x{st['size'][1]} frames; fixed = every sequence "
        f"{st['frames']} frames; variable = {result['inputs']['variable']}.",
        "",
        f"Timed: {result['timed']}",
        "",
        _accuracy_line(result),
        "",
        "## Table 4, this run and the report's",
        "",
        *_table(MAIN_HEADER, main_lines(result)),
        "",
        result["report_table4"]["note"],
        "",
        "## Targets (H100)",
        "",
        *(
            f"- {t['name']} ({t['target']}): {t['status']}"
            + ("" if t["value"] is None else f", {t['value']:,.3f} with {t['variant']}")
            for t in result["targets"]
        ),
        "",
        "## Latency statistics",
        "",
        *_table(STATS_HEADER, stats_lines(result)),
        "",
        "## Variants",
        "",
        *_table(VARIANT_HEADER, variant_lines(result)),
        "",
    ]
    return "\n".join(out)


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Log-log mean latency per batch against batch size: one colour per variant, solid for
    the fixed input, dashed for the variable one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = plt.get_cmap("tab20")
    ran = ok_rows(result["rows"])
    for i, name in enumerate(v["name"] for v in result["variants"]):
        for kind, style in (("fixed", "-"), ("variable", "--")):
            pts = [r for r in ran if r["variant"] == name and r["input"] == kind]
            xs, ys = [r["batch"] for r in pts], [r["latency_ms"]["mean"] for r in pts]
            if pts:
                ax.plot(xs, ys, style, marker="o", color=colors(i % 20), label=f"{name} ({kind})")
    ax.set(xscale="log", yscale="log", xlabel="batch size (sequences)")
    ax.set_ylabel("latency per batch, mean (ms)")
    ax.set_xticks(result["settings"]["batch_sizes"])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    title = f"{result['model']['id']} on {result['machine']['device_name']}"
    if result["model"]["weights"] == "random":
        title += f"\n{result['model']['note']}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
