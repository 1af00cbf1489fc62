"""The product's main command: run a sweep (models x seeds x declared axes) on Ray Tune.

``python -m jersey_ray.sweep phaseB`` builds (or reuses) the Parquet cache on the driver with
Ray Data, then runs every trial under Tune with fractional GPUs, writes TensorBoard events and
checkpoints under ``results/runs/<name>/``, and ends with the collector's phase table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jersey_ray import cli, metrics
from jersey_ray.config import SweepSpec, TrainConfig, from_dict
from jersey_ray.errors import UserError, run_cli
from jersey_ray.resources import Plan

PHASES = ("phase0", "phaseA", "phaseB")
SYNTH_DIR = Path("results/data")
CACHE_DIR = Path("results/cache")
RUNS_DIR = Path("results/runs")


@dataclass(frozen=True)
class Preset:
    """Data and training settings that differ between the demo (--quick) and a full run."""

    sequences: int
    """Synthetic sequences generated when no --data is given."""
    frames: tuple[int, int]
    """Synthetic sequence lengths."""
    sequences_per_track: float
    """Synthetic sequences per track (fewer means more distinct players)."""
    size: tuple[int, int]
    """Letterboxed frame size."""
    max_frames: int
    """Frames per sequence kept in the cache."""
    seeds: tuple[int, ...] | None
    """Seeds instead of the sweep's (None: the sweep's)."""
    epochs: int | None
    """Epochs instead of the protocol's 30 (None: the sweep's/protocol's)."""
    train: dict[str, Any]
    """Extra TrainConfig overrides."""


FULL = Preset(1500, (4, 24), 5.0, (192, 96), 16, None, None, {})
# The demo trains from scratch on the CPU: many short tracks (players) at 64x32, the protocol's
# discriminative LR raised tenfold for the backbone, which has no ImageNet start here.
QUICK = Preset(
    300,
    (3, 6),
    1.5,
    (64, 32),
    6,
    (42, 123),
    4,
    {
        "pretrained": "none",
        "batch_size": 32,
        "lr": 3e-3,
        "lr_backbone": 1e-3,
        "lr_temporal": 3e-3,
        "lr_heads": 3e-3,
    },
)


def load_sweep(name: str) -> SweepSpec:
    """``sweeps/<name>.py`` (the ``sweeps`` package) or a path to a ``.py`` file."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"sweep file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"sweeps_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(f"sweeps.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"sweeps.{name}":
                raise
            raise UserError(
                f"no sweep {name!r}: choose all, one of {', '.join(available_sweeps())}, "
                "or pass a path to a sweep file"
            ) from None
    sweep = getattr(module, "SWEEP", None)
    if not isinstance(sweep, SweepSpec):
        raise UserError(f"sweep {name!r} must define SWEEP = SweepSpec(...)")
    return sweep


def available_sweeps() -> list[str]:
    import sweeps

    folder = Path(sweeps.__file__).parent
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.sweep",
        description="Run a sweep (models x seeds) on Ray Tune and print its phase table.",
        epilog="Sweeps live in sweeps/<name>.py. Watch live: tensorboard --logdir results/runs",
    )
    p.add_argument("sweep", help="phase0, phaseA, phaseB, all, any sweep in sweeps/, or a .py file")
    p.add_argument("--data", help="data root in the reference layout (default: built-in synthetic)")
    p.add_argument("--models", help="comma-separated model ids (default: the sweep's)")
    p.add_argument("--seeds", type=cli.ints, help="comma-separated seeds (default: the sweep's)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: 30, the protocol)")
    p.add_argument("--size", type=cli.size, help="frame size HxW (default: 192x96)")
    p.add_argument("--gpus-per-trial", type=float, help="GPU fraction per trial (default: 0.25)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: fill GPU slots)")
    p.add_argument("--max-concurrent", type=int, help="cap on trials running at once")
    p.add_argument("--scheduler", choices=("fifo", "asha"), help="default: the sweep's")
    p.add_argument("--grace-period", type=int, help="ASHA's first rung in epochs")
    p.add_argument("--max-failures", type=int, default=2, help="retries per trial (default: 2)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument("--address", help="Ray cluster address (auto or HOST:PORT; default: local)")
    p.add_argument("--storage", help="results root, a path or URI (default: results/runs)")
    p.add_argument("--name", help="experiment name (default: the sweep's name)")
    p.add_argument("--pretrained", help="none, imagenet or a weights file (default: imagenet)")
    p.add_argument("--quick", action="store_true", help="CPU-friendly demo: small data, 2 seeds")
    return p


def synthetic_root(preset: Preset) -> Path:
    """Generate the built-in synthetic data set once per preset; later runs reuse it.

    The generator writes to a temporary folder and renames it when complete, so an existing
    folder is a whole data set.
    """
    from jersey_ray.data import synth

    h, w = preset.size
    params = (preset.sequences, preset.frames, preset.sequences_per_track, preset.size)
    tag = hashlib.sha256(repr(params).encode()).hexdigest()[:6]
    root = SYNTH_DIR / f"synthetic-{preset.sequences}-{h}x{w}-{tag}"
    if root.is_dir():
        print(f"data: reusing the built-in synthetic data set in {root}")
        return root
    print(f"data: no --data given, generating the built-in synthetic data set in {root}")
    synth.generate(
        root,
        sequences=preset.sequences,
        size=preset.size,
        frames=preset.frames,
        sequences_per_track=preset.sequences_per_track,
        seed=0,
    )
    return root


def is_uri(path: str) -> bool:
    return "://" in path


def storage_root(option: str | None) -> str:
    """Tune needs an absolute path or a URI (a relative one fails inside pyarrow)."""
    if option and is_uri(option):
        return option.rstrip("/")
    return str(Path(option or RUNS_DIR).resolve())


def cache_location(storage: str, root: Path, size: tuple[int, int], max_frames: int) -> str:
    """Local runs cache under results/cache; a cluster (URI storage) caches beside its runs."""
    from jersey_ray.cache import cache_name

    name = cache_name(root, size, max_frames, TrainConfig.split_seed)
    if is_uri(storage):
        return f"{storage}/_cache/{name}"
    return str((CACHE_DIR / name).resolve())


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


def cluster_shape() -> dict[str, Any]:
    """Total and largest-node resources, and what accelerators the cluster has."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = [n.get("Resources", {}) for n in nodes]
    accel = sorted(
        {k.split(":", 1)[1] for r in res for k in r if k.startswith("accelerator_type:")}
    )
    return {
        "nodes": len(nodes),
        "cpus": sum(r.get("CPU", 0) for r in res),
        "gpus": sum(r.get("GPU", 0) for r in res),
        "node_cpus": max((r.get("CPU", 0) for r in res), default=0),
        "node_gpus": max((r.get("GPU", 0) for r in res), default=0),
        "accelerators": accel,
    }


def trial_parts(config: dict[str, Any], axes: tuple[str, ...]) -> list[str]:
    extra = ",".join(f"{k}={config[k]}" for k in axes)
    return [config["model"], *([extra] if extra else []), f"seed{config['seed']}"]


def trial_name(trial, sweep_name: str, axes: tuple[str, ...]) -> str:
    return "/".join([sweep_name, *trial_parts(trial.config, axes)])


def trial_dirname(trial, axes: tuple[str, ...]) -> str:
    # Tune 2.60 forbids "/" in trial folder names, so the levels are joined with "-".
    return "-".join(trial_parts(trial.config, axes))


def check_models(models: tuple[str, ...], pretrained: str) -> dict[str, int]:
    """Unknown ids and missing weights fail here, before any trial starts."""
    from jersey_ray.models import build_model, count_params, get_spec

    for model in models:
        get_spec(model)
    return {m: count_params(build_model(m, pretrained)) for m in models}


def visible_gpu_memory() -> tuple[int, int] | None:
    """(free, total) bytes of the first GPU the driver sees, or None.

    Read in a short-lived process: a CUDA context in the driver would hold hundreds of MB of
    the GPU memory the trials need for the whole sweep.
    """
    import torch

    if not torch.cuda.is_available():
        return None
    probe = "import torch; print(*torch.cuda.mem_get_info())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return None
    free, total = (int(v) for v in out.stdout.split())
    return free, total


def check_gpu_share(plan: Plan, need_bytes: float, memory: tuple[int, int] | None) -> None:
    """Where the driver can see the GPU, refuse a share that cannot hold a trial."""
    if not plan.gpus_per_trial or memory is None:
        return
    free, total = memory
    share = min(plan.gpus_per_trial, 1.0) * total
    if share > free or share < need_bytes:
        raise UserError(
            f"--gpus-per-trial {plan.gpus_per_trial:g} gives {share / 1e9:.1f} GB per trial but "
            f"{free / 1e9:.1f} GB of {total / 1e9:.1f} GB is free and a trial needs about "
            f"{need_bytes / 1e9:.1f} GB; free the GPU or choose a larger fraction"
        )


def param_space(
    spec: SweepSpec, models: tuple[str, ...], seeds: tuple[int, ...], fixed: dict[str, Any]
) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {**spec.train, **fixed}
    space["model"] = tune.grid_search(list(models))
    for key, values in spec.axes.items():
        space[key] = tune.grid_search(list(values))
    space["seed"] = tune.grid_search(list(seeds))
    from_dict(TrainConfig, {k: v for k, v in space.items() if not isinstance(v, dict)})
    return space


def make_scheduler(spec: SweepSpec, scheduler: str, grace: int, epochs: int):
    from ray.tune.schedulers import FIFOScheduler

    if scheduler == "fifo":
        return FIFOScheduler()
    from jersey_ray.asha import SeedAwareASHA

    # It records its pruning decisions in <experiment>/pruned.json itself (restored with Tune).
    return SeedAwareASHA(max_t=epochs, grace_period=grace, reduction_factor=spec.reduction_factor)


def make_tuner(spec, space, plan: Plan, scheduler, exp_path: str, storage: str, opts):
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from jersey_ray.trainable import run_trial

    axes = tuple(spec.axes)
    trainable = tune.with_resources(
        run_trial, {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    )
    if opts.resume:
        return tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metrics.SELECTION_METRIC,
            mode=metrics.SELECTION_MODE,
            scheduler=scheduler,
            max_concurrent_trials=opts.max_concurrent,
            trial_name_creator=functools.partial(trial_name, sweep_name=spec.name, axes=axes),
            trial_dirname_creator=functools.partial(trial_dirname, axes=axes),
        ),
        run_config=tune.RunConfig(
            name=Path(exp_path).name if not is_uri(exp_path) else exp_path.rsplit("/", 1)[1],
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback()],
            verbose=1,
        ),
    )


@contextlib.contextmanager
def _without_tune_tensorboard():
    """Tune adds a TensorBoard logger of its own to every trial unless auto loggers are off;
    its events would duplicate the trial's own under ``ray/tune/`` tags (and Tune would point
    at its staging folder). The JSON and CSV loggers are passed explicitly in the RunConfig:
    ``result.json`` is what the collector reads."""
    key = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    saved = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[key]
        else:
            os.environ[key] = saved


def check_experiment(exp_path: str, resume: bool) -> None:
    """Never overwrite a sweep; never 'resume' one that is not there."""
    from ray import tune

    exists = tune.Tuner.can_restore(exp_path)
    if resume and not exists:
        raise UserError(f"nothing to resume at {exp_path}: run the sweep without --resume first")
    if not resume and exists:
        name = exp_path.rstrip("/").rsplit("/", 1)[1]
        raise UserError(
            f"{exp_path} already holds sweep {name!r}; continue it with --resume or pick a new "
            "--name (nothing was overwritten)"
        )
    if (
        not resume
        and not is_uri(exp_path)
        and Path(exp_path).exists()
        and any(Path(exp_path).iterdir())
    ):
        raise UserError(f"{exp_path} exists and is not empty; pick a new --name or remove it")


def write_json(path: str, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True)
    if is_uri(path):
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_output_stream(inner) as out:
            out.write(text.encode())
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text + "\n")


def read_json(path: str) -> dict[str, Any]:
    if is_uri(path):
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_input_stream(inner) as src:
            return json.loads(src.read())
    return json.loads(Path(path).read_text())


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sweep_record(spec, models, seeds, epochs, scheduler, plan, shape, cache, root) -> dict:
    manifest = cache.manifest
    return {
        "name": spec.name,
        "phase": spec.phase,
        "description": spec.description,
        "reference": spec.reference,
        "models": list(models),
        "seeds": list(seeds),
        "axes": {k: list(v) for k, v in spec.axes.items()},
        "epochs": epochs,
        "scheduler": scheduler,
        "gpus_per_trial": plan.gpus_per_trial,
        "cpus_per_trial": plan.cpus_per_trial,
        "hardware": shape,
        "data": {
            "root": str(root),
            "cache": str(cache.path),
            "fingerprint": manifest["fingerprint"],
            "size": list(manifest["size"]),
            "max_frames": manifest["max_frames"],
            "split_seed": manifest["split_seed"],
            "counts": {s: c["sequences"] for s, c in manifest["counts"]["splits"].items()},
        },
        "started": now(),
        "finished": None,
    }


def run_sweep(
    spec: SweepSpec, opts: argparse.Namespace, name: str, root: Path, preset: Preset
) -> str:
    """Run one sweep to completion (or interruption); returns the experiment path."""
    from jersey_ray import resources
    from jersey_ray.cache import build_cache, verify_cache

    models = tuple(m for m in opts.models.split(",") if m) if opts.models else spec.models
    seeds = opts.seeds or preset.seeds or spec.seeds
    epochs = opts.epochs or preset.epochs or spec.train.get("epochs", TrainConfig.epochs)
    size = opts.size or preset.size
    pretrained = (
        opts.pretrained
        or preset.train.get("pretrained")
        or spec.train.get("pretrained", TrainConfig.pretrained)
    )
    scheduler = opts.scheduler or spec.scheduler
    storage = storage_root(opts.storage)
    exp_path = f"{storage}/{name}"
    check_experiment(exp_path, opts.resume)
    n_params = check_models(models, pretrained)
    cache = build_cache(
        root,
        cache_location(storage, root, size, preset.max_frames),
        size=size,
        max_frames=preset.max_frames,
        split_seed=TrainConfig.split_seed,
    )
    verify_cache(cache.path)  # every trial checks it too; a corrupt shard should stop us here
    shape = cluster_shape()
    n_trials = len(models) * len(seeds) * max(1, _axes_product(spec))
    memory = visible_gpu_memory() if shape["gpus"] else None
    need = _trial_need_bytes(cache.manifest, size, preset)
    share = opts.gpus_per_trial
    if share is None and shape["gpus"]:
        # as many trials per GPU as fit in its memory; 0.25 when the driver cannot see the GPU
        share = resources.default_gpu_fraction(memory[1], need) if memory else 0.25
    plan = resources.plan(
        shape["cpus"],
        shape["gpus"],
        shape["node_cpus"],
        shape["node_gpus"],
        gpus_per_trial=share,
        cpus_per_trial=opts.cpus_per_trial,
        max_concurrent=opts.max_concurrent,
        n_trials=n_trials,
    )
    check_gpu_share(plan, need, memory)
    fixed = {
        **preset.train,
        "epochs": epochs,
        "pretrained": pretrained,
        "cache": str(cache.path),
        "data_root": str(root),
        "size": list(size),
        "max_frames": preset.max_frames,
        "device": "cuda" if plan.gpus_per_trial else "cpu",
        "gpu_fraction": plan.gpus_per_trial if plan.gpus_per_trial < 1 else 0.0,
    }
    space = param_space(spec, models, seeds, fixed)
    if not opts.resume:
        record = sweep_record(spec, models, seeds, epochs, scheduler, plan, shape, cache, root)
        record["params"] = n_params
        write_json(f"{exp_path}/sweep.json", record)
    print(
        f"sweep {spec.name}: {n_trials} trials ({len(models)} models x {len(seeds)} seeds), "
        f"{epochs} epochs, {scheduler}; {plan.describe()}"
    )
    print(f"watch live: tensorboard --logdir {_display(exp_path)}")
    grace = opts.grace_period or spec.grace_period
    sched = make_scheduler(spec, scheduler, grace, epochs)
    tuner = make_tuner(spec, space, plan, sched, exp_path, storage, opts)
    with _without_tune_tensorboard():
        tuner.fit()
    record = read_json(f"{exp_path}/sweep.json")
    record["finished"] = now()
    write_json(f"{exp_path}/sweep.json", record)
    return exp_path


def _axes_product(spec: SweepSpec) -> int:
    n = 1
    for values in spec.axes.values():
        n *= len(values)
    return n


def _trial_need_bytes(manifest: dict[str, Any], size: tuple[int, int], preset: Preset) -> float:
    from jersey_ray.resources import trial_bytes

    h, w = size
    frames = sum(c["frames"] for c in manifest["counts"]["splits"].values())
    batch = preset.train.get("batch_size", TrainConfig.batch_size) * preset.max_frames
    # ~6 KB of saved bf16 activations per pixel-row of a ResNet-18 frame at 192x96 is 7 MB/frame.
    return trial_bytes(frames * h * w * 3, batch, 380.0 * h * w)


def _display(path: str) -> str:
    if is_uri(path):
        return path
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def finish(exp_path: str, out: str | None) -> int:
    """Collect the run into phase tables, print the table and say what is unfinished."""
    from jersey_ray.collect import collect

    local = exp_path
    if is_uri(exp_path):
        import pyarrow.fs

        local = str((RUNS_DIR / exp_path.rsplit("/", 1)[1]).resolve())
        pyarrow.fs.copy_files(exp_path, local)
    summary = collect(local, out)
    print(Path(summary["table_md"]).read_text())
    unfinished, failed = summary.get("unfinished", []), summary.get("failed", [])
    if unfinished:
        print(
            f"{len(unfinished)} trial(s) did not finish (interrupted?): continue with "
            f"python -m jersey_ray.sweep {summary['name']} --resume"
        )
    if failed:
        print(f"{len(failed)} trial(s) failed after their retries: see the table's Failed trials")
    return 1 if unfinished or failed else 0


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        names = list(PHASES) if args.sweep == "all" else [args.sweep]
        specs = [load_sweep(n) for n in names]
        preset = QUICK if args.quick else FULL
        root = Path(args.data) if args.data else None
        if root is not None and not root.is_dir():
            raise UserError(
                f"--data {root} is not a folder; expected ROOT/<jersey>/<track>/<seq>/*.jpg"
            )
        init_ray(args.address)
        root = root or synthetic_root(preset)
        status = 0
        for spec in specs:
            name = args.name or spec.name
            if args.name and len(specs) > 1:
                name = f"{args.name}-{spec.name}"
            exp_path = run_sweep(spec, args, name, root, preset)
            status |= finish(exp_path, str(Path("results") / name))
        return status

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
