"""Frozen configuration dataclasses with strict loading, and the one way settings are layered.

:class:`DataConfig` defines a cache (it is the cache key, stored whole in the manifest);
:class:`TrainConfig` defines how a trial trains; :class:`SweepSpec` is a sweep file. Every
default is written once, here. Settings are resolved once, by :func:`layered`, in one order
(later wins): defaults < a model's phase protocol < sweep file < preset < command line. Every
run saves its resolved configs as JSON beside its results and inside its checkpoints;
:func:`from_dict` restores them and rejects unknown keys, so a typo in a sweep file or a stale
checkpoint fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from jersey_ray.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A configuration value or key is invalid."""


DEFAULT_SIZE: tuple[int, int] = (192, 96)
"""The report's letterbox size (height, width) for whole-player crops; written here once."""

SPLIT_MODES = ("tracks", "heldout")
"""``tracks``: train/val/test by track. ``heldout``: the same, plus an ``unseen`` split holding
every track of the held-out numbers (two-digit generalization)."""


@dataclass(frozen=True)
class DataConfig:
    """Everything that defines a cache, and nothing else: it is the cache key.

    :func:`jersey_ray.cache.plan.cache_name` derives the cache's folder name from it and the
    fingerprint hashes it with the data's file list; the manifest stores it whole, and a trial
    reads it from there (a trial never takes data settings from anywhere else).
    """

    root: str = ""
    """Data root in the reference layout ``ROOT/<jersey>/<track>/<sequence>/*.jpg``."""
    size: tuple[int, int] = DEFAULT_SIZE
    """Letterboxed frame size, height x width."""
    max_frames: int = 16
    """Frames per sequence: the anchor plus up to ``max_frames - 1`` evenly spaced others."""
    split: str = "tracks"
    """Split mode: ``tracks`` or ``heldout`` (see :data:`SPLIT_MODES`)."""
    split_seed: int = 42
    """Seed of the track-level split (and of the automatic held-out choice)."""
    heldout_numbers: tuple[str, ...] = ()
    """``heldout`` mode: the numbers whose tracks all go to ``unseen`` (empty: chosen
    automatically; the manifest stores the numbers chosen)."""
    numbers: tuple[str, ...] = ()
    """Keep only these jersey folders (empty: all)."""

    def __post_init__(self) -> None:
        _check_choice("split", self.split, SPLIT_MODES)
        if self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}")
        if min(self.size) < 8:
            raise ConfigError(f"size must be at least 8x8, got {self.size}")
        for name in ("heldout_numbers", "numbers"):
            bad = [n for n in getattr(self, name) if not _is_number(n)]
            if bad:
                raise ConfigError(f"{name}: {bad} are not 1-2 digit jersey numbers such as 7 or 07")
        if self.heldout_numbers and self.split != "heldout":
            raise ConfigError("heldout_numbers needs split 'heldout'")

    @property
    def size_text(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


def _is_number(text: Any) -> bool:
    return isinstance(text, str) and text.isascii() and text.isdigit() and 1 <= len(text) <= 2


@dataclass(frozen=True)
class TrainConfig:
    """How one trial trains: the flat key space is also Tune's parameter space. Data settings
    live in :class:`DataConfig` (the cache's manifest), never here."""

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
    """``uniform`` (one LR, Phase 0) or ``discriminative`` (per-group LRs, Phases A and B); a
    model's phase sets it (:func:`jersey_ray.models.protocol`)."""
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
    """Backbone weights: ``imagenet`` (torchvision/timm cache), ``none`` or a file path; or a
    run folder, trial folder or checkpoint of this project to fine-tune from (its matching
    weights; a run's trial chosen on validation: :mod:`jersey_ray.models.warmstart`)."""
    augment: bool = True
    """Apply the reference's per-frame train augmentations (on the device)."""
    splice: float = 0.0
    """Digit splice (:mod:`jersey_ray.cache.splice`): the probability that a two-digit training
    sequence of a batch is replaced by the left part of it and the right part of another
    (labelled by the composed number, never a held-out one); 0 (off) keeps the report's
    protocol. Train split only."""
    deterministic: bool = True
    """Deterministic kernels (cuDNN deterministic, no autotuning, torch's deterministic
    algorithms where they exist), as the reference set; off trades reproducibility for speed."""
    precision: str = "auto"
    """``auto`` (GPU: bf16 where supported, else fp16; CPU: fp32), ``fp32``, ``bf16``, ``fp16``."""
    compile: bool = False
    """Wrap the model in ``torch.compile``."""
    cuda_graphs: bool = False
    """Replay the CNN's training forward and backward as CUDA graphs (fewer kernel launches;
    for the launch-bound single-frame Phase 0 models, on CUDA only). Full batches replay the
    graph; the last, smaller batch of an epoch runs eagerly. With ``compile`` this is
    ``torch.compile(mode="reduce-overhead")``, else a captured backbone."""
    channels_last: bool = True
    """Use channels-last memory format for the CNN (faster with tensor cores)."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu`` or ``cuda``."""
    gpu_fraction: float = 0.0
    """Cap this process's CUDA memory to this fraction of the GPU (0: no cap)."""
    profile_steps: int = 0
    """Record this many training steps with ``torch.profiler`` in the first epoch a run
    trains (after a few warm-up steps), as a trace in ``<run>/profile/`` (0: off)."""

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, ("adam", "adamw"))
        _check_choice("lr_scheme", self.lr_scheme, ("uniform", "discriminative"))
        _check_choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.profile_steps < 0:
            raise ConfigError(f"profile_steps must be >= 0, got {self.profile_steps}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if not 0.0 <= self.splice <= 1.0:
            raise ConfigError(f"splice must be in [0, 1], got {self.splice}")
        if not 0.0 <= self.gpu_fraction <= 1.0:
            raise ConfigError(f"gpu_fraction must be in [0, 1], got {self.gpu_fraction}")


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


def check_keys(cls: type, keys: Iterable[str], where: str = "") -> None:
    """Unknown keys of dataclass ``cls`` are a ConfigError listing the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise ConfigError(
            f"{where}unknown {cls.__name__} key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(known))}"
        )


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict; unknown keys and wrongly typed values are errors."""
    check_keys(cls, data)
    hints = typing.get_type_hints(cls)
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
    # T is always one of the config dataclasses; the TypeVar does not say so
    merged = {**dataclasses.asdict(cfg), **changes}  # type: ignore[call-overload]
    return from_dict(type(cfg), merged)


Layer = tuple[str, Mapping[str, Any]]
"""``(name, overrides)``: one source of settings, e.g. ``("sweep file", {"epochs": 10})``."""


def layered(cls: type[T], layers: Sequence[Layer]) -> tuple[T, dict[str, str]]:
    """``cls``'s defaults with every layer's overrides applied in order (later layers win).

    Returns the config and, for every key a layer set, that layer's name, so a record of the
    run can say where each value came from. An unknown key is an error naming its layer.
    """
    cfg = cls()
    sources: dict[str, str] = {}
    for name, overrides in layers:
        try:
            cfg = replace(cfg, **overrides)
        except ConfigError as err:
            raise ConfigError(f"{name}: {err}") from None
        sources.update(dict.fromkeys(overrides, name))
    return cfg, dict(sorted(sources.items()))


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
    """TrainConfig overrides shared by every trial (a model's phase protocol comes first)."""
    data: dict[str, Any] = field(default_factory=dict)
    """DataConfig overrides (the sweep's one cache), e.g. ``{"split": "heldout"}``."""
    synth: dict[str, Any] = field(default_factory=dict)
    """Generator arguments of the built-in synthetic data this sweep needs when no ``--data``
    is given (e.g. the numbers it must cover), over the preset's (its style and size)."""
    axes: dict[str, Any] = field(default_factory=dict)
    """Extra axes over TrainConfig keys: a tuple is a grid (``{"lr": (1e-3, 3e-4)}``), a Tune
    domain is sampled (``{"lr": tune.loguniform(1e-4, 1e-2)}``, with ``search`` random or
    optuna)."""
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
    search: str = "grid"
    """``grid`` (every combination of models and tuple axes), ``random`` (``num_samples`` draws
    of the sampled axes, each crossed with the models and tuple axes) or ``optuna`` (Optuna's
    TPE proposes ``num_samples`` configurations, the model among them; extra ``[optuna]``).
    Every configuration runs all the seeds and a searcher learns from their seed mean
    (:mod:`jersey_ray.sweep.search`)."""
    num_samples: int = 1
    """``random``/``optuna``: configurations to draw (each runs every seed); 1 for ``grid``."""
    max_concurrent: int | None = None
    """``random``/``optuna``: configurations in flight at once (each with all its seeds); None:
    as many as the trial slots hold. Trials at once: the command line's ``--max-concurrent``."""

    def __post_init__(self) -> None:
        _check_choice("scheduler", self.scheduler, ("fifo", "asha"))
        if not self.models:
            raise ConfigError(f"sweep {self.name!r} declares no models")
        if not self.seeds:
            raise ConfigError(f"sweep {self.name!r} declares no seeds")
        check_keys(TrainConfig, [*self.train, *self.axes], f"sweep {self.name!r}: ")
        check_keys(DataConfig, self.data, f"sweep {self.name!r}: ")
        if "root" in self.data:
            raise ConfigError(f"sweep {self.name!r}: the data root comes from --data, not the file")
        clash = sorted(set(self.axes) & {"model", "seed"})
        if clash:
            raise ConfigError(f"sweep {self.name!r}: use models/seeds, not axes, for {clash}")
        _check_search(self)

    @property
    def sampled(self) -> dict[str, Any]:
        """The axes that are sampled (Tune domains), not grids."""
        return {k: v for k, v in self.axes.items() if not isinstance(v, (tuple, list))}

    @property
    def configurations(self) -> int:
        """Configurations the sweep runs (each with every seed): the grid's combinations of
        models and tuple axes, times ``num_samples`` draws for ``random``; ``num_samples`` for
        ``optuna`` (at most: a repeated proposal is not run twice)."""
        if self.search == "optuna":
            return self.num_samples
        n = len(self.models) * self.num_samples
        for key, values in self.axes.items():
            if key not in self.sampled:
                n *= len(values)
        return n


SEARCHES = ("grid", "random", "optuna")


def _check_search(spec: SweepSpec) -> None:
    """One-line errors for a space the search cannot run (before any data work)."""
    where = f"sweep {spec.name!r}"
    _check_choice("search", spec.search, SEARCHES)
    hints = typing.get_type_hints(TrainConfig)
    for key, values in spec.axes.items():
        _check_axis(where, key, values, hints[key])
    sampled = sorted(spec.sampled)
    if spec.num_samples < 1:
        raise ConfigError(f"{where}: num_samples must be >= 1, got {spec.num_samples}")
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise ConfigError(f"{where}: max_concurrent must be >= 1, got {spec.max_concurrent}")
    if spec.search == "grid":
        if sampled:
            raise ConfigError(
                f"{where}: axes {', '.join(sampled)} are sampled (Tune domains) but search is "
                "'grid'; set search='random' or 'optuna', or give them as tuples"
            )
        if spec.num_samples != 1 or spec.max_concurrent is not None:
            raise ConfigError(
                f"{where}: num_samples/max_concurrent need search='random' or 'optuna' (a grid "
                "runs every combination once; cap trials at once with --max-concurrent)"
            )
        return
    if not sampled:
        raise ConfigError(
            f"{where}: search {spec.search!r} needs a sampled axis, e.g. "
            "axes={'lr': tune.loguniform(1e-4, 1e-2)}"
        )
    if spec.search == "optuna":
        grids = sorted(set(spec.axes) - set(sampled))
        if grids:
            raise ConfigError(
                f"{where}: Optuna samples every axis; give {', '.join(grids)} as "
                "tune.choice([...]) instead of a tuple (a grid)"
            )
        if importlib.util.find_spec("optuna") is None:
            raise ConfigError(f"{where}: search 'optuna' needs Optuna: pip install -e .[optuna]")


def _check_axis(where: str, key: str, values: Any, hint: Any) -> None:
    """A tuple (grid) of values of the key's type, or a Tune domain it can take."""
    if isinstance(values, (tuple, list)):
        if not values:
            raise ConfigError(f"{where}: axis {key} is an empty grid")
        for value in values:
            _coerce(hint, value, f"{where}: axis {key}")
        return
    from ray.tune.search.sample import Categorical, Domain, Float, Integer

    if not isinstance(values, Domain):
        raise ConfigError(
            f"{where}: axis {key} must be a tuple (a grid) or a Tune domain such as "
            f"tune.loguniform(1e-4, 1e-2), got {values!r}"
        )
    if isinstance(values, (Float, Integer)):
        numeric = (int, float) if isinstance(values, Integer) else (float,)
        if hint not in numeric:
            kind = "an integer" if isinstance(values, Integer) else "a float"
            raise ConfigError(
                f"{where}: axis {key} samples {kind} but {key} is {_type_name(hint)}; use "
                f"tune.choice([...]) or a tuple"
                + (" (or tune.randint for an int)" if hint is int else "")
            )
    elif isinstance(values, Categorical):
        for value in values.categories:
            _coerce(hint, value, f"{where}: axis {key}")
    else:
        raise ConfigError(f"{where}: axis {key}: unsupported Tune domain {values!r}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
