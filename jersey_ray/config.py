"""Frozen configuration dataclasses with strict loading.

Every run saves its full :class:`TrainConfig` as JSON beside its results and inside its
checkpoints; :func:`from_dict` restores it and rejects unknown keys, so a typo in a sweep file
or a stale checkpoint fails loudly instead of being ignored. Defaults equal the reference
study's protocol (report-spec section 3); sweeps override them in ``sweeps/``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jersey_ray.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A configuration value or key is invalid."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything one trial needs; the flat key space is also Tune's parameter space."""

    model: str = "basic_r18"
    """Model id from the registry (``python -m jersey_ray.models`` lists them)."""
    seed: int = 42
    """Seed for initialisation, shuffling and augmentation."""
    epochs: int = 30
    """Training epochs."""
    batch_size: int = 64
    """Training batch size (sequences, or anchor frames for Phase 0)."""
    eval_batch_size: int = 256
    """Batch size for validation and test (does not change any metric)."""
    optimizer: str = "adam"
    """``adam`` (coupled L2 weight decay, as the report) or ``adamw``."""
    lr_scheme: str = "uniform"
    """``uniform`` (one LR, Phase 0) or ``discriminative`` (per-group LRs, Phases A and B)."""
    lr: float = 1e-3
    """Learning rate of the uniform scheme."""
    lr_backbone: float = 1e-4
    """Discriminative scheme: LR of the CNN backbone."""
    lr_temporal: float = 3e-4
    """Discriminative scheme: LR of the recurrent and attention modules."""
    lr_heads: float = 3e-4
    """Discriminative scheme: LR of the two classification heads."""
    weight_decay: float = 1e-4
    """Weight decay (L2 for Adam, decoupled for AdamW)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables clipping."""
    warmup_epochs: int = 1
    """Epochs of linear warm-up before the per-step cosine decay to zero."""
    loss_weights: tuple[float, float] = (1.0, 1.0)
    """Weights of the tens and ones cross-entropy terms."""
    pretrained: str = "imagenet"
    """Backbone weights: ``imagenet`` (local torchvision/timm cache), ``none`` or a file path."""
    augment: bool = True
    """Apply the reference's per-frame train augmentations (on the device)."""
    precision: str = "auto"
    """``auto`` (GPU: bf16 where supported, else fp16; CPU: fp32), ``fp32``, ``bf16``, ``fp16``."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    channels_last: bool = True
    """Use channels-last memory format for the CNN (faster with tensor cores)."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu`` or ``cuda``."""
    gpu_fraction: float = 0.0
    """Cap this process's CUDA memory to this fraction of the GPU (0: no cap)."""
    data_root: str = ""
    """Raw data root in the reference layout (informational once a cache is built)."""
    cache: str = ""
    """Preprocessed Parquet cache (local path or pyarrow URI) the trial reads."""
    size: tuple[int, int] = (192, 96)
    """Letterboxed frame size, height x width."""
    max_frames: int = 16
    """Frames per sequence: the anchor plus up to ``max_frames - 1`` evenly spaced others."""
    split_seed: int = 42
    """Seed of the track-level train/val/test split."""
    numbers: tuple[str, ...] = ()
    """Restrict the data to these jersey strings (empty: all)."""

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, ("adam", "adamw"))
        _check_choice("lr_scheme", self.lr_scheme, ("uniform", "discriminative"))
        _check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("epochs", "batch_size", "eval_batch_size", "max_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if not 0.0 <= self.gpu_fraction <= 1.0:
            raise ConfigError(f"gpu_fraction must be in [0, 1], got {self.gpu_fraction}")
        if min(self.size) < 8:
            raise ConfigError(f"size must be at least 8x8, got {self.size}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Turn JSON values (lists) back into the field's declared type (tuples)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, key) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{key} must have {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, key) for a, v in zip(args, value, strict=True))
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be int, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict; unknown keys and wrongly typed values are errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(known))}"
        )
    return cls(**{k: _coerce(hints[k], v, k) for k, v in data.items()})


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def from_json(cls: type[T], text: str) -> T:
    return from_dict(cls, json.loads(text))


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` with the same strictness as :func:`from_dict`."""
    merged = {**dataclasses.asdict(cfg), **changes}
    return from_dict(type(cfg), merged)


@dataclass(frozen=True)
class SweepSpec:
    """A sweep declared as data in ``sweeps/<name>.py`` (as ``SWEEP = SweepSpec(...)``)."""

    name: str
    """Sweep name; also the default experiment folder under ``results/runs/``."""
    phase: str
    """Phase label used by the collector for tables: ``phase0``, ``phaseA``, ``phaseB`` or free."""
    models: tuple[str, ...]
    """Model ids (grid axis)."""
    seeds: tuple[int, ...] = (42, 123, 456, 789, 2024)
    """Seeds (grid axis); the tables aggregate over them."""
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig overrides shared by every trial (e.g. the LR scheme)."""
    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Extra grid axes over TrainConfig keys, e.g. ``{"lr": (1e-3, 3e-4)}``."""
    scheduler: str = "fifo"
    """``fifo`` (every trial runs to its last epoch) or ``asha`` (prunes whole configurations)."""
    grace_period: int = 5
    """ASHA: first rung, in epochs."""
    reduction_factor: int = 3
    """ASHA: keep the top 1/reduction_factor of configurations at each rung."""
    reference: str = ""
    """Model id the table compares against, or ``best:<phase>`` (that phase's best on val)."""
    description: str = ""
    """One line shown in the table header and the results index."""

    def __post_init__(self) -> None:
        _check_choice("scheduler", self.scheduler, ("fifo", "asha"))
        if not self.models:
            raise ConfigError(f"sweep {self.name!r} declares no models")
        if not self.seeds:
            raise ConfigError(f"sweep {self.name!r} declares no seeds")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        bad = sorted((set(self.train) | set(self.axes)) - known)
        if bad:
            raise ConfigError(
                f"sweep {self.name!r}: unknown TrainConfig key(s) {', '.join(bad)}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        clash = sorted(set(self.axes) & {"model", "seed"})
        if clash:
            raise ConfigError(f"sweep {self.name!r}: use models/seeds, not axes, for {clash}")
