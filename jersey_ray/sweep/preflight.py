"""Checks a sweep runs before any expensive work, and the resources each trial gets.

Cheap checks come first (:func:`check_request`: the GPU share asked for; :func:`check_storage`:
a URI storage's bucket and credentials; the experiment folder; model ids and weights), then the
cache is built, then :func:`plan_trials` sizes the trials on the cluster as it is
(:mod:`jersey_ray.sweep.resources`) and refuses a GPU share that cannot hold one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from jersey_ray.config import DataConfig
from jersey_ray.errors import UserError
from jersey_ray.storage import (
    CREDENTIALS_HINT,
    filesystem,
    is_nonempty_folder,
    is_uri,
    storage_problem,
)
from jersey_ray.sweep import resources
from jersey_ray.sweep.resources import Plan


def check_request(gpus_per_trial: float | None, cluster: bool, gpus_present: float) -> None:
    """Refuse a GPU share that is not a fraction of one GPU (a trial trains on one device: a
    second GPU would idle), or one asked for on a machine without a GPU (on a cluster, GPU
    workers may still be starting: trusted)."""
    if gpus_per_trial is None:
        return
    share = gpus_per_trial
    if share < 0:
        raise UserError(f"--gpus-per-trial must be a fraction of one GPU (0 to 1), got {share:g}")
    if share > 1:
        raise UserError(
            f"--gpus-per-trial {share:g}: a trial trains on one device; use a fraction <= 1 "
            "(0.5 runs two trials per GPU; more GPUs run more trials at once, not one faster)"
        )
    if share > 0 and not cluster and not gpus_present:
        raise UserError(
            f"--gpus-per-trial {share:g} but this machine has no GPU Ray can see; drop the "
            "option to train on the CPU, or pass --address of a cluster with GPUs"
        )


def check_experiment(exp_path: str, resume: bool) -> None:
    """Never overwrite a sweep; never 'resume' one that is not there."""
    from ray import tune

    exists = tune.Tuner.can_restore(exp_path)
    if resume and not exists:
        raise UserError(f"nothing to resume at {exp_path}: run the sweep without --resume first")
    name = exp_path.rstrip("/").rsplit("/", 1)[1]
    if not resume and exists:
        raise UserError(
            f"{exp_path} already holds sweep {name!r}; continue it with --resume or pick a new "
            "--name (nothing was overwritten)"
        )
    if not resume and not is_uri(exp_path) and is_nonempty_folder(exp_path):
        raise UserError(f"{exp_path} exists and is not empty; pick a new --name or remove it")


def check_models(models: tuple[str, ...], pretrained: dict[str, str]) -> dict[str, int]:
    """Build every model once on the driver, before any trial: missing ImageNet weights are
    downloaded here (the only place a sweep downloads; trials never do), and weights that
    cannot be had fail here as one line. Returns each model's parameter count."""
    from jersey_ray.models import build_model, count_params
    from jersey_ray.models.backbones import downloading

    with downloading():
        return {m: count_params(build_model(m, pretrained[m])) for m in models}


def cluster_shape() -> dict[str, Any]:
    """Total and largest-node resources, and what accelerators the cluster has."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = [n.get("Resources", {}) for n in nodes]
    accel = sorted(
        {k.split(":", 1)[1] for r in res for k in r if k.startswith("accelerator_type:")}
    )
    return {
        "nodes": len(nodes),
        "cpus": sum(r.get("CPU", 0) for r in res),
        "gpus": sum(r.get("GPU", 0) for r in res),
        "node_cpus": max((r.get("CPU", 0) for r in res), default=0),
        "node_gpus": max((r.get("GPU", 0) for r in res), default=0),
        "accelerators": accel,
    }


def visible_gpu_memory() -> tuple[int, int] | None:
    """(free, total) bytes of the first GPU the driver sees, or None.

    Read in a short-lived process: a CUDA context in the driver would hold hundreds of MB of
    the GPU memory the trials need for the whole sweep.
    """
    import torch

    if not torch.cuda.is_available():
        return None
    probe = "import torch; print(*torch.cuda.mem_get_info())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return None
    free, total = (int(v) for v in out.stdout.split())
    return free, total


def check_gpu_share(plan: Plan, need_bytes: float, memory: tuple[int, int] | None) -> None:
    """Where the driver can see the GPU, refuse a share that cannot hold a trial."""
    if not plan.gpus_per_trial or memory is None:
        return
    free, total = memory
    share = min(plan.gpus_per_trial, 1.0) * total
    if share > free or share < need_bytes:
        raise UserError(
            f"--gpus-per-trial {plan.gpus_per_trial:g} gives {share / 1e9:.1f} GB per trial but "
            f"{free / 1e9:.1f} GB of {total / 1e9:.1f} GB is free and a trial needs about "
            f"{need_bytes / 1e9:.1f} GB; free the GPU or choose a larger fraction"
        )


def trial_need_bytes(manifest: dict[str, Any], data: DataConfig, batch_size: int) -> float:
    """Rough peak GPU memory of a trial: the resident frames, a batch's activations, context."""
    h, w = data.size
    frames = sum(c["frames"] for c in manifest["counts"]["splits"].values())
    # ~380 bytes of saved bf16 activations per pixel of a ResNet-18 frame
    return resources.trial_bytes(frames * h * w * 3, batch_size * data.max_frames, 380.0 * h * w)


def plan_trials(
    shape: dict[str, Any], manifest: dict[str, Any], data: DataConfig, batch_size: int, args, n: int
) -> Plan:
    """Per-trial CPUs and GPU share on this cluster; a share that cannot hold a trial fails."""
    memory = visible_gpu_memory() if shape["gpus"] else None
    need = trial_need_bytes(manifest, data, batch_size)
    share = args.gpus_per_trial
    if share is None and shape["gpus"]:
        # as many trials per GPU as fit in its memory; 0.25 when the driver cannot see the GPU
        share = resources.default_gpu_fraction(memory[1], need) if memory else 0.25
    plan = resources.plan(
        shape["cpus"],
        shape["gpus"],
        shape["node_cpus"],
        shape["node_gpus"],
        gpus_per_trial=share,
        cpus_per_trial=args.cpus_per_trial,
        max_concurrent=args.max_concurrent,
        n_trials=n,
    )
    check_gpu_share(plan, need, memory)
    return plan


def display(path: str) -> str:
    """A path relative to the working folder where it is inside it (for printed commands)."""
    if is_uri(path):
        return path
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


STORAGE_CHECK = ".jersey_ray_write_check"
"""The object :func:`check_storage` writes and deletes under a URI storage root."""


def check_storage(location: str) -> None:
    """Refuse URI storage this process cannot write, as one line, before any data work.

    The bucket must exist (``get_file_info`` on an object store's bucket asks the server) and
    a small object must be writable and deletable under ``location``: wrong credentials, a
    missing bucket or a read-only key fail here, not after the cache build. Local paths pass
    (their folders are created as needed).
    """
    import pyarrow.fs as pafs

    if not is_uri(location):
        return
    fs, path = filesystem(location)
    try:
        if fs.type_name in ("s3", "gcs"):
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise UserError(
                    f"{location}: bucket {bucket!r} does not exist; create it or fix --storage"
                )
        probe = f"{path.rstrip('/')}/{STORAGE_CHECK}"
        with fs.open_output_stream(probe) as out:
            out.write(b"jersey-ray checks that it can write here\n")
        fs.delete_file(probe)
    except OSError as err:
        raise UserError(
            f"{location}: cannot access it ({storage_problem(err)}); {CREDENTIALS_HINT}"
        ) from None
