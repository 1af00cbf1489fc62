"""Running ``bench infer``'s variants: the seeded inputs, each variant timed on each input, its
agreement with fp32 eager, and its test accuracy through the one evaluation loop."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

import torch

from jersey_ray.bench.timing import summarize, time_call
from jersey_ray.bench.variants import (
    BASELINE,
    Context,
    Logits,
    Runner,
    Unsupported,
    Variant,
    brief_error,
)
from jersey_ray.cache.loader import SplitData
from jersey_ray.progress import bar as progress_bar
from jersey_ray.train.evaluate import infer

EVAL_BATCH = 64  # the reference's test loader batch; accuracy does not depend on it
INPUT_SEED = 0
"""Seeds the random frames and the variable lengths (plus the batch size, so one batch size's
input does not depend on which others are run)."""
PRESERVED_SEQUENCES = 1
"""Accuracy is preserved when the number of correct test sequences moves by at most this."""

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
    # infer yields what forward returns, here (tens, ones); its annotation says a ModelOutput
    for batch, (tens, ones) in infer(forward, data, batch_size=EVAL_BATCH, frames=frames):  # type: ignore[misc]
        correct += number_correct(tens, ones, batch.tens.cpu(), batch.ones.cpu())
    return correct


def agreement(logits: Logits, reference: Logits) -> dict[str, float]:
    """How far a variant's logits are from fp32 eager's on the same check input."""
    same = (logits[0].argmax(1) == reference[0].argmax(1)) & (
        logits[1].argmax(1) == reference[1].argmax(1)
    )
    diff = max(float((a - b).abs().max()) for a, b in zip(logits, reference, strict=True))
    return {"max_abs_logit_diff": diff, "same_prediction": float(same.float().mean())}


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
    with progress_bar(total=len(selected) * len(inputs), desc="bench infer", unit="input") as bar:
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
