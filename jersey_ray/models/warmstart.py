"""Fine-tuning from a run or checkpoint of this project: ``pretrained`` naming one.

``TrainConfig.pretrained`` (``--pretrained``) is ``imagenet``, ``none``, a backbone state-dict
file, or (this module) a source of this project:

- a checkpoint file of a trial (``best.pt``/``last.pt``: a dict with ``model`` and ``train``);
- a trial folder (its ``best.pt``, or its latest ``checkpoint_*/best.pt`` under Tune);
- a sweep's run folder (``results/runs/<name>``, with ``sweep.json``): the trial chosen on
  validation, by the product's one chooser (:func:`jersey_ray.results.runs.choose_on_validation`:
  the highest best val acc_number, never a test metric), among the trials of the model being
  built when the run has any, else among all its trials.

The model is built without weights and every parameter and buffer whose name and shape match
the source's is copied (the rest keep their initialisation and are counted in a log line), so a
model can start from a related model (e.g. its backbone and recurrent layer). A source that fits
fewer than half of the model's tensors is a one-line
:class:`~jersey_ray.models.backbones.WeightsError`. The training run that follows is a new run
(optimizer, schedule and epochs start afresh): this is a warm start, not a resume.

This is the synthetic-to-real recipe of issue 20 (Bhargavi et al. 2022, arXiv 2203.00734:
pre-training on rendered numbers helped rare numbers by about 18 points): train a sweep on the
built-in synthetic data, then ``--pretrained results/runs/<that sweep>`` on the real crops.
Which numbers the source trained on is read back from its checkpoint (:func:`source_data`), so
the held-out table can mark rows that saw renders of the held-out numbers.

Relative paths are read from the working directory, or from the one a Tune trial started in
(Tune moves a trial into its own folder and keeps the original in ``TUNE_ORIG_WORKING_DIR``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jersey_ray.models.backbones import WeightsError

log = logging.getLogger(__name__)

BUILT_IN = ("imagenet", "none")
MIN_SHARE = 0.5
"""At least this share of the model's tensors must match the source (a few shared head shapes
between unrelated models are no warm start)."""


def _path(pretrained: str) -> Path:
    path = Path(pretrained)
    if not path.is_absolute() and not path.exists():
        origin = os.environ.get("TUNE_ORIG_WORKING_DIR")
        if origin and (Path(origin) / path).exists():
            return Path(origin) / path
    return path


def _is_checkpoint(path: Path) -> bool:
    if not path.is_file() or path.suffix not in (".pt", ".pth"):
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not ours to judge here: the backbone loader reports unreadable files
        return False
    return isinstance(state, dict) and "model" in state and ("train" in state or "config" in state)


def is_project_source(pretrained: str) -> bool:
    """Whether ``pretrained`` names a run folder, trial folder or checkpoint of this project."""
    if pretrained in BUILT_IN:
        return False
    path = _path(pretrained)
    return path.is_dir() or _is_checkpoint(path)


def resolve_checkpoint(pretrained: str, model_id: str | None = None) -> Path:
    """The checkpoint file ``pretrained`` names (see the module docstring)."""
    path = _path(pretrained)
    if path.is_file():
        return path
    if (path / "sweep.json").is_file():
        from jersey_ray.results.runs import chosen_checkpoint, read_run

        run = read_run(path)
        mine = [t for t in run.trials if t.model == model_id]
        trial, found = chosen_checkpoint(dataclasses.replace(run, trials=mine) if mine else run)
        log.info("pretrained: %s, the trial chosen on validation in %s", trial.dir, path)
        return found
    if (path / "best.pt").is_file():
        return path / "best.pt"
    checkpoints = sorted(path.glob("checkpoint_*/best.pt"))
    if checkpoints:
        return checkpoints[-1]
    raise WeightsError(
        f"{path}: pretrained names a folder with no sweep.json, best.pt or checkpoint_*/best.pt; "
        "give a run folder (results/runs/<name>), a trial folder or a checkpoint file"
    )


def load_matching(model: nn.Module, state: dict[str, Any], source: Path) -> tuple[int, int]:
    """Copy every tensor of ``state`` whose name and shape match ``model``'s; returns (copied,
    the model's tensors). Fewer than :data:`MIN_SHARE` of them is a WeightsError."""
    own = model.state_dict()
    matching = {
        k: v
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape
    }
    if len(matching) < MIN_SHARE * len(own):
        raise WeightsError(
            f"{source}: only {len(matching)} of the model's {len(own)} weights fit this "
            "checkpoint (another architecture); start from a run of the same or a related "
            "model, or pass --pretrained none"
        )
    model.load_state_dict(matching, strict=False)
    return len(matching), len(own)


def warm_start(model: nn.Module, model_id: str, pretrained: str) -> nn.Module:
    """``model`` (built without weights) with the matching weights of ``pretrained``."""
    from jersey_ray.train.checkpoint import load_checkpoint

    path = resolve_checkpoint(pretrained, model_id)
    ckpt = load_checkpoint(path)
    copied, total = load_matching(model, ckpt["model"], path)
    level = logging.INFO if copied == total else logging.WARNING
    log.log(level, "pretrained: %d of %d tensors of %s from %s", copied, total, model_id, path)
    return model


def source_data(pretrained: str, model_id: str | None = None) -> Any:
    """The DataConfig the source was trained on (None if it cannot be read)."""
    from jersey_ray.errors import UserError
    from jersey_ray.train.checkpoint import configs_of, load_checkpoint

    try:
        path = resolve_checkpoint(pretrained, model_id)
        return configs_of(load_checkpoint(path), path)[1]
    except UserError:
        return None
