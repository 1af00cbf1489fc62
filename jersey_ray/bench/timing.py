"""Latency of one call, repeated: the timing loop and the statistics of ``bench infer``.

A call is timed alone: its inputs are prepared before the clock starts and its outputs are not
read back. On a CUDA device each call sits between two CUDA events recorded on the current
stream and the host waits for the second before the next call (the GPU's clock, one request at
a time, as the reference timed); everywhere else (the CPU,
ONNX Runtime, which runs on its own streams) ``time.perf_counter`` brackets the call, after a
device synchronize when the inputs live on a GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

CUDA_EVENTS = "cuda-events"
PERF_COUNTER = "perf_counter"


@dataclass
class Timing:
    first_call_s: float
    """Wall time of the first call with these inputs (compilation happens here for
    ``torch.compile``), measured before the warm-up."""
    samples_ms: list[float]
    """One latency per timed call, in milliseconds."""
    clock: str
    """:data:`CUDA_EVENTS` or :data:`PERF_COUNTER`."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """mean, median, p95 and p99 of latencies in ms."""
    ordered = sorted(samples_ms)
    return {
        "mean": sum(ordered) / len(ordered),
        "median": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
    }


def summarize(samples_ms: Sequence[float], batch: int) -> dict[str, Any]:
    """Per-batch and per-sequence latency statistics and sequences per second."""
    per_batch = latency_stats(samples_ms)
    return {
        "latency_ms": per_batch,
        "per_seq_ms": {k: v / batch for k, v in per_batch.items()},
        "seq_per_s": 1000.0 * batch / per_batch["mean"],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_perf_counter(call: Callable[[], Any], iters: int, device: torch.device) -> list[float]:
    samples = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        call()
        _sync(device)
        samples.append(1000.0 * (time.perf_counter() - start))
    return samples


def _time_cuda_events(call: Callable[[], Any], iters: int) -> list[float]:
    """Each call alone on an idle GPU (a synchronize after each), as one request would run."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(iters):
        start.record()
        call()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return samples


def time_call(
    call: Callable[[], Any], *, warmup: int, iters: int, device: torch.device, clock: str
) -> Timing:
    """First call (timed on its own), ``warmup`` untimed calls, then ``iters`` timed calls."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters must be >= 1 and warmup >= 0, got {iters}, {warmup}")
    _sync(device)
    start = time.perf_counter()
    call()
    _sync(device)
    first = time.perf_counter() - start
    for _ in range(warmup):
        call()
    _sync(device)
    if clock == CUDA_EVENTS:
        samples = _time_cuda_events(call, iters)
    else:
        samples = _time_perf_counter(call, iters, device)
    return Timing(first, samples, clock)
