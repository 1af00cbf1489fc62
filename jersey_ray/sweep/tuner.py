"""The Ray Tune side of a sweep: Ray itself, the parameter grid, trial names, the scheduler and
the Tuner (new or restored).

The grid is models x the sweep's axes x seeds over TrainConfig keys; the keys every trial shares
(sweep file, preset, command line) are fixed values in the same parameter space, and the
trainable resolves them above the model's phase protocol (:mod:`jersey_ray.sweep.trainable`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path
from typing import Any

from jersey_ray import metrics
from jersey_ray.config import SweepSpec
from jersey_ray.errors import UserError
from jersey_ray.storage import is_uri
from jersey_ray.sweep.options import RunOptions
from jersey_ray.sweep.resources import Plan


def init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # One checkpoint kept per trial: silence Tune's snapshot-frequency warning that this causes.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    except ConnectionError as err:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {err}") from None
    except Exception as err:
        # Ray raises a bare Exception when its own processes do not come up in time (an
        # overloaded machine): one line with what to do, not Ray's traceback.
        if "timed out during startup" not in str(err):
            raise
        raise UserError(
            "Ray's local processes did not start in time (the machine is overloaded?): retry "
            "when it is less busy, or start Ray first (ray start --head) and pass --address auto"
        ) from None


def _shown(value: Any) -> str:
    # an axis over paths (e.g. pretrained runs): Tune forbids "/" in a trial folder's name, and
    # the whole path keeps two runs with the same last folder apart
    return str(value).replace("\\", "/").strip("/").replace("/", "_")


def trial_parts(config: dict[str, Any], axes: tuple[str, ...]) -> list[str]:
    extra = ",".join(f"{k}={_shown(config[k])}" for k in axes)
    return [config["model"], *([extra] if extra else []), f"seed{config['seed']}"]


def trial_name(trial, sweep_name: str, axes: tuple[str, ...]) -> str:
    return "/".join([sweep_name, *trial_parts(trial.config, axes)])


def trial_dirname(trial, axes: tuple[str, ...]) -> str:
    # Tune 2.60 forbids "/" in trial folder names, so the levels are joined with "-".
    return "-".join(trial_parts(trial.config, axes))


def param_space(spec: SweepSpec, fixed: dict[str, Any]) -> dict[str, Any]:
    """Tune's grid: model, the sweep's axes and seed over the fixed TrainConfig keys. Under a
    search (``random``, ``optuna``) the fixed keys alone: :func:`make_search`'s searcher gives
    each trial its model, axes and seed."""
    from ray import tune

    space: dict[str, Any] = dict(fixed)
    if spec.search != "grid":
        return space
    space["model"] = tune.grid_search(list(spec.models))
    for key, values in spec.axes.items():
        space[key] = tune.grid_search(list(values))
    space["seed"] = tune.grid_search(list(spec.seeds))
    return space


def make_search(spec: SweepSpec, plan: Plan):
    """The seed-aware searcher of a ``random`` or ``optuna`` sweep (None for a grid): each
    configuration it proposes runs every seed and is told its seed mean
    (:mod:`jersey_ray.sweep.search`). Its ``max_concurrent`` (configurations in flight)
    defaults to the trial slots over the seeds, at least one."""
    if spec.search == "grid":
        return None
    from ray import tune
    from ray.tune.search import Searcher

    from jersey_ray.sweep.search import TOLD_METRIC, RandomSearch, SeedAwareSearch

    sampled = spec.sampled
    grid = {k: tuple(v) for k, v in spec.axes.items() if k not in sampled}
    seed = spec.seeds[0]  # the proposals are reproducible: the searcher is seeded too
    constant: dict[str, Any] = {}
    inner: Searcher
    if spec.search == "random":
        inner = RandomSearch(sampled, spec.models, grid, spec.num_samples, seed)
    else:
        from ray.tune.search.optuna import OptunaSearch

        space = dict(sampled)
        if len(spec.models) > 1:
            space["model"] = tune.choice(list(spec.models))
        else:
            constant["model"] = spec.models[0]
        space = OptunaSearch.convert_search_space(space)  # Optuna's distributions, no warning
        inner = OptunaSearch(space, metric=TOLD_METRIC, mode=metrics.SELECTION_MODE, seed=seed)
    slots = -(-max(plan.max_concurrent, 1) // len(spec.seeds))
    return SeedAwareSearch(
        inner,
        seeds=spec.seeds,
        num_samples=spec.configurations,
        max_concurrent=spec.max_concurrent or max(slots, 1),
        constant=constant,
    )


def make_scheduler(spec: SweepSpec, epochs: int):
    from ray.tune.schedulers import FIFOScheduler

    if spec.scheduler == "fifo":
        return FIFOScheduler()
    from jersey_ray.sweep.asha import SeedAwareASHA

    # It records its pruning decisions in <experiment>/pruned.json itself (restored with Tune).
    return SeedAwareASHA(
        max_t=epochs, grace_period=spec.grace_period, reduction_factor=spec.reduction_factor
    )


def make_tuner(
    spec: SweepSpec,
    space,
    plan: Plan,
    scheduler,
    exp_path: str,
    cache: str,
    planned: int,
    opts: RunOptions,
    verified: str | None = None,
):
    """A new Tuner (or the restored one with ``--resume``). ``planned``: the epochs of all the
    trials, the console bar's total; ``--verbose`` shows Tune's own status table instead.
    ``verified``: the driver's token for the cache it hashed (trials then check it cheaply)."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from jersey_ray.sweep.asha import tune_max_concurrent
    from jersey_ray.sweep.console import Console
    from jersey_ray.sweep.trackers import tracker_callbacks
    from jersey_ray.sweep.trainable import run_trial

    axes = tuple(spec.axes)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, cache=cache, verified=verified),
        {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial},
    )
    if opts.resume:
        # Restoring reads every trial's results and warns "Failed to fetch metrics" for each
        # trial that had not started when the sweep stopped: normal on a resume, and alarming.
        # Trials that ran and lost their results are the collector's to report (missing).
        analysis = logging.getLogger("ray.tune.analysis.experiment_analysis")
        level = analysis.level
        analysis.setLevel(logging.ERROR)
        try:
            return tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True)
        finally:
            analysis.setLevel(level)
    storage, name = exp_path.rstrip("/").rsplit("/", 1)
    trackers = tracker_callbacks(opts, name, axes)
    console = [] if opts.verbose else [Console(planned)]
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            # the product's choice on validation, so get_best_result() names predict's trial
            metric=metrics.TUNE_METRIC,
            mode=metrics.SELECTION_MODE,
            scheduler=scheduler,
            search_alg=make_search(spec, plan),  # seed-aware search; None: the grid
            num_samples=1 if spec.search == "grid" else spec.configurations * len(spec.seeds),
            max_concurrent_trials=tune_max_concurrent(scheduler, opts.max_concurrent),
            trial_name_creator=functools.partial(trial_name, sweep_name=spec.name, axes=axes),
            trial_dirname_creator=functools.partial(trial_dirname, axes=axes),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            # --mlflow / --wandb add theirs (trackers); on --resume Tune restores the same
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback(), *console, *trackers],
            verbose=1 if opts.verbose else 0,
        ),
    )


@contextlib.contextmanager
def tune_environment(verbose: bool):
    """Two Tune behaviours that only environment variables switch off, for the length of a fit.

    Tune adds a TensorBoard logger of its own to every trial unless auto loggers are off; its
    events would duplicate the trial's own under ``ray/tune/`` tags (and Tune would point at its
    staging folder). The JSON and CSV loggers are passed explicitly in the RunConfig:
    ``result.json`` is what the collector reads. Without ``--verbose`` the console callback
    speaks for the sweep, but Tune's new output engine prints a configuration box and a results
    path even at verbosity 0; its legacy reporter at verbosity 0 prints nothing."""
    keys = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if not verbose:
        keys["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def storage_root(option: str | None, default: Path) -> str:
    """Tune needs an absolute path or a URI (a relative one fails inside pyarrow)."""
    if option and is_uri(option):
        return option.rstrip("/")
    return str(Path(option or default).resolve())
