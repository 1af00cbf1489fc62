"""Checkpoints: what a trial saves each epoch, how it resumes bit-exactly, and the one loader
every consumer of a trained model uses.

``best.pt`` = {"model" (the best-val weights), "train" and "data" (the TrainConfig and the
cache's DataConfig as JSON), "epoch", "metrics" (val_* of that epoch, plus test_* in the final
epoch's copy)}. ``last.pt`` is the full state (:func:`full_state`). Every file loads with
``torch.load(weights_only=True)``. Every file is written through a temporary name and a rename
(:func:`save_checkpoint`, :class:`LocalReporter`): a full disk leaves the last good checkpoint
as it was and ends with a one-line :class:`~jersey_ray.disk_space.NoSpaceError`. Checkpoints
from before the data/train split of the configs (one ``config`` holding both) still load:
:func:`configs_of` splits them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jersey_ray import metrics as M
from jersey_ray.config import ConfigError, DataConfig, TrainConfig, from_dict, to_dict, to_json
from jersey_ray.disk_space import no_space_error, write_bytes_atomic
from jersey_ray.errors import UserError
from jersey_ray.models import build_model
from jersey_ray.train.step import Step

log = logging.getLogger(__name__)

RESUME_FREE = (
    "device", "gpu_fraction", "precision", "compile", "cuda_graphs", "channels_last",
    "eval_batch_size", "profile_steps",
)  # fmt: skip
"""TrainConfig keys that may differ between a checkpoint and its resume (where and how fast it
runs, not what it computes)."""
LEGACY_DATA_KEYS = {"data_root": "root", "size": "size", "max_frames": "max_frames",
                    "split_seed": "split_seed", "numbers": "numbers"}  # fmt: skip
"""Old single-config checkpoints: their data keys -> DataConfig fields (``cache`` is dropped)."""
OUT_HINT = "free space, or resume with --out/--storage elsewhere (the last good checkpoint is kept)"


@dataclass
class RunState:
    """What survives an epoch besides the step: progress, best-so-far and the history."""

    shuffle: torch.Generator
    augment: torch.Generator
    epoch: int = 0
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_model: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def consider(self, epoch: int, val: dict[str, float], module: nn.Module) -> None:
        """Keep ``epoch`` as the best if its val acc_number is strictly greater (ties: earlier)."""
        if self.best_model is None or val[M.VAL_ACC_NUMBER] > self.best_metrics[M.VAL_ACC_NUMBER]:
            self.best_epoch = epoch
            self.best_metrics = dict(val)
            self.best_model = {k: v.detach().clone() for k, v in module.state_dict().items()}


def save_checkpoint(state: dict[str, Any], path: Path | str, hint: str = OUT_HINT) -> None:
    """``torch.save`` that never leaves a half-written file under ``path``: serialized in memory,
    written to a temporary name, renamed into place. On a full disk the file that was there
    stays as it was and a :class:`~jersey_ray.disk_space.NoSpaceError` names ``path`` and the
    bytes it needed (torch's own writer reports a full disk as an opaque RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getbuffer(), hint=hint)


class LocalReporter:
    """The reporter of a run without Ray: moves each epoch's checkpoint files into ``out_dir``.

    All files of an epoch are first staged under temporary names, then renamed into place, so a
    full disk while staging leaves the previous epoch's ``best.pt`` and ``last.pt`` untouched and
    consistent with each other (never a new best.pt beside an old last.pt)."""

    keeps_final_state = True

    def __init__(self, out_dir: Path, echo: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.echo = echo

    def __call__(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is not None:
            files = sorted(checkpoint_dir.iterdir())
            needed = sum(p.stat().st_size for p in files)
            staged: list[tuple[Path, Path]] = []
            try:
                for path in files:
                    tmp = self.out_dir / f".{path.name}.tmp"
                    staged.append((tmp, self.out_dir / path.name))
                    shutil.move(path, tmp)  # a rename on one file system, else a copy
            except OSError as err:
                for tmp, _ in staged:
                    tmp.unlink(missing_ok=True)
                full = no_space_error(err, staged[-1][1], needed, hint=OUT_HINT)
                if full is None:
                    raise
                raise full from None
            for tmp, final in staged:
                os.replace(tmp, final)  # atomic: never a half-written file
        if self.echo:
            print(epoch_line(metrics), flush=True)


def epoch_line(row: dict[str, float]) -> str:
    """One human line per epoch."""
    return (
        f"epoch {int(row[M.EPOCH])}: train loss {row[M.TRAIN_LOSS]:.4f} "
        f"acc {row[M.TRAIN_ACC_NUMBER]:.4f} | val loss {row[M.VAL_LOSS]:.4f} "
        f"acc {row[M.VAL_ACC_NUMBER]:.4f} (tens {row[M.VAL_ACC_TENS]:.4f}, "
        f"ones {row[M.VAL_ACC_ONES]:.4f}) | best {row[M.BEST_VAL_ACC_NUMBER]:.4f} "
        f"@{int(row[M.BEST_EPOCH])} | lr {row[M.LR]:.2e} | {row[M.FRAMES_PER_S]:.0f} frames/s "
        f"{row[M.EPOCH_TIME_S]:.1f} s"
    )


def _configs(cfg: TrainConfig, data: DataConfig) -> dict[str, str]:
    return {"train": to_json(cfg), "data": to_json(data)}


def full_state(cfg: TrainConfig, data: DataConfig, step: Step, state: RunState) -> dict[str, Any]:
    """``last.pt``: everything needed to continue bit-identically."""
    cuda = torch.cuda.get_rng_state_all() if step.device.type == "cuda" else None
    return {
        "model": step.module.state_dict(),
        "optimizer": step.optimizer.state_dict(),
        "scheduler": step.scheduler.state_dict(),
        "scaler": step.scaler.state_dict() if step.scaler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": cuda,
            "shuffle": state.shuffle.get_state(),
            "augment": state.augment.get_state(),
            "augment_device": state.augment.device.type,
        },
        "epoch": state.epoch,
        "best": {"epoch": state.best_epoch, "metrics": dict(state.best_metrics)},
        "history": [dict(row) for row in state.history],
        **_configs(cfg, data),
    }


def best_state(
    cfg: TrainConfig, data: DataConfig, state: RunState, extra: dict[str, float]
) -> dict[str, Any]:
    """``best.pt``: the best-val weights, the configs and that epoch's metrics (+ ``extra``)."""
    assert state.best_model is not None
    return {
        "model": {k: v.cpu() for k, v in state.best_model.items()},
        "epoch": state.best_epoch,
        "metrics": {**state.best_metrics, **extra},
        **_configs(cfg, data),
    }


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """A checkpoint file, loaded safely (weights_only); a UserError naming the file if it is
    missing or unusable. The one loader: training's resume, the collector, the benchmarks
    and prediction all read checkpoints through it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found (a trial writes best.pt and last.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files all mean the same to the user
        raise UserError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err


def configs_of(ckpt: dict[str, Any], path: Path | str) -> tuple[TrainConfig, DataConfig]:
    """The TrainConfig and DataConfig a checkpoint was trained with (old single-config
    checkpoints are split into the two)."""
    try:
        if "train" in ckpt:
            train = from_dict(TrainConfig, json.loads(ckpt["train"]))
            return train, from_dict(DataConfig, json.loads(ckpt["data"]))
        old = json.loads(ckpt["config"])
        data = {new: old.pop(key) for key, new in LEGACY_DATA_KEYS.items() if key in old}
        old.pop("cache", None)
        return from_dict(TrainConfig, old), from_dict(DataConfig, data)
    except ConfigError as err:
        raise UserError(f"{path}: the checkpoint's config is not valid here ({err})") from err
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: not a jersey-ray checkpoint (no configs: {err})") from err


@dataclass
class Trained:
    """A trained model ready for inference, and what it was trained on."""

    model: nn.Module
    train: TrainConfig
    data: DataConfig
    checkpoint: dict[str, Any]


def load_model(path: Path | str, device: torch.device | str = "cpu") -> Trained:
    """The model of a ``best.pt`` in eval mode on ``device``, with its configs."""
    ckpt = load_checkpoint(path)
    train, data = configs_of(ckpt, path)
    model = build_model(train.model, pretrained="none")
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{path}: weights do not fit model {train.model} ({err})") from err
    return Trained(model.to(device).eval(), train, data, ckpt)


def config_diff(saved: TrainConfig, cfg: TrainConfig) -> list[str]:
    """Keys that differ, ignoring where and how fast the run executes."""
    a, b = to_dict(saved), to_dict(cfg)
    return sorted(k for k in a if k not in RESUME_FREE and a[k] != b[k])


def read_resume(
    directory: Path, cfg: TrainConfig, data: DataConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(last, best) checkpoints of ``directory``, refusing other settings than ``cfg``/``data``."""
    last = load_checkpoint(directory / "last.pt")
    best = load_checkpoint(directory / "best.pt")
    saved_train, saved_data = configs_of(last, directory / "last.pt")
    diff = config_diff(saved_train, cfg)
    diff += [f"data.{k}" for k, v in to_dict(saved_data).items() if to_dict(data)[k] != v]
    if diff:
        raise UserError(
            f"{directory / 'last.pt'}: cannot resume, the config differs in {', '.join(diff)}; "
            "resume with the same settings or start a new run in another folder"
        )
    if last["epoch"] >= cfg.epochs:
        raise UserError(f"{directory}: the run already finished its {cfg.epochs} epochs")
    return last, best


def _restore_augment(generator: torch.Generator, rng: dict[str, Any], epoch: int) -> None:
    """The augmentation stream where it stopped; resumed on another kind of device (its state
    does not fit: a CUDA generator's is not a CPU one's), a new stream seeded from the run's
    own seed and the epoch, so the run stays deterministic but not bit-identical to one that
    never moved."""
    saved = rng.get("augment_device", generator.device.type)
    if saved == generator.device.type:
        generator.set_state(rng["augment"])
        return
    log.warning(
        "resumed on %s from a %s checkpoint: augmentation draws continue from a new seed",
        generator.device.type,
        saved,
    )
    generator.manual_seed(generator.initial_seed() + 7919 * epoch)


def restore(step: Step, state: RunState, last: dict[str, Any], best: dict[str, Any]) -> None:
    step.module.load_state_dict(last["model"])
    step.optimizer.load_state_dict(last["optimizer"])
    step.scheduler.load_state_dict(last["scheduler"])
    if step.scaler is not None and last["scaler"] is not None:
        step.scaler.load_state_dict(last["scaler"])
    rng = last["rng"]
    torch.set_rng_state(rng["torch"])
    if step.device.type == "cuda" and rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])
    state.shuffle.set_state(rng["shuffle"])
    _restore_augment(state.augment, rng, last["epoch"])
    state.epoch = last["epoch"]
    state.best_epoch = last["best"]["epoch"]
    state.best_metrics = dict(last["best"]["metrics"])
    state.best_model = {k: v.to(step.device) for k, v in best["model"].items()}
    state.history = [dict(row) for row in last["history"]]
