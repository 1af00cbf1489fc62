"""The steps from resolved settings to a running sweep, shared by ``python -m jersey_ray.sweep``
and the Python API (:func:`jersey_ray.sweep.run`).

Every cheap check comes first, for every sweep asked for (:func:`plan_sweeps`: the data folder,
the GPU share, the experiment folders, the models and their weights); only then is data
generated, a cache built and a sweep run (:func:`start`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jersey_ray.config import replace
from jersey_ray.errors import UserError
from jersey_ray.sweep import preflight
from jersey_ray.sweep.options import RunOptions
from jersey_ray.sweep.settings import FULL, QUICK, Preset, Settings, demo_preset, synthetic_root

RESULTS_DIR = Path("results")
"""Where a sweep's table goes: ``results/<experiment name>/``."""


@dataclass(frozen=True)
class Planned:
    """One sweep, checked and ready to run."""

    settings: Settings
    """Its resolved settings (the data root filled in by :func:`start`)."""
    name: str
    """The experiment name (``--name``, else the sweep's)."""
    exp_path: str
    """The experiment folder: ``<storage>/<name>`` (a path or URI)."""
    n_params: dict[str, int]
    """Each model's parameter count (built once on the driver)."""

    @property
    def out(self) -> Path:
        """The folder of its table, summary and figures."""
        return RESULTS_DIR / self.name


def gpus_here() -> bool:
    """Whether this machine has a CUDA GPU (imports torch)."""
    import torch

    return torch.cuda.is_available()


def choose_preset(opts: RunOptions) -> Preset:
    """``quick``, ``demo`` (the GPU demo where a GPU is visible) or the full protocol."""
    if opts.quick:
        return QUICK
    return demo_preset(gpus_here()) if opts.demo else FULL


def plan_sweeps(all_settings: Sequence[Settings], opts: RunOptions) -> list[Planned]:
    """Every check that needs no data, for every sweep, before any of them runs."""
    from jersey_ray.sweep import tuner
    from jersey_ray.sweep.execute import RUNS_DIR

    if opts.data is not None and not opts.data.is_dir():
        raise UserError(
            f"--data {opts.data} is not a folder; expected ROOT/<jersey>/<track>/<seq>/*.jpg"
        )
    gpus = opts.gpus_per_trial is not None and opts.gpus_per_trial > 0 and gpus_here()
    preflight.check_request(opts.gpus_per_trial, bool(opts.address), gpus)
    storage = tuner.storage_root(opts.storage, RUNS_DIR)
    preflight.check_storage(storage)  # bucket and credentials, before Ray or any data
    planned = []
    for settings in all_settings:
        name = opts.name or settings.spec.name
        if opts.name and len(all_settings) > 1:
            name = f"{opts.name}-{settings.spec.name}"
        exp_path = f"{storage}/{name}"
        tuner.init_ray(opts.address)
        preflight.check_experiment(exp_path, opts.resume)
        weights = {m: cfg.pretrained for m, cfg in settings.train.items()}
        n_params = preflight.check_models(settings.spec.models, weights)
        starts = settings.spec.axes.get("pretrained", ())
        for start_from in starts if isinstance(starts, tuple) else ():
            # an axis over starting weights (e.g. synthetic-to-real): each must load, here
            preflight.check_models(settings.spec.models, {m: str(start_from) for m in weights})
        planned.append(Planned(settings, name, exp_path, n_params))
    return planned


def with_root(settings: Settings, opts: RunOptions) -> Settings:
    """The settings with the data root: ``--data``, or the built-in synthetic data set."""
    root = opts.data if opts.data is not None else synthetic_root(settings)
    return dataclasses.replace(settings, data=replace(settings.data, root=str(root)))


def start(planned: Planned, opts: RunOptions) -> str:
    """Generate the data if needed and run the sweep; returns its experiment path."""
    from jersey_ray.sweep.execute import run_sweep

    return run_sweep(with_root(planned.settings, opts), opts, planned.exp_path, planned.n_params)
