"""``python -m jersey_ray.bench infer``: deployment latency and throughput per precision, compiler
and runtime, with the test accuracy of each (the report's Table 4, done right).

The model comes from a checkpoint (``--checkpoint``), from a sweep's run folder (``--run``: the
finished trial with the best validation acc_number; test metrics play no part, unlike the
reference, report-spec 8.10/8.12) or is built with random weights (``--model``: timing only).
Every variant of :mod:`jersey_ray.bench.variants` is timed on two inputs per batch size, each
with fixed random frames on the device: *fixed* (every sequence ``--frames`` long, as the
reference) and *variable* (lengths uniform in 1..frames from a fixed seed). With a test split
(``--data`` or ``--cache``) each variant's test acc_number is compared with fp32 eager: it is
*preserved* when at most one sequence changes. Outputs: Markdown (with the report's own rows,
labelled), JSON and a latency-vs-batch plot, all from one result dict
(:mod:`jersey_ray.bench.infer_report` renders them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from jersey_ray import cli
from jersey_ray.bench.infer_report import ok_rows, render_markdown, write_plot
from jersey_ray.bench.timing import summarize, time_call
from jersey_ray.bench.variants import (
    BASELINE,
    BY_NAME,
    VARIANTS,
    Context,
    Logits,
    Runner,
    Unsupported,
    Variant,
    brief_error,
)
from jersey_ray.cache.build import build_cache
from jersey_ray.cache.loader import SplitData, keep_freed_host_memory, load_split
from jersey_ray.cache.store import data_config, read_manifest
from jersey_ray.config import DataConfig, TrainConfig, replace, to_dict
from jersey_ray.errors import UserError, run_cli
from jersey_ray.models import build_model, get_spec
from jersey_ray.results import reference
from jersey_ray.results.runs import BEST_VAL_ACC_NUMBER, CHOICE_RULE, chosen_checkpoint, read_run
from jersey_ray.train.checkpoint import load_model
from jersey_ray.train.evaluate import infer
from jersey_ray.train.step import resolve_device

DEFAULT_BATCH_SIZES = (1, 4, 8, 16, 64, 256)
EVAL_BATCH = 64  # the reference's test loader batch; accuracy does not depend on it
INPUT_SEED = 0
"""Seeds the random frames and the variable lengths (plus the batch size, so one batch size's
input does not depend on which others are run)."""
PRESERVED_SEQUENCES = 1
"""Accuracy is preserved when the number of correct test sequences moves by at most this."""
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


# ------------------------------------------------------------------------------- inputs


@dataclass
class Input:
    kind: str  # "fixed" | "variable"
    batch: int
    frames: torch.Tensor
    mask: torch.Tensor
    lengths: list[int]


def make_input(kind: str, batch: int, frames: int, size: tuple[int, int], device) -> Input:
    """Random normal frames (as the reference) packed [N,3,H,W], channels_last, on ``device``."""
    gen = torch.Generator().manual_seed(INPUT_SEED + batch)
    if kind == "fixed":
        lengths = torch.full((batch,), frames)
    else:
        lengths = torch.randint(1, frames + 1, (batch,), generator=gen)
    mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    x = torch.randn(int(lengths.sum()), 3, *size, generator=gen)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    return Input(kind, batch, x, mask.to(device), lengths.tolist())


def example_input(size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The trace example: lengths (3, 1), so batch, steps and frames all differ and none is 1
    (a trace that fixed one of them shows in the agreement check at another shape)."""
    mask = torch.tensor([[True, True, True], [True, False, False]])
    frames = torch.randn(4, 3, *size, generator=torch.Generator().manual_seed(INPUT_SEED))
    return frames.to(device).contiguous(memory_format=torch.channels_last), mask.to(device)


# ----------------------------------------------------------------------------- accuracy


def number_correct(
    tens_logits: torch.Tensor, ones_logits: torch.Tensor, tens: torch.Tensor, ones: torch.Tensor
) -> int:
    """Sequences whose tens and ones digits are both right (acc_number's numerator)."""
    right = (tens_logits.argmax(1) == tens) & (ones_logits.argmax(1) == ones)
    return int(right.sum())


def accuracy_change(correct: int, baseline_correct: int, n: int) -> dict[str, Any]:
    """acc_number and its change against the baseline in sequences and in points."""
    delta = correct - baseline_correct
    return {
        "correct": correct,
        "sequences": n,
        "acc_number": correct / n,
        "delta_sequences": delta,
        "delta_points": 100.0 * delta / n,
        "preserved": abs(delta) <= PRESERVED_SEQUENCES,
    }


def count_correct(runner: Runner, data: SplitData, frames: int | None) -> int:
    """Correct test sequences through the variant's own call (the one evaluation loop)."""

    def forward(x: torch.Tensor, mask: torch.Tensor):
        return runner.logits(runner.call(*runner.prepare(x, mask)))

    correct = 0
    for batch, (tens, ones) in infer(forward, data, batch_size=EVAL_BATCH, frames=frames):
        correct += number_correct(tens, ones, batch.tens.cpu(), batch.ones.cpu())
    return correct


def agreement(logits: Logits, reference: Logits) -> dict[str, float]:
    """How far a variant's logits are from fp32 eager's on the same check input."""
    same = (logits[0].argmax(1) == reference[0].argmax(1)) & (
        logits[1].argmax(1) == reference[1].argmax(1)
    )
    diff = max(float((a - b).abs().max()) for a, b in zip(logits, reference, strict=True))
    return {"max_abs_logit_diff": diff, "same_prediction": float(same.float().mean())}


# ------------------------------------------------------------------------ model and data


@dataclass
class Loaded:
    model: torch.nn.Module
    info: dict[str, Any]
    cfg: TrainConfig | None
    """The checkpoint's training config; None for random weights."""
    data: DataConfig | None
    """The data settings it was trained on; None for random weights."""


def random_model(model_id: str, device: torch.device) -> Loaded:
    spec = get_spec(model_id)
    torch.manual_seed(INPUT_SEED)
    model = build_model(model_id, pretrained="none").to(device).eval()
    info = {"id": model_id, "display": spec.display, "weights": "random", "note": RANDOM_NOTE}
    return Loaded(model, info, None, None)


def checkpoint_model(path: Path, device: torch.device) -> Loaded:
    trained = load_model(path, device)
    cfg, data = trained.train, trained.data
    info = {
        "id": cfg.model,
        "display": get_spec(cfg.model).display,
        "weights": "checkpoint",
        "checkpoint": str(path),
        "epoch": trained.checkpoint.get("epoch"),
        "seed": cfg.seed,
        "trained_size": list(data.size),
        "trained_max_frames": data.max_frames,
    }
    return Loaded(trained.model, info, cfg, data)


def run_model(run_dir: Path, device: torch.device) -> Loaded:
    """The finished trial chosen on validation, and its latest best.pt."""
    run = read_run(run_dir)
    trial, path = chosen_checkpoint(run)
    loaded = checkpoint_model(path, device)
    finished = [t for t in run.trials if t.status == "finished"]
    loaded.info["chosen"] = {
        "run": str(run_dir),
        "trial": trial.dir,
        "model": trial.model,
        "seed": trial.seed,
        "best_val_acc_number": trial.last[BEST_VAL_ACC_NUMBER],
        "finished_trials": len(finished),
        "rule": CHOICE_RULE,
    }
    return loaded


def check_cache_fits(cache: Path, data: DataConfig) -> None:
    """A cache built with other data settings is not the checkpoint's test split (the data
    root may differ: the same data can move)."""
    have = to_dict(data_config(read_manifest(cache)))
    want = to_dict(data)
    diff = [
        f"{k} {have[k]} (checkpoint: {want[k]})" for k in want if k != "root" and have[k] != want[k]
    ]
    if diff:
        raise UserError(
            f"{cache}: built with {', '.join(diff)}; pass a cache built with the checkpoint's "
            "settings, or the data root with --data"
        )


def load_test_split(
    args: argparse.Namespace, loaded: Loaded, device: torch.device
) -> tuple[SplitData | None, dict[str, Any]]:
    if args.data is None and args.cache is None:
        reason = RANDOM_NOTE if loaded.cfg is None else "no test data given (--data or --cache)"
        return None, {"checked": False, "reason": reason}
    assert loaded.data is not None  # check_args refuses data with random weights
    if args.data is not None:
        cache = build_cache(replace(loaded.data, root=str(args.data))).path
    else:
        cache = args.cache
        check_cache_fits(cache, loaded.data)
    data = load_split(cache, "test", device)
    if len(data) == 0:
        raise UserError(f"{cache}: the test split is empty; nothing to check accuracy on")
    info = {
        "checked": True,
        "split": "test",
        "cache": str(cache),
        "sequences": len(data),
        "eval_batch": EVAL_BATCH,
        "rule": f"preserved when |delta correct| <= {PRESERVED_SEQUENCES} sequence against "
        "fp32 eager",
    }
    return data, info


# ------------------------------------------------------------------------------- running


def _record(variant: Variant) -> dict[str, Any]:
    return {
        "name": variant.name,
        "setting": variant.setting,
        "precision": variant.precision,
        "runtime": variant.runtime,
        "status": "ok",
        "reason": "",
        "build_s": None,
        "notes": [],
        "agreement": None,
        "accuracy": None,
    }


def time_row(runner: Runner, variant: Variant, inp: Input, args, device) -> dict[str, Any]:
    row = {
        "variant": variant.name,
        "setting": variant.setting,
        "precision": variant.precision,
        "runtime": variant.runtime,
        "input": inp.kind,
        "batch": inp.batch,
        "frames": sum(inp.lengths),
        "steps": max(inp.lengths),
        "status": "ok",
        "reason": "",
    }
    try:
        with torch.inference_mode():
            call_args = runner.prepare(inp.frames, inp.mask)
            timing = time_call(
                lambda: runner.call(*call_args),
                warmup=args.warmup,
                iters=args.iters,
                device=device,
                clock=runner.clock,
            )
    except Exception as err:  # OOM, a compiler error: the row says so and the run goes on
        if device.type == "cuda":
            torch.cuda.empty_cache()  # what an out-of-memory batch left behind
        return {**row, "status": "failed", "reason": brief_error(err)}
    stats = summarize(timing.samples_ms, inp.batch)
    return {
        **row,
        "first_call_s": timing.first_call_s,
        "iters": args.iters,
        "clock": timing.clock,
        **stats,
        "speedup_vs_fp32": None,
    }


def check_variant(
    runner: Runner, record: dict, check: Input, reference: Logits | None, data, frames
) -> Logits:
    """Agreement with fp32 on the check input and, with a test split, the correct count."""
    with torch.inference_mode():
        logits = runner.logits(runner.call(*runner.prepare(check.frames, check.mask)))
        record["agreement"] = agreement(logits, logits if reference is None else reference)
        if data is not None:
            record["correct"] = count_correct(runner, data, frames)
    return logits


def run_variant(
    variant: Variant, ctx: Context, inputs: list[Input], args, data, reference, bar
) -> tuple[dict[str, Any], list[dict[str, Any]], Logits | None]:
    record = _record(variant)
    start = time.perf_counter()
    try:
        runner = variant.build(ctx)
    except Unsupported as err:
        bar.update(len(inputs))
        return {**record, "status": "unsupported", "reason": str(err)}, [], None
    except Exception as err:  # a builder's own failure: reported, and the other variants run
        bar.update(len(inputs))
        return {**record, "status": "failed", "reason": f"build: {brief_error(err)}"}, [], None
    record["build_s"] = time.perf_counter() - start
    record["notes"] = list(runner.notes)
    rows = []
    for inp in inputs:
        bar.set_postfix_str(f"{variant.name} {inp.kind} b{inp.batch}")
        rows.append(time_row(runner, variant, inp, args, ctx.device))
        bar.update()
    logits = None
    try:
        frames = ctx.model.input_frames
        logits = check_variant(runner, record, inputs[-1], reference, data, frames)
    except Exception as err:  # reported in the variant's row, like a timing failure
        record.update(status="failed", reason=f"accuracy check: {brief_error(err)}")
    record["notes"] += runner.after()
    failed = [r for r in rows if r["status"] != "ok"]
    if failed and record["status"] == "ok":
        status = "failed" if len(failed) == len(rows) else "partial"
        record.update(status=status, reason="; ".join(sorted({r["reason"] for r in failed})))
    return record, rows, logits


def run_all(ctx: Context, selected: list[Variant], inputs: list[Input], args, data) -> tuple:
    records, rows, reference = [], [], None
    with tqdm(total=len(selected) * len(inputs), desc="bench infer", unit="input") as bar:
        for variant in selected:
            record, new_rows, logits = run_variant(variant, ctx, inputs, args, data, reference, bar)
            if variant.name == BASELINE:
                reference = logits
            records.append(record)
            rows += new_rows
            gc.collect()
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
    return records, rows


def add_comparisons(records: list[dict], rows: list[dict], n_test: int | None) -> None:
    """Speedup against fp32 eager at the same input and batch; accuracy change against it."""
    base = {(r["input"], r["batch"]): r for r in rows if r["variant"] == BASELINE}
    for row in rows:
        ref = base.get((row["input"], row["batch"]))
        if row["status"] == "ok" and ref is not None and ref["status"] == "ok":
            row["speedup_vs_fp32"] = ref["latency_ms"]["mean"] / row["latency_ms"]["mean"]
    for record in records:
        speedups = [r["speedup_vs_fp32"] for r in rows if r["variant"] == record["name"]]
        if speedups and all(x is not None and x < 1 for x in speedups):
            record["notes"].append("slower than fp32 eager at every measured input here")
    base_correct = next((r.get("correct") for r in records if r["name"] == BASELINE), None)
    for record in records:
        correct = record.pop("correct", None)
        if n_test and correct is not None and base_correct is not None:
            record["accuracy"] = accuracy_change(correct, base_correct, n_test)


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


# --------------------------------------------------------------------------------- CLI


def benchmark(args: argparse.Namespace, loaded: Loaded, data, data_info, device) -> dict:
    size = args.size
    # a single-frame model reads only the anchor: time it on what it reads
    frames = min(args.frames, loaded.model.input_frames or args.frames)
    if device.type == "cpu":
        keep_freed_host_memory()  # else the first variant alone pays fresh page faults per call
    selected = [v for v in VARIANTS if v.name in set(args.variants) | {BASELINE}]
    inputs = [
        make_input(kind, b, frames, size, device)
        for kind in ("fixed", "variable")
        for b in args.batch_sizes
    ]
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as scratch:
        steps = max(frames, int(data.lengths.max()) if data is not None else 0)
        ctx = Context(loaded.model, device, example_input(size, device), Path(scratch), steps)
        records, rows = run_all(ctx, selected, inputs, args, data)
    add_comparisons(records, rows, len(data) if data is not None else None)
    machine = machine_info(device)
    return {
        "benchmark": "python -m jersey_ray.bench infer",
        "model": loaded.info,
        "machine": machine,
        "settings": {
            "batch_sizes": list(args.batch_sizes),
            "size": list(size),
            "frames": frames,
            "iters": args.iters,
            "warmup": args.warmup,
            "variants": [v.name for v in selected],
        },
        "timed": timed_text(device, args.warmup, args.iters),
        "inputs": {
            "fixed": f"every sequence {frames} frames, all valid",
            "variable": f"lengths uniform in 1..{frames} (seed {INPUT_SEED} + batch size), "
            "mask width = the longest",
            "lengths": {str(i.batch): i.lengths for i in inputs if i.kind == "variable"},
            "check": f"agreement with fp32 is measured on the variable batch of {inputs[-1].batch}",
        },
        "accuracy": data_info,
        "variants": records,
        "rows": rows,
        "targets": targets(loaded.info["id"], machine, rows, records),
        "report_table4": report_table4(),
    }


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(BY_NAME)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.bench infer",
        description="Deployment latency, throughput and test accuracy per precision, compiler "
        "and runtime (the report's Table 4, done right).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, metavar="PATH", help="a trial's best.pt")
    src.add_argument(
        "--run",
        type=Path,
        metavar="RUN_DIR",
        help="a sweep's run folder: benchmark its best trial on validation",
    )
    src.add_argument("--model", metavar="ID", help="model id with random weights: timing only")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if visible"
    )
    p.add_argument(
        "--batch-sizes",
        type=cli.positive_ints,
        default=DEFAULT_BATCH_SIZES,
        metavar="B,B,...",
        help="default 1,4,8,16,64,256",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--data",
        type=Path,
        metavar="ROOT",
        help="data root: build or reuse its cache, check accuracy on its test split",
    )
    data.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="a cache built with the checkpoint's size, frames and split seed",
    )
    p.add_argument(
        "--size",
        type=cli.size,
        metavar="HxW",
        help=f"timed frame size (default: the checkpoint's, {DataConfig().size_text} with --model)",
    )
    p.add_argument(
        "--frames",
        type=cli.positive_int,
        metavar="T",
        help=f"frames per timed sequence (default: the checkpoint's max, {DataConfig().max_frames} "
        "with --model)",
    )
    p.add_argument("--iters", type=int, default=100, help="timed calls per input (default 100)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls before (default 20)")
    p.add_argument(
        "--variants",
        type=_variants,
        default=tuple(BY_NAME),
        metavar="NAME,...",
        help=f"subset to run (fp32, the baseline, always runs): {', '.join(BY_NAME)}",
    )
    p.add_argument(
        "--threads",
        type=cli.positive_int,
        metavar="N",
        help="intra-op threads for torch and ONNX Runtime (default: torch's, one per core)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the result as JSON")
    p.add_argument("--md", type=Path, metavar="OUT", help="write the Markdown tables")
    p.add_argument("--plot", type=Path, metavar="OUT", help="write the latency-vs-batch PNG")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.iters < 1 or args.warmup < 0:
        raise UserError(f"--iters must be >= 1 and --warmup >= 0 (got {args.iters}, {args.warmup})")
    if args.model is not None and (args.data is not None or args.cache is not None):
        raise UserError(
            "--data/--cache check a trained model's accuracy; with --model the "
            "weights are random (use --checkpoint or --run)"
        )


def load(args: argparse.Namespace, device: torch.device) -> Loaded:
    if args.model is not None:
        return random_model(args.model, device)
    if args.checkpoint is not None:
        return checkpoint_model(args.checkpoint, device)
    return run_model(args.run, device)


def write_outputs(args: argparse.Namespace, result: dict[str, Any], markdown: str) -> None:
    for path, text in ((args.json, json.dumps(result, indent=2) + "\n"), (args.md, markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.plot is not None:
        write_plot(result, args.plot)


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        check_args(args)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        loaded = load(args, device)
        cfg = loaded.cfg
        # ascending: the check input is the largest batch, and the plot's ticks follow the list
        args.batch_sizes = tuple(sorted(set(args.batch_sizes)))
        trained = loaded.data or DataConfig()
        args.size = args.size or trained.size
        args.frames = args.frames or trained.max_frames
        if cfg and args.size != trained.size and (args.data or args.cache):
            raise UserError(
                f"--size {args.size[0]}x{args.size[1]}: accuracy is checked at the checkpoint's "
                f"size {trained.size_text}, and every variant runs one size; drop --size"
            )
        data, data_info = load_test_split(args, loaded, device)
        result = benchmark(args, loaded, data, data_info, device)
        markdown = render_markdown(result)
        write_outputs(args, result, markdown)
        print(markdown)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
