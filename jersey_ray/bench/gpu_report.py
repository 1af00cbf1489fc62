"""``bench gpu``'s report: the targets judged from one result dict, and its JSON and Markdown.

The result holds ``machine`` (what ran), ``budget_s``/``elapsed_s`` and ``parts``: one dict per
part with at least ``status`` ("ok", "failed", "timeout", "partial", "skipped" or "running"),
``seconds``, ``limit_s`` and ``reason``, plus what the part measured. :func:`write_report` is
called after every part, so the files always say how far the check got. Nothing here imports
torch or Ray.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jersey_ray.config import DataConfig

FULL_SIZE = DataConfig().size_text
"""The report's frame size, at which the GPU check trains and times."""
TRIAL_RATIO = 0.85
"""A trial's training frames/s over the bare compiled step of the same model."""
PACK_RATIO = 1.3
"""Total frames/s of 4 packed trials (0.25 GPU each) over one trial's."""
TRIAL_MODELS = ("basic_r18", "attn_bgru_luong")
UNMEASURED = "unmeasured"
JSON_NAME = "gpu-check.json"
MD_NAME = "gpu-check.md"
PART_TITLES = {
    "data": "0. data: the full synthetic set and its cache",
    "tests": "1. CUDA tests (pytest -m cuda)",
    "train": "2. training throughput (bench train)",
    "pack": "3. packed fractional trials under Tune",
    "infer": "4. inference (bench infer)",
    "sweep": "5. phaseB sweep end to end",
}


def _part(result: dict, name: str) -> dict:
    return result.get("parts", {}).get(name) or {}


def train_run(result: dict, key: str) -> dict | None:
    """The ``bench train`` run ``key`` (e.g. ``basic_r18 compiled``) if it measured."""
    for run in _part(result, "train").get("runs", []):
        if run.get("key") == key and run.get("status") == "ok":
            return run
    return None


def _ratio_item(name: str, target: str, value: float | None, goal: float, what: str) -> dict:
    if value is None:
        return {"name": name, "target": target, "value": None, "status": f"{UNMEASURED}: {what}"}
    status = "met" if value >= goal else "missed"
    return {"name": name, "target": target, "value": value, "status": status}


def derived(result: dict) -> dict[str, float | None]:
    """Ratios between ``bench train`` runs: what CUDA graphs gain, determinism costs, and how an
    eager trial compares with the bare compiled step."""

    def fps(key: str, field: str = "trial_frames_per_s") -> float | None:
        run = train_run(result, key)
        return run[field] if run else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    eager, graphs = fps("basic_r18 eager"), fps("basic_r18 eager + CUDA graphs")
    free = fps("basic_r18 eager, not deterministic")
    compiled_graphs = fps("basic_r18 compiled + CUDA graphs")
    deterministic = ratio(eager, free)
    return {
        "cuda_graphs_gain_eager": ratio(graphs, eager),
        "cuda_graphs_gain_compiled": ratio(compiled_graphs, fps("basic_r18 compiled")),
        "deterministic_cost": None if deterministic is None else 1 - deterministic,
        "eager_trial_vs_compiled_step": ratio(
            eager, fps("basic_r18 compiled", "ceiling_frames_per_s")
        ),
    }


def targets(result: dict) -> list[dict[str, Any]]:
    """Every target of the check with its value and met / missed / unmeasured."""
    items = []
    for model in TRIAL_MODELS:
        run = train_run(result, f"{model} compiled")
        items.append(
            _ratio_item(
                f"trial vs bare compiled step, {model}",
                f">= {TRIAL_RATIO:.0%} of the bare compiled step's frames/s",
                run["ratio"] if run else None,
                TRIAL_RATIO,
                "its bench train run did not finish",
            )
        )
    four = [c for c in _part(result, "pack").get("configs", []) if c.get("trials") == 4]
    value = four[0].get("ratio_to_one") if four else None
    items.append(
        _ratio_item(
            "4 packed trials vs one, attn_bgru_luong",
            f">= {PACK_RATIO}x one trial's total frames/s",
            value,
            PACK_RATIO,
            "the packing part did not measure 1 and 4 trials",
        )
    )
    infer_targets = _part(result, "infer").get("targets") or []
    if not infer_targets:
        infer_targets = [
            {"name": n, "target": "see bench infer", "value": None, "status": UNMEASURED}
            for n in ("batch-1 latency", "large-batch throughput")
        ]
    items += infer_targets
    cost = derived(result)["deterministic_cost"]
    items.append(
        {
            "name": "deterministic option's cost, basic_r18",
            "target": "stated (share of frames/s lost to deterministic kernels)",
            "value": cost,
            "status": "stated" if cost is not None else f"{UNMEASURED}: runs missing",
        }
    )
    return items


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _target_value(item: dict) -> str:
    value = item.get("value")
    if value is None:
        return "-"
    name = item["name"]
    if "latency" in name:
        return f"{value:.3f} ms"
    if "throughput" in name:
        return f"{value:,.0f} seq/s"
    if "packed" in name:
        return f"{value:.2f}x"
    return f"{100 * value:.1f}%"


def _header(result: dict) -> list[str]:
    m = result.get("machine", {})
    gpu = m.get("gpu", "no GPU")
    spent = result.get("elapsed_s")
    took = f"took {spent / 60:.1f} min" if spent is not None else "running"
    return [
        "# GPU check (`python -m jersey_ray.bench gpu`)",
        "",
        f"{gpu}; torch {m.get('torch', '?')} (CUDA {m.get('cuda', '?')}), Ray "
        f"{m.get('ray', 'not installed')}, Python {m.get('python', '?')}, "
        f"{m.get('cpu_count', '?')} CPUs. Budget {result.get('budget_s', 0) / 60:.1f} min, "
        f"{took}; started {result.get('started', '?')}.",
        "",
    ]


def _targets_md(result: dict) -> list[str]:
    lines = ["## Targets", "", "| Target | Goal | Value | Status |", "|---|---|---|---|"]
    for item in result.get("targets") or targets(result):
        lines.append(
            f"| {item['name']} | {item['target']} | {_target_value(item)} | {item['status']} |"
        )
    return [*lines, ""]


def _parts_md(result: dict) -> list[str]:
    lines = ["## Parts", "", "| Part | Status | Seconds (limit) | Note |", "|---|---|---|---|"]
    for name, title in PART_TITLES.items():
        part = _part(result, name)
        status = part.get("status", "not run")
        seconds = f"{_fmt(part.get('seconds'), 0)} ({_fmt(part.get('limit_s'), 0)})"
        reason = str(part.get("reason", "")).replace("|", "/").replace("\n", " ")
        lines.append(f"| {title} | {status} | {seconds} | {reason} |")
    return [*lines, ""]


def _tests_md(part: dict) -> list[str]:
    if "passed" not in part:
        return []
    lines = [
        "## 1. CUDA tests",
        "",
        f"{part['passed']} passed, {part['failed']} failed, {part['errors']} errors, "
        f"{part['skipped']} skipped.",
    ]
    lines += [f"- FAILED {f}" for f in part.get("failures", [])]
    return [*lines, ""]


def _train_md(result: dict) -> list[str]:
    runs = _part(result, "train").get("runs", [])
    if not runs:
        return []
    lines = [
        f"## 2. Training throughput ({FULL_SIZE}, batch 64; frames/s, median of rounds)",
        "",
        "| Run | Status | Trial | Bare step | Ratio | Graph replays |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        ok = run.get("status") == "ok"
        ratio = f"{100 * run['ratio']:.1f}%" if ok else "-"
        lines.append(
            f"| {run['key']} | {run.get('status')} | {_fmt(run.get('trial_frames_per_s'), 0)} | "
            f"{_fmt(run.get('ceiling_frames_per_s'), 0)} | {ratio} | "
            f"{_fmt(run.get('graph_replays'))} |"
        )
    d = derived(result)
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    times = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
    lines += [
        "",
        f"- CUDA graphs, basic_r18 trial: {times(d['cuda_graphs_gain_eager'])} eager, "
        f"{times(d['cuda_graphs_gain_compiled'])} compiled (reduce-overhead).",
        f"- Deterministic kernels cost {pct(d['deterministic_cost'])} of basic_r18's frames/s.",
        f"- An eager basic_r18 trial reaches {pct(d['eager_trial_vs_compiled_step'])} of the bare "
        "compiled step.",
        "",
    ]
    return lines


def _pack_md(part: dict) -> list[str]:
    configs = part.get("configs", [])
    if not configs:
        return []
    lines = [
        f"## 3. Packing ({part.get('model', '?')}, {part.get('seconds_each', '?')} s measured "
        "together after a barrier)",
        "",
        "| Trials | GPU each | Total frames/s | vs one trial | Per trial | Peak GB each |",
        "|---|---|---|---|---|---|",
    ]
    for c in configs:
        each = ", ".join(f"{v:,.0f}" for v in c.get("per_trial", []))
        peak = max(c.get("peak_gb", [0]) or [0])
        lines.append(
            f"| {c['trials']} | {c['gpu_each']:g} | {_fmt(c.get('total_frames_per_s'), 0)} | "
            f"{_fmt(c.get('ratio_to_one'), 2)} | {each} | {peak:.1f} |"
        )
    return [*lines, ""]


def _infer_md(part: dict) -> list[str]:
    rows = part.get("rows", [])
    if not rows:
        return []
    lines = [
        f"## 4. Inference (attn_bgru_luong, 16 frames at {FULL_SIZE}, random weights, fixed input)",
        "",
        "| Variant | Batch | Latency mean ms | p95 ms | Sequences/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['latency_ms']['mean']:.3f} | "
            f"{r['latency_ms']['p95']:.3f} | {r['seq_per_s']:,.0f} |"
        )
    return [*lines, ""]


def _sweep_md(part: dict) -> list[str]:
    table = part.get("table_md")
    if not table:
        return []
    return ["## 5. phaseB sweep (6 models x 1 seed, 2 epochs, from scratch)", "", table, ""]


def render_markdown(result: dict) -> str:
    lines = _header(result) + _targets_md(result) + _parts_md(result)
    lines += _tests_md(_part(result, "tests")) + _train_md(result)
    lines += _pack_md(_part(result, "pack")) + _infer_md(_part(result, "infer"))
    lines += _sweep_md(_part(result, "sweep"))
    return "\n".join(lines).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a report


def write_report(result: dict, out: Path) -> tuple[Path, Path]:
    """Judge the targets into ``result`` and write ``gpu-check.json`` and ``gpu-check.md``."""
    out.mkdir(parents=True, exist_ok=True)
    result["targets"] = targets(result)
    result["derived"] = derived(result)
    paths = out / JSON_NAME, out / MD_NAME
    _write(paths[0], json.dumps(result, indent=2) + "\n")
    _write(paths[1], render_markdown(result))
    return paths
