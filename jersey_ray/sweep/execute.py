"""Running one resolved sweep: its cache, its trials under Tune, its record, and its table.

:func:`run_sweep` builds (or reuses) the Parquet cache on the driver with Ray Data, sizes the
trials on the cluster, writes ``sweep.json`` (the resolved settings, data, hardware), runs every
trial under Tune and marks the sweep finished; :func:`finish` collects the run into its table.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jersey_ray.cache.plan import cache_location
from jersey_ray.config import DataConfig, SweepSpec
from jersey_ray.storage import is_uri, read_json, write_json
from jersey_ray.sweep import preflight, tuner
from jersey_ray.sweep.options import RunOptions
from jersey_ray.sweep.resources import Plan
from jersey_ray.sweep.settings import Settings

RUNS_DIR = Path("results/runs")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def data_record(cache: str, manifest: dict[str, Any], data: DataConfig) -> dict[str, Any]:
    """``sweep.json``'s data section: what the collector and the results index show."""
    return {
        "root": data.root,
        "cache": cache,
        "fingerprint": manifest["fingerprint"],
        "size": list(data.size),
        "max_frames": data.max_frames,
        "split": data.split,
        "split_seed": data.split_seed,
        "heldout_numbers": list(data.heldout_numbers),
        "counts": {s: c["sequences"] for s, c in manifest["counts"]["splits"].items()},
        # {jersey: {split: {tracks, sequences, ...}}}: the collector's majority-class row
        "per_class": manifest["counts"].get("per_class"),
    }


def sweep_record(
    settings: Settings, plan: Plan, shape: dict, data: dict, n_params: dict[str, int]
) -> dict[str, Any]:
    spec = settings.spec
    epochs = {cfg.epochs for cfg in settings.train.values()}
    return {
        "name": spec.name,
        "phase": spec.phase,
        "description": spec.description,
        "reference": spec.reference,
        "models": list(spec.models),
        "seeds": list(spec.seeds),
        # a grid axis as its values, a sampled one as text ("loguniform(0.0001, 0.01)")
        "axes": {k: _describe_axis(v) for k, v in spec.axes.items()},
        "search": {
            "algorithm": spec.search,
            "num_samples": spec.num_samples,
            "max_concurrent": spec.max_concurrent,
            "configurations": spec.configurations,
        },
        "epochs": epochs.pop() if len(epochs) == 1 else sorted(epochs),
        "scheduler": spec.scheduler,
        "gpus_per_trial": plan.gpus_per_trial,
        "cpus_per_trial": plan.cpus_per_trial,
        "hardware": shape,
        "data": data,
        "settings": settings.record(),
        "params": n_params,
        "started": now(),
        "finished": None,
    }


def cache_base(storage: str) -> str:
    """Local runs cache under results/cache; a cluster (URI storage) caches beside its runs."""
    from jersey_ray.cache.plan import DEFAULT_CACHE_ROOT

    return f"{storage}/_cache" if is_uri(storage) else str(DEFAULT_CACHE_ROOT)


def run_sweep(settings: Settings, opts: RunOptions, exp_path: str, n_params: dict[str, int]) -> str:
    """Run one sweep to completion (or interruption); returns the experiment path."""
    from jersey_ray.cache.build import build_cache
    from jersey_ray.cache.store import data_config, verify_for_trials

    spec = settings.spec
    storage = exp_path.rsplit("/", 1)[0]
    cache = build_cache(settings.data, cache_location(settings.data, cache_base(storage)))
    # every shard hashed once, here: a corrupt one stops the sweep; trials (and their restarts)
    # check only the sizes and this manifest digest
    verified = verify_for_trials(cache.path)
    built = data_config(cache.manifest)
    shape = preflight.cluster_shape()
    n_trials = len(spec.seeds) * _axes_product(spec)
    batch = max(cfg.batch_size for cfg in settings.train.values())
    plan = preflight.plan_trials(shape, cache.manifest, built, batch, opts, n_trials)
    fixed = {
        **settings.overrides,
        "device": "cuda" if plan.gpus_per_trial else "cpu",
        "gpu_fraction": plan.gpus_per_trial if plan.gpus_per_trial < 1 else 0.0,
    }
    if not opts.resume:
        data = data_record(cache.path, cache.manifest, built)
        write_json(f"{exp_path}/sweep.json", sweep_record(settings, plan, shape, data, n_params))
    epochs = max(cfg.epochs for cfg in settings.train.values())
    print(
        f"sweep {spec.name}: {n_trials} trials ({_shape(spec)} x {len(spec.seeds)} "
        f"seeds), {epochs} epochs, {spec.scheduler}, preset {settings.preset.name}; "
        f"{plan.describe()}"
    )
    print(f"watch live: tensorboard --logdir {preflight.display(exp_path)}")
    scheduler = tuner.make_scheduler(spec, epochs)
    space = tuner.param_space(spec, fixed)
    planned = n_trials * sum(cfg.epochs for cfg in settings.train.values()) // len(spec.models)
    tune_run = tuner.make_tuner(
        spec, space, plan, scheduler, exp_path, cache.path, planned, opts, verified=verified
    )
    with tuner.tune_environment(opts.verbose):
        tune_run.fit()
    record = read_json(f"{exp_path}/sweep.json")
    record["finished"] = now()
    write_json(f"{exp_path}/sweep.json", record)
    return exp_path


def _axes_product(spec: SweepSpec) -> int:
    """Configurations: models x grid axes (x samples), or the search's ``num_samples``."""
    return spec.configurations


def _shape(spec: SweepSpec) -> str:
    if spec.search == "grid":
        return f"{len(spec.models)} models"
    return f"{spec.configurations} {spec.search} configurations"


def _describe_axis(values: Any) -> Any:
    if isinstance(values, (tuple, list)):
        return list(values)
    from jersey_ray.sweep.search import describe

    return describe(values)


def finish(exp_path: str, out: str | None) -> int:
    """Collect the run into its table, print it and say what is unfinished.

    A run in object storage is read where it is: its small files and the chosen trial's
    checkpoint (for the analysis figures), never the other checkpoints; the table, summary and
    figures are written locally to ``out`` either way.
    """
    from jersey_ray.results.collect import collect

    summary = collect(exp_path, out)
    print(Path(summary["table_md"]).read_text())
    where = ""
    if is_uri(exp_path):
        where = f" --storage {exp_path.rsplit('/', 1)[0]}"
        print(f"table and figures written to {Path(summary['table_md']).parent} (the run stays "
              f"in {exp_path})")  # fmt: skip
    unfinished, failed = summary.get("unfinished", []), summary.get("failed", [])
    if unfinished:
        print(
            f"{len(unfinished)} trial(s) did not finish (interrupted?): continue with "
            f"python -m jersey_ray.sweep {summary['name']}{where} --resume"
        )
    if failed:
        print(f"{len(failed)} trial(s) failed after their retries: see the table's Failed trials")
    return 1 if unfinished or failed else 0
