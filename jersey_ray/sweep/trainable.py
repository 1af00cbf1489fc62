"""The Ray Tune trainable: a thin adapter from a Tune trial to
:func:`jersey_ray.train.loop.train`.

Tune hands the trial its flat parameters (TrainConfig keys: model, seed, the sweep's axes and
the keys every trial shares) and the cache path (``tune.with_parameters``), and on a retry or
``Tuner.restore`` its latest checkpoint. The trial resolves its TrainConfig above its model's
phase protocol, reads the cache directly with pyarrow (no Ray Data inside trials, so trials can
never starve Ray Data of CPUs), writes its artifacts into its Tune trial folder, and reports
every epoch's metrics with a checkpoint through ``ray.tune.report``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from jersey_ray.disk_space import no_space_error
from jersey_ray.sweep.settings import trial_config
from jersey_ray.train.loop import load_data, train
from jersey_ray.train.step import resolve_device

log = logging.getLogger(__name__)

STORAGE_HINT = (
    "free space, or --resume the sweep with --storage elsewhere (its last good checkpoints are "
    "kept)"
)


def _report(values: dict[str, Any], checkpoint_dir: Path | None) -> None:
    # The final epoch's checkpoint holds best.pt alone (train leaves last.pt out for reporters
    # that don't keep it), which keeps a 90-trial sweep's disk use modest.
    checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
    try:
        tune.report(values, checkpoint=checkpoint)
    except Exception as err:
        # Tune copies the checkpoint into the storage; a full disk there fails this report, the
        # checkpoint is not registered, and the retry starts from the last one that was: say so
        # in one line (the trial's error.txt) instead of pyarrow's copy error.
        needed = sum(p.stat().st_size for p in checkpoint_dir.iterdir()) if checkpoint_dir else 0
        where = tune.get_context().get_trial_dir()
        full = no_space_error(err, where, needed or None, STORAGE_HINT)
        if full is None:
            raise
        raise full from err


def _record_placement(out_dir: Path) -> None:
    """Record which node and process ran this attempt: placement.jsonl, one line per attempt."""
    ctx = ray.get_runtime_context()
    row = {"node_id": ctx.get_node_id(), "hostname": socket.gethostname(), "pid": os.getpid()}
    with open(out_dir / "placement.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _quiet_exit_in_finalizers() -> None:
    """Keep a trial worker's teardown off the console.

    Ray stops a trial's actor (ASHA's pause, the end of a sweep) with SIGTERM, and its worker's
    handler raises SystemExit in whatever Python code the main thread is running. When that is
    a weakref callback or ``__del__`` during garbage collection, Python cannot raise it there,
    and prints "Exception ignored in ..." with a traceback that Ray forwards to the user's
    console, though nothing failed (the process goes on to be stopped as before). Such a
    SystemExit is logged at DEBUG instead; every other unraisable exception is printed as
    usual. Installed once per worker process (trials may reuse one)."""
    previous = sys.unraisablehook
    if getattr(previous, "_jersey_ray_quiet_exit", False):
        return

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, SystemExit):
            log.debug("exit (%s) raised during garbage collection", unraisable.exc_value)
            return
        previous(unraisable)

    hook._jersey_ray_quiet_exit = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _trial_dir() -> Path:
    """Where this attempt writes its files. Tune's ``get_trial_dir()`` is the driver's staging
    folder, which Tune's experiment sync uploads, but it exists on the driver's machine only;
    on another node the trial writes into its working directory, which Ray makes there and
    uploads on every report and at the end (``sync_artifacts``)."""
    staging = Path(tune.get_context().get_trial_dir())
    return staging if staging.is_dir() else Path.cwd()


def run_trial(config: dict[str, Any], cache: str, verified: str | None = None) -> None:
    """Tune entry point: train one (model, seed, ...) configuration, resuming if Tune says so.

    ``verified``: the driver's token for a cache it hashed in full before the sweep
    (:func:`~jersey_ray.cache.store.verify_for_trials`); the trial then checks only the
    manifest's digest and the shard sizes, so a restart does not read the cache twice. Without
    one the trial hashes every shard itself.
    """
    # One INFO line per checkpoint, forwarded to the driver's console from every trial
    # (48 in the demo); the checkpoints are listed in each trial's folder.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    _quiet_exit_in_finalizers()
    cfg = trial_config(config)
    out_dir = _trial_dir()
    _record_placement(out_dir)
    data = load_data(cache, resolve_device(cfg.device), verified)
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        train(cfg, data, out_dir, report=_report, progress=False)
        return
    with tempfile.TemporaryDirectory(prefix="jersey-ray-resume-") as scratch:  # see train.loop
        # Copy out: Tune may delete the checkpoint folder once this trial reports a newer one.
        with checkpoint.as_directory() as ckpt_dir:
            resume = Path(shutil.copytree(ckpt_dir, Path(scratch) / "ckpt"))
        if not (resume / "last.pt").exists():
            return  # the final checkpoint: this trial had already finished and reported test
        train(cfg, data, out_dir, report=_report, resume=resume, progress=False)
