"""What ``bench infer`` measured against: the issue's H100 targets, the machine, the report's
Table 4, and the sentence that says what exactly was timed."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jersey_ray.bench.infer_report import ok_rows
from jersey_ray.results import reference

TARGET_MODEL = reference.TABLE4_MODEL
TARGET_LATENCY_MS = 1.71  # the report's best batch-1 latency: fp16 + TorchScript on an RTX 3090
TARGET_SEQ_PER_S = 10_000.0
UNMEASURED = "unmeasured on this machine"
RANDOM_NOTE = "random weights (pretrained none): timing only, accuracy not checked"


def timed_text(device: torch.device, warmup: int, iters: int) -> str:
    clock = (
        "CUDA events around each call, synchronized after each"
        if device.type == "cuda"
        else "time.perf_counter around each call"
    )
    return (
        f"model forward only, on inputs already on the device ({device.type}): packed real "
        "frames [N,3,H,W] float32 channels_last and the mask [B,T]; a variant's dtype cast, "
        "NumPy copy or ONNX Runtime binding is done before the clock. No decoding, no "
        "preprocessing, no host-to-device copy, no softmax or argmax of the outputs. "
        f"Clock: {clock} (ONNX Runtime: time.perf_counter). "
        + (
            "On the CPU, glibc keeps freed large blocks for reuse (as the loader sets it) for "
            "every variant alike. "
            if device.type == "cpu"
            else ""
        )
        + "Per input: the first call is timed "
        f"on its own (compilation happens there), then {warmup} warm-up calls, then {iters} "
        "timed calls, under torch.inference_mode."
    )


# ------------------------------------------------------------------------------ targets


TARGETS = (
    ("batch-1 latency", f"< {TARGET_LATENCY_MS} ms per batch of 1, {TARGET_MODEL}, H100 (the "
     f"report: {TARGET_LATENCY_MS} ms on an RTX 3090)"),
    ("large-batch throughput", f"> {TARGET_SEQ_PER_S:,.0f} sequences/s, {TARGET_MODEL}, bf16 + "
     "torch.compile, H100"),
)  # fmt: skip


def targets(
    model_id: str, machine: dict[str, Any], rows: list[dict], records: list[dict]
) -> list[dict[str, Any]]:
    """The H100 targets of the issue, judged only where they can be measured: on a GPU, for
    attn_bgru_luong, from the fixed-input rows of variants that did not lose accuracy."""
    items = [{"name": n, "target": t, "value": None, "variant": None} for n, t in TARGETS]
    if machine["device"] != "cuda" or model_id != TARGET_MODEL:
        why = (
            f"{UNMEASURED} (device {machine['device']}: {machine['device_name']})"
            if machine["device"] != "cuda"
            else f"not applicable: the targets are for {TARGET_MODEL}, this is {model_id}"
        )
        return [{**t, "status": why} for t in items]
    gpu = machine["device_name"]
    where = gpu if "H100" in gpu else f"{gpu}, not an H100"
    lost = {v["name"] for v in records if v["accuracy"] and not v["accuracy"]["preserved"]}
    fixed = [r for r in ok_rows(rows) if r["input"] == "fixed" and r["variant"] not in lost]
    one = min((r for r in fixed if r["batch"] == 1), key=lambda r: r["latency_ms"]["mean"],
              default=None)  # fmt: skip
    fast = [
        r for r in fixed if r["runtime"].startswith("torch.compile") and "bf16" in r["precision"]
    ]
    big = max(fast, key=lambda r: r["seq_per_s"], default=None)
    picks = (
        (one, lambda r: r["latency_ms"]["mean"], lambda v: v < TARGET_LATENCY_MS, "batch-1"),
        (big, lambda r: r["seq_per_s"], lambda v: v > TARGET_SEQ_PER_S, "bf16 + torch.compile"),
    )
    for item, (row, value_of, met, what) in zip(items, picks, strict=True):
        if row is None:
            item["status"] = f"unmeasured: no {what} row ran"
            continue
        value = value_of(row)
        item.update(value=value, variant=f"{row['variant']} (batch {row['batch']})")
        item["status"] = f"{'met' if met(value) else 'missed'} on {where}"
    return items


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine() or "cpu"


def machine_info(device: torch.device) -> dict[str, Any]:
    import onnxruntime

    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def report_table4() -> dict[str, Any]:
    """The report's Table 4 as the result carries it, beside our rows."""
    rows = reference.table4_rows()
    return {
        "source": f"report ({rows[0].gpu})",
        "note": reference.TABLE4_NOTE,
        "rows": [asdict(row) for row in rows],
    }
