"""One training trial with the reference study's protocol: resumable, observable, fast.

``train(cfg, data, out_dir, report, resume)`` is what Ray Tune runs for every grid point; it also
runs alone (``python -m jersey_ray.train``, no Ray). After every epoch: train and val metrics,
the best val ``acc_number`` checkpoint kept (ties keep the earlier). After the last epoch that
checkpoint is evaluated once on test (and on ``unseen``, the held-out numbers, when the cache has
them), which never influences any choice. Evaluation runs in fp32, as the reference.

A seed drives three streams: initialisation (global torch RNG before ``build_model``),
shuffling (a CPU generator) and augmentation (a generator on the device). Same seed and config on
the CPU give bit-identical metrics, also across a stop and ``resume``.

Reporter protocol: ``report(metrics, checkpoint_dir)`` once per epoch. The callee copies or moves
what it wants out of ``checkpoint_dir`` before returning; the directory is deleted afterwards.
``checkpoint_dir`` holds ``best.pt`` and ``last.pt`` (:mod:`jersey_ray.train.checkpoint`);
``last.pt`` is left out of the final epoch's directory unless the reporter has
``keeps_final_state = True`` (:class:`~jersey_ray.train.checkpoint.LocalReporter` does).

``train`` itself writes into ``out_dir``: ``config.json`` ({"train", "data", "cache"}),
``metrics.jsonl`` (one row per epoch), ``test.json``, ``test_predictions.csv`` (one row per test
sequence; ``unseen_predictions.csv`` too for a held-out cache) and TensorBoard events. With
``report=None`` a LocalReporter moves the checkpoint files into ``out_dir`` too. With
``profile_steps`` the first epoch this process trains is profiled into ``out_dir/profile/``
(that epoch's frames/s include the profiler's overhead).

Fault injection (for the sweep's retry tests): with ``JERSEY_RAY_FAIL_AT_EPOCH=N`` in the
environment, the trial raises RuntimeError once when epoch N starts, after creating
``out_dir/.fault_injected``; a retry into the same ``out_dir`` finds the marker and goes on.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jersey_ray import metrics as M
from jersey_ray.cache.loader import SplitData, iter_batches, load_split
from jersey_ray.cache.splice import epoch_generator, forbidden_labels
from jersey_ray.cache.store import check_verified, data_config, splits_of, verify_cache
from jersey_ray.config import DataConfig, TrainConfig, to_dict
from jersey_ray.errors import UserError
from jersey_ray.models import build_model, count_params
from jersey_ray.storage import write_json
from jersey_ray.train import events
from jersey_ray.train.checkpoint import (
    LocalReporter,
    RunState,
    best_state,
    full_state,
    read_resume,
    restore,
    save_checkpoint,
)
from jersey_ray.train.evaluate import evaluate, write_predictions
from jersey_ray.train.step import (
    Step,
    make_step,
    profiling,
    resolve_device,
    run_epoch,
    set_determinism,
    steps_per_epoch,
)

Reporter = Callable[[dict[str, float], Path | None], None]
"""``report(metrics, checkpoint_dir)``; the callee copies what it keeps from the directory."""

FAIL_ENV = "JERSEY_RAY_FAIL_AT_EPOCH"
FAULT_MARKER = ".fault_injected"
PROFILE_DIR = "profile"
AUG_SEED_OFFSET = 1_000_003  # the augmentation stream must not replay the shuffle stream
STAGE_HINT = (
    "free space, or point TMPDIR elsewhere (checkpoints are staged there); the last good "
    "checkpoint is kept"
)


@dataclass
class TrialData:
    """A cache loaded for one trial: its splits on the device and the DataConfig it was built
    with (read from its manifest: the only source of a trial's data settings)."""

    cache: str
    data: DataConfig
    splits: dict[str, SplitData]

    def __getitem__(self, split: str) -> SplitData:
        return self.splits[split]


def load_data(
    cache: str | os.PathLike, device: torch.device | str, verified: str | None = None
) -> TrialData:
    """Verify ``cache`` and load every split it holds onto ``device``.

    Without ``verified`` every shard is hashed (:func:`verify_cache`: a standalone run trusts
    nothing). A sweep's driver hashes them once before its trials and hands each trial the
    token of :func:`~jersey_ray.cache.store.verify_for_trials`: a trial (and each of its
    restarts: retry, ASHA resume, ``--resume``) then checks only the manifest's digest and the
    shards' sizes (:func:`check_verified`), which costs milliseconds instead of reading the
    whole cache once more.
    """
    manifest = verify_cache(cache) if verified is None else check_verified(cache, verified)
    splits = {s: load_split(cache, s, device, manifest) for s in splits_of(manifest)}
    return TrialData(str(cache), data_config(manifest), splits)


def make_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    shuffle = torch.Generator().manual_seed(seed)
    augment = torch.Generator(device=device).manual_seed(seed + AUG_SEED_OFFSET)
    return shuffle, augment


@dataclass
class Trial:
    """What every epoch of one trial works with, from the step to its output folder."""

    cfg: TrainConfig
    data: TrialData
    step: Step
    state: RunState
    out_dir: Path
    writer: Any  # a SummaryWriter; tensorboard is imported only once a trial starts
    first_epoch: int = 1  # the first epoch this process trains: the one cfg.profile_steps records


def train(
    cfg: TrainConfig,
    data: TrialData,
    out_dir: Path,
    report: Reporter | None = None,
    resume: Path | None = None,
    *,
    progress: bool | None = None,
) -> dict[str, float]:
    """Run the trial and return the test metrics of the best-val checkpoint.

    ``data`` holds the splits already on the device ``cfg`` resolves to. ``resume`` is a
    directory with ``last.pt`` and ``best.pt`` from an earlier run of the same config.
    ``progress`` shows a tqdm bar per epoch (default: only when stderr is a terminal; pass False
    under Tune).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    check_data(data, device)
    saved = read_resume(Path(resume), cfg, data.data) if resume is not None else None
    if device.type == "cuda" and cfg.gpu_fraction > 0:
        torch.cuda.set_per_process_memory_fraction(cfg.gpu_fraction, device)
    set_determinism(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    module = build_model(cfg.model, cfg.pretrained)  # a WeightsError before any training
    n_params = count_params(module)
    step = make_step(cfg, module, len(data["train"]), device)
    state = RunState(*make_generators(cfg.seed, device))
    if saved is not None:
        restore(step, state, *saved)
    report = report if report is not None else LocalReporter(out_dir)
    progress = sys.stderr.isatty() if progress is None else progress
    write_json(out_dir / "config.json", trial_record(cfg, data))
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events a crashed attempt logged after its last checkpoint
    writer = SummaryWriter(str(out_dir), purge_step=state.epoch + 1 if saved else None)
    trial = Trial(cfg, data, step, state, out_dir, writer, first_epoch=state.epoch + 1)
    try:
        test: dict[str, float] = {}
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            maybe_inject_fault(epoch, out_dir)
            row = train_and_validate(trial, n_params, progress)
            test = _checkpoint_and_report(trial, row, report)
        return test
    finally:
        writer.close()


def trial_record(cfg: TrainConfig, data: TrialData) -> dict[str, Any]:
    """``config.json``: the resolved settings the trial ran with."""
    return {"train": to_dict(cfg), "data": to_dict(data.data), "cache": data.cache}


def check_data(data: TrialData, device: torch.device) -> None:
    for split in M.SPLITS:
        if split not in data.splits:
            raise UserError(f"{data.cache}: no {split} split was loaded")
        part = data[split]
        if len(part) == 0:
            raise UserError(f"{data.cache}: the {split} split is empty; the data needs more tracks")
        if part.tens.device.type != device.type:
            raise UserError(
                f"{data.cache}: {split} split is on {part.tens.device}, the run on {device}"
            )


def maybe_inject_fault(epoch: int, out_dir: Path) -> None:
    """Fail once at epoch ``$JERSEY_RAY_FAIL_AT_EPOCH`` (the sweep's retry tests)."""
    target = os.environ.get(FAIL_ENV, "")
    if target and not target.isdigit():
        raise UserError(f"{FAIL_ENV} must be an epoch number, got {target!r}")
    marker = out_dir / FAULT_MARKER
    if target and int(target) == epoch and not marker.exists():
        marker.touch()
        raise RuntimeError(f"{FAIL_ENV}={target}: injected fault at the start of epoch {epoch}")


def train_and_validate(trial: Trial, n_params: int, progress: bool) -> dict[str, float]:
    """One epoch of training and validation; appends and returns the epoch's metric row."""
    cfg, step, state, data = trial.cfg, trial.step, trial.state, trial.data
    epoch = state.epoch + 1
    cuda = step.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(step.device)
    counter = M.SplitCounter(step.device)
    batches = iter_batches(
        data["train"],
        cfg.batch_size,
        frames=step.input_frames,
        shuffle=True,
        generator=state.shuffle,
        augment=cfg.augment,
        aug_generator=state.augment,
        splice=cfg.splice,  # the train split only: evaluation never splices
        forbidden=forbidden_labels(data.data.heldout_numbers),
        splice_generator=epoch_generator(cfg.seed, epoch) if cfg.splice > 0 else None,
        training=True,
    )
    total = steps_per_epoch(len(data["train"]), cfg.batch_size)
    start = time.perf_counter()
    desc = f"epoch {epoch}/{cfg.epochs}"
    profile = cfg.profile_steps if epoch == trial.first_epoch else 0
    with profiling(profile, trial.out_dir / PROFILE_DIR, step.device, total) as after_step:
        n_frames = run_epoch(
            step, batches, counter, total=total, desc=desc, progress=progress, after_step=after_step
        )
    train_metrics = counter.compute("train")  # the epoch's one host sync
    if cuda:
        torch.cuda.synchronize(step.device)
    seconds = time.perf_counter() - start
    val = _evaluate(trial, "val")
    state.epoch = epoch
    state.consider(epoch, val, step.module)
    row = {
        M.EPOCH: epoch,
        M.LR: step.optimizer.param_groups[0]["lr"],
        M.FRAMES_PER_S: n_frames / seconds,
        M.EPOCH_TIME_S: seconds,
        **train_metrics,
        **val,
        M.BEST_EPOCH: state.best_epoch,
        M.BEST_VAL_ACC_NUMBER: state.best_metrics[M.VAL_ACC_NUMBER],
        M.N_PARAMS: n_params,
        M.GPU_MEM_GB: torch.cuda.max_memory_allocated(step.device) / 1e9 if cuda else 0.0,
    }
    state.history.append(row)
    return row


def _evaluate(trial: Trial, split: str, keep: bool = False):
    result = evaluate(
        trial.step.module,
        trial.data[split],
        batch_size=trial.cfg.eval_batch_size,
        loss_weights=trial.cfg.loss_weights,
        keep=keep,
    )
    return result if keep else result.metrics


def _checkpoint_and_report(
    trial: Trial, row: dict[str, float], report: Reporter
) -> dict[str, float]:
    """Write the epoch's checkpoint, files and events, test after the last epoch, and report."""
    cfg, state, data_cfg = trial.cfg, trial.state, trial.data.data
    final = state.epoch == cfg.epochs
    # Staged outside the trial folder: on a single node Tune's driver syncs that folder while
    # the trial writes, and a staging file that vanishes mid-sync fails it with a traceback.
    ckpt = Path(tempfile.mkdtemp(prefix="jersey-ray-checkpoint-"))
    try:
        if not final or getattr(report, "keeps_final_state", False):
            # saved before the best weights are loaded for test: last.pt is the last epoch's
            last = full_state(cfg, data_cfg, trial.step, state)
            save_checkpoint(last, ckpt / "last.pt", STAGE_HINT)
        test = final_test(trial, row) if final else {}
        save_checkpoint(best_state(cfg, data_cfg, state, test), ckpt / "best.pt", STAGE_HINT)
        write_json(trial.out_dir / "metrics.jsonl", state.history, lines=True)
        events.log_epoch(trial.writer, row, trial.step.optimizer)
        report(dict(row), ckpt)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    return test


def final_test(trial: Trial, row: dict[str, float]) -> dict[str, float]:
    """Evaluate the best-val weights once on test (and unseen, if the cache holds it): adds the
    metrics to ``row``, writes test.json and test_predictions.csv, logs the confusion."""
    cfg, state = trial.cfg, trial.state
    assert state.best_model is not None
    trial.step.module.load_state_dict(state.best_model)
    result = _evaluate(trial, "test", keep=True)
    test = dict(result.metrics)
    write_predictions(
        trial.out_dir / "test_predictions.csv", trial.data["test"], result.predictions
    )
    if M.UNSEEN in trial.data.splits:  # the held-out numbers: two-digit generalization
        unseen = _evaluate(trial, M.UNSEEN, keep=True)
        test.update(unseen.metrics)
        write_predictions(
            trial.out_dir / "unseen_predictions.csv", trial.data[M.UNSEEN], unseen.predictions
        )
    row.update(test)
    write_json(
        trial.out_dir / "test.json",
        {**test, M.BEST_EPOCH: state.best_epoch, **state.best_metrics, "model": cfg.model,
         "seed": cfg.seed},
    )  # fmt: skip
    events.log_final(
        trial.writer, cfg, trial.data.data, row, trial.data["test"], result.predictions
    )
    return test
