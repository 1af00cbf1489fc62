"""What a sweep run is asked for, from the command line or from Python, as one frozen dataclass.

``python -m jersey_ray.sweep`` builds :class:`RunOptions` from its parsed arguments
(argparse lives only there); :func:`jersey_ray.sweep.run` builds it from keyword arguments
(:meth:`RunOptions.from_kwargs`), which go through the same text parsers as the flags, so a
value means (and fails) the same way in both. Each field is the flag of the same name
(``gpus_per_trial`` is ``--gpus-per-trial``); ``overrides`` is ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jersey_ray import cli
from jersey_ray.errors import UserError

RUNNER_KEYS = {
    "model": "--models",
    "seed": "--seeds",
    "epochs": "--epochs",
    "pretrained": "--pretrained",
    "profile_steps": "--profile",
    # the runner sets these from the trial's resources
    "device": "--gpus-per-trial",
    "gpu_fraction": "--gpus-per-trial",
}
"""TrainConfig keys a sweep sets through its own option (``--set`` / ``overrides`` refuse them;
the data keys too: :data:`jersey_ray.cli.DATA_FLAGS`)."""


@dataclass(frozen=True)
class RunOptions:
    """One sweep run's options; None means "not given" (the sweep file and preset decide)."""

    data: Path | None = None
    """Data root (``ROOT/<jersey>/<track>/<seq>/*.jpg``); None: the built-in synthetic data."""
    quick: bool = False
    """The CPU demo preset: a few minutes on 2 cores."""
    demo: bool = False
    """The demo: ``quick`` on a CPU, full-size synthetic data where a CUDA GPU is visible."""
    models: tuple[str, ...] | None = None
    """Model ids (default: the sweep's)."""
    seeds: tuple[int, ...] | None = None
    """Seeds (default: the sweep's)."""
    epochs: int | None = None
    """Epochs per trial."""
    pretrained: str | None = None
    """``none``, ``imagenet`` or a weights file."""
    scheduler: str | None = None
    """``fifo`` or ``asha`` (default: the sweep's)."""
    profile: int | None = None
    """torch.profiler steps recorded in every trial."""
    grace_period: int | None = None
    """ASHA's first rung in epochs."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Other TrainConfig keys every trial sets (``--set KEY=VALUE``), the command-line layer."""
    size: tuple[int, int] | None = None
    """Letterbox size (height, width)."""
    max_frames: int | None = None
    """Frames per sequence, the anchor included."""
    split: str | None = None
    """Split mode: ``tracks`` or ``heldout``."""
    split_seed: int | None = None
    """Seed of the track split."""
    heldout: tuple[str, ...] | None = None
    """Numbers held out of training (implies ``split="heldout"``)."""
    numbers: tuple[str, ...] | None = None
    """Keep only these jersey numbers."""
    gpus_per_trial: float | None = None
    """GPU fraction per trial, at most 1 (default: fit as many trials as the memory allows)."""
    cpus_per_trial: float | None = None
    """CPUs per trial (default: fill the GPU slots)."""
    max_concurrent: int | None = None
    """Cap on trials at once."""
    max_failures: int = 2
    """Retries per trial."""
    resume: bool = False
    """Continue an interrupted sweep."""
    address: str | None = None
    """Ray cluster address (``auto`` or ``HOST:PORT``; None: a local Ray)."""
    storage: str | None = None
    """Results root, a path or URI (default: ``results/runs``)."""
    name: str | None = None
    """Experiment name (default: the sweep's name)."""
    verbose: bool = False
    """Tune's own status table instead of one line per trial and a progress bar."""
    mlflow: str | None = None
    """MLflow tracking URI or folder."""
    wandb: str | None = None
    """Weights & Biases project."""

    @classmethod
    def from_kwargs(cls, **given: Any) -> RunOptions:
        """Options from Python keyword arguments: the flags' names with ``_`` for ``-``; text
        values go through the flags' parsers, sequences are accepted where a flag takes a
        comma-separated list. An unknown name or a bad value is a :class:`UserError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UserError(
                f"unknown sweep option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        values = {key: _normalize(key, value) for key, value in given.items()}
        if values.get("quick") and values.get("demo"):
            raise UserError("quick and demo are two presets: choose one")
        return cls(**values)


def model_ids(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated model ids, ``a,b`` -> ``("a", "b")`` (at least one)."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected model ids like basic_r18,seq_bgru_mp, got {text!r}"
        )
    return values


def check_overrides(overrides: Mapping[str, Any], where: str = "--set") -> dict[str, Any]:
    """The TrainConfig overrides, refusing keys the sweep sets through its own options."""
    for key in overrides:
        flag = RUNNER_KEYS.get(key) or cli.DATA_FLAGS.get(key)
        if flag is None:
            continue
        if where == "--set":
            raise UserError(f"--set {key}: use {flag} instead")
        raise UserError(f"overrides[{key!r}]: use the option {_kwarg(flag)}= instead")
    return dict(overrides)


def _kwarg(flag: str) -> str:
    return {"--heldout": "heldout"}.get(flag, flag.lstrip("-").replace("-", "_"))


def _trackers(name: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        from jersey_ray.sweep import trackers  # its packages are checked only when asked for

        return getattr(trackers, name)(text)

    return parse


_TEXT: dict[str, Callable[[str], Any]] = {
    "models": model_ids,
    "seeds": cli.ints,
    "epochs": cli.positive_int,
    "profile": cli.positive_int,
    "grace_period": cli.positive_int,
    "max_frames": cli.positive_int,
    "max_concurrent": cli.positive_int,
    "size": cli.size,
    "heldout": cli.numbers,
    "numbers": cli.numbers,
    "mlflow": _trackers("mlflow_uri"),
    "wandb": _trackers("wandb_project"),
}
"""Options whose Python values are checked by the flag's own parser (sequences are joined into
the flag's text first)."""
_JOIN = {"size": "x"}
_BOOLS = ("quick", "demo", "resume", "verbose")
_NUMBERS: dict[str, Callable[[Any], Any]] = {
    "gpus_per_trial": float,
    "cpus_per_trial": float,
    "max_failures": int,
    "split_seed": int,
}


def _normalize(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise UserError(f"{key}={value!r}: expected True or False")
        return value
    if key == "overrides":
        if not isinstance(value, Mapping):
            raise UserError(f"overrides={value!r}: expected a dict of TrainConfig keys")
        return check_overrides(value, where="overrides")
    if key == "data":
        return Path(value)
    if key in _NUMBERS:
        try:
            return _NUMBERS[key](value)
        except (TypeError, ValueError):
            raise UserError(f"{key}={value!r}: expected a number") from None
    parse = _TEXT.get(key)
    if parse is None:
        return str(value)
    text = value
    if not isinstance(value, str):
        items = value if isinstance(value, (list, tuple)) else [value]
        text = _JOIN.get(key, ",").join(str(v) for v in items)
    try:
        return parse(text)
    except argparse.ArgumentTypeError as err:
        raise UserError(f"{key}={value!r}: {err}") from None
