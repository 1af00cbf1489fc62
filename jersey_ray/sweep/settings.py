"""A sweep's settings, resolved once: the sweep file, the preset, the command line.

Order (later wins), for each of the three configs:

- :class:`~jersey_ray.config.TrainConfig`: defaults < the model's phase protocol < sweep file
  ``train`` < preset ``train`` < command line (``--set KEY=VALUE``, then ``--epochs``,
  ``--pretrained``; the Python API's ``overrides`` and options are this layer too);
- :class:`~jersey_ray.config.DataConfig`: defaults < sweep file ``data`` < preset ``data`` <
  command line (``--data``, ``--size``, ...);
- :class:`~jersey_ray.config.SweepSpec` (models, seeds, scheduler): the sweep file < preset <
  command line.

The built-in synthetic data (only without ``--data``) is what the data itself must be, not a
setting: the preset gives its style and size, the sweep file what it must cover (its numbers,
enough tracks of each), so there the sweep file's ``synth`` comes after the preset's.

:class:`Settings` holds the result and where every value came from; ``sweep.json`` records it
and every trial's ``config.json`` holds the trial's resolved configs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jersey_ray import cli
from jersey_ray.config import (
    DEFAULT_SIZE,
    DataConfig,
    Layer,
    SweepSpec,
    TrainConfig,
    layered,
    to_dict,
)
from jersey_ray.errors import UserError
from jersey_ray.models import get_spec, protocol
from jersey_ray.sweep import sweep_files
from jersey_ray.sweep.options import RunOptions

SYNTH_DIR = Path("results/data")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """Settings that differ between the demo (``--quick``) and a full run."""

    name: str
    """Shown when the sweep starts and recorded in ``sweep.json``."""
    description: str
    """One line: what the preset is for (printed when the sweep starts)."""
    synth: dict[str, Any]
    """Generator arguments of the built-in synthetic data (used when no ``--data`` is given)."""
    data: dict[str, Any] = field(default_factory=dict)
    """DataConfig overrides."""
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig overrides."""
    sweep: dict[str, Any] = field(default_factory=dict)
    """SweepSpec overrides (e.g. fewer seeds)."""


FULL = Preset(
    "full",
    description="the study's protocol",
    synth={"sequences": 1500, "frames": (4, 24), "sequences_per_track": 5.0},
)
# The CPU demo: a shape a from-scratch ResNet-18 learns in minutes on 2 cores (measured on 2
# idle cores: the six Phase B models at 0.48-0.73 test acc_number in 7.5 minutes, where 300
# whole-player sequences at 64x32 had stayed at the majority class): tight, clean number crops
# at 32x32 (digits legible, a cheap frame), many distinct players (one sequence each), balanced
# numbers, 3 frames, batch 64 (two 1-CPU trials share the cores best at this batch), one
# uniform learning rate raised for a backbone without an ImageNet start, 3 epochs (a curve), one
# seed.
QUICK = Preset(
    "quick",
    description="CPU demo: 32x32 frames, 3 per sequence, 3 epochs from scratch, 1 seed",
    synth={
        "sequences": 1600,
        "frames": (2, 4),
        "sequences_per_track": 1.0,
        "imbalance": 0.0,
        "crop": "number",
        "quality": "clean",
        "size": DEFAULT_SIZE,  # the player scene the number crops are cut from
    },
    data={"size": (32, 32), "max_frames": 3},
    train={
        "epochs": 3,
        "pretrained": "none",
        "batch_size": 64,
        "lr": 3e-3,
        "lr_backbone": 3e-3,
        "lr_temporal": 3e-3,
        "lr_heads": 3e-3,
    },
    sweep={"seeds": (42,)},
)
# What `make demo` runs where a CUDA GPU is visible: the study's full-size player crops
# (the report's frame size, 16 frames), from scratch (no download needed), enough epochs to learn
# them.
GPU_DEMO = Preset(
    "gpu-demo",
    description="GPU demo: the report's frame size, 12 epochs from scratch, 1 seed",
    synth=FULL.synth,
    train={
        "epochs": 12,
        "pretrained": "none",
        "lr": 3e-3,
        "lr_backbone": 1e-3,
        "lr_temporal": 3e-3,
        "lr_heads": 3e-3,
    },
    sweep={"seeds": (42,)},
)
PRESETS = {p.name: p for p in (FULL, QUICK, GPU_DEMO)}


def demo_preset(gpu: bool) -> Preset:
    """``--demo``: the GPU demo where a CUDA GPU is visible, else the CPU one."""
    return GPU_DEMO if gpu else QUICK


@dataclass(frozen=True)
class Settings:
    """One sweep's resolved settings."""

    spec: SweepSpec
    """The sweep with the preset's and the command line's models, seeds and scheduler."""
    data: DataConfig
    """The data settings of the sweep's one cache (root filled in once the data is known)."""
    train: dict[str, TrainConfig]
    """Each model's resolved TrainConfig (seed and grid axes are set per trial)."""
    overrides: dict[str, Any]
    """The TrainConfig keys every trial sets above its model's protocol (sweep file, preset,
    command line): the fixed part of Tune's parameter space."""
    preset: Preset
    sources: dict[str, str]
    """``train.<key>`` / ``data.<key>`` -> the layer that set it (unlisted: the default)."""

    def record(self) -> dict[str, Any]:
        """The resolved settings as ``sweep.json`` stores them."""
        return {
            "preset": self.preset.name,
            "train": {model: to_dict(cfg) for model, cfg in self.train.items()},
            "data": to_dict(self.data),
            "sources": self.sources,
            "order": "defaults < model protocol < sweep file < preset < command line",
        }


def load_sweep(name: str) -> SweepSpec:
    """Sweep ``name`` (``<name>.py`` on the sweeps search path) or a path to a ``.py`` file:
    :mod:`jersey_ray.sweep.sweep_files` says where it is looked for."""
    return sweep_files.load(name)


def available_sweeps() -> list[str]:
    """Every sweep name on the sweeps search path."""
    return sweep_files.available()


def _cli_layers(opts: RunOptions) -> tuple[dict, dict, dict]:
    """(train, data, sweep) overrides the command line (or the API's options) gives: only what
    was given. ``--set`` keys come first, the named options above them (they cannot clash:
    :func:`~jersey_ray.sweep.options.check_overrides`)."""
    named = {"epochs": opts.epochs, "pretrained": opts.pretrained, "profile_steps": opts.profile}
    train = {**opts.overrides, **{k: v for k, v in named.items() if v is not None}}
    sweep = {
        "models": opts.models,
        "seeds": opts.seeds,
        "scheduler": opts.scheduler,
        "grace_period": opts.grace_period,
    }
    data = cli.data_overrides(opts)  # type: ignore[arg-type]  # the data flags' attributes
    if opts.data is not None:
        data["root"] = str(opts.data)
    return train, data, {k: v for k, v in sweep.items() if v is not None}


def _sources(prefix: str, sources: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}.{k}": v for k, v in sources.items()}


def resolve(spec: SweepSpec, preset: Preset, opts: RunOptions) -> Settings:
    """The sweep's settings in the documented order; unknown ids, unknown or clashing
    ``--set`` keys and bad values fail here, before any data is generated or any cache built."""
    cli_train, cli_data, cli_sweep = _cli_layers(opts)
    clash = sorted(set(opts.overrides) & set(spec.axes))
    if clash:
        raise UserError(
            f"--set/overrides {', '.join(clash)}: an axis of sweep {spec.name!r} (the sweep file "
            "gives its values); drop it, or edit the sweep's axes"
        )
    try:
        spec = dataclasses.replace(spec, **{**preset.sweep, **cli_sweep})
    except TypeError as err:  # a preset naming a field SweepSpec lacks: a programming error
        raise RuntimeError(f"preset {preset.name}: {err}") from err
    for model in spec.models:
        get_spec(model)
    layers: list[Layer] = [
        ("sweep file", spec.train),
        (f"preset {preset.name}", preset.train),
        ("command line", cli_train),
    ]
    overrides: dict[str, Any] = {}
    for _, values in layers:
        overrides.update(values)
    train, sources = {}, {}
    for model in spec.models:
        # layer by layer first: a bad key or value is reported with the layer that gave it
        _, src = layered(TrainConfig, [("model protocol", protocol(model)), *layers])
        train[model] = trial_config({**overrides, "model": model})
        sources.update(_sources("train", src))
    data, data_src = layered(
        DataConfig,
        [
            ("sweep file", spec.data),
            (f"preset {preset.name}", preset.data),
            ("command line", cli_data),
        ],
    )
    sources.update(_sources("data", data_src))
    return Settings(spec, data, train, overrides, preset, dict(sorted(sources.items())))


def trial_config(params: dict[str, Any]) -> TrainConfig:
    """A trial's TrainConfig from Tune's parameters (model, seed, axes and the keys every trial
    shares): defaults < its model's phase protocol < those parameters."""
    layers = [("model protocol", protocol(params["model"])), ("sweep", params)]
    return layered(TrainConfig, layers)[0]


def synthetic_root(settings: Settings) -> Path:
    """Generate the built-in synthetic data set the preset and the sweep describe once (the
    preset's generator arguments, then the sweep file's: a sweep knows what data it needs, e.g.
    every number 0-99 and enough tracks of each); later runs reuse it.

    The generator writes to a temporary folder and renames it when complete, so an existing
    folder is a whole data set.
    """
    import hashlib

    from jersey_ray.data import synth

    params = {**settings.preset.synth, **settings.spec.synth}
    params.setdefault("size", settings.data.size)  # player crops: rendered at the frame size
    tag = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:6]
    root = SYNTH_DIR / f"synthetic-{params.get('sequences', 'default')}-{tag}"
    if root.is_dir():
        log.info("data: reusing the built-in synthetic data set in %s", root)
        return root
    log.info("data: no --data given, generating the built-in synthetic data set in %s", root)
    synth.generate(root, seed=0, **params)
    return root
