"""How many CPUs and what fraction of a GPU each trial gets, and how many run at once.

A trial keeps its whole data set on its device and runs no Ray Data, so it needs one CPU to
drive the GPU (more only speeds up CPU training). Fractional GPUs are logical in Ray: the trial
enforces its share with ``torch.cuda.set_per_process_memory_fraction``. Each Tune trial is one
placement group holding one bundle ``{CPU: c, GPU: g}``; both must fit on one node, so CPUs per
trial are chosen so that all the GPU slots of a node can be filled at once (otherwise GPU slots
sit idle waiting for CPUs: ray-project/ray#13905).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jersey_ray.errors import UserError

GPU_FRACTIONS = (1.0, 0.5, 1 / 3, 0.25, 0.2, 1 / 6, 0.125)
"""Fractions that divide one GPU evenly (Ray packs one GPU before the next)."""
CONTEXT_BYTES = 1.0e9
"""A CUDA context plus the caching allocator's slack, per trial process."""


@dataclass(frozen=True)
class Plan:
    """Resources of one trial and the concurrency they allow."""

    cpus_per_trial: float
    """CPUs in each trial's bundle."""
    gpus_per_trial: float
    """GPU fraction in each trial's bundle (0: CPU training)."""
    max_concurrent: int
    """Trials that run at once on the cluster as it is now."""

    def describe(self) -> str:
        device = f"{self.gpus_per_trial:g} GPU" if self.gpus_per_trial else "no GPU"
        return (
            f"{self.cpus_per_trial:g} CPU + {device} per trial, "
            f"up to {self.max_concurrent} trials at once"
        )


def trial_bytes(data_bytes: int, frames_per_batch: int, bytes_per_frame: float) -> float:
    """Rough peak GPU memory of one trial: resident data, activations, context."""
    return data_bytes + frames_per_batch * bytes_per_frame + CONTEXT_BYTES


def default_gpu_fraction(gpu_bytes: float, need_bytes: float) -> float:
    """The smallest even share of a GPU that still holds ``need_bytes`` (at most 8 per GPU)."""
    for fraction in reversed(GPU_FRACTIONS):
        if fraction * gpu_bytes >= need_bytes:
            return fraction
    if gpu_bytes < need_bytes:
        raise UserError(
            f"one trial needs about {need_bytes / 1e9:.1f} GB of GPU memory but the GPU has "
            f"{gpu_bytes / 1e9:.1f} GB; use a smaller --size or a bigger GPU"
        )
    return 1.0


def plan(
    cluster_cpus: float,
    cluster_gpus: float,
    node_cpus: float,
    node_gpus: float,
    *,
    gpus_per_trial: float | None,
    cpus_per_trial: float | None,
    max_concurrent: int | None,
    n_trials: int,
) -> Plan:
    """Choose per-trial resources; ``node_*`` describe the largest node (a bundle fits on one).

    Explicit values are trusted even when no node can hold them yet: on an autoscaling cluster
    the GPU workers appear once Tune asks for them.
    """
    gpu = gpus_per_trial if gpus_per_trial is not None else (0.25 if cluster_gpus else 0.0)
    if gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise UserError(
            f"--gpus-per-trial must be a fraction of one GPU or a whole number, got {gpu}"
        )
    if cpus_per_trial is None:
        slots = math.floor(node_gpus / gpu + 1e-9) if gpu and node_gpus else 0
        cpus_per_trial = max(1.0, math.floor(node_cpus / slots)) if slots else 1.0
    if cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be > 0, got {cpus_per_trial:g}")
    fit = math.floor(cluster_cpus / cpus_per_trial + 1e-9)
    if gpu:
        fit = min(fit, math.floor(cluster_gpus / gpu + 1e-9))
    concurrent = max(1, min(fit, n_trials))
    if max_concurrent is not None:
        if max_concurrent < 1:
            raise UserError(f"--max-concurrent must be >= 1, got {max_concurrent}")
        concurrent = min(concurrent, max_concurrent)
    return Plan(float(cpus_per_trial), float(gpu), concurrent)
