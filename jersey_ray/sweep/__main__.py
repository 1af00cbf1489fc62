"""``python -m jersey_ray.sweep {phase0,phaseA,phaseB,all,<sweep>}``: the product's main command.

Resolves the settings (:mod:`jersey_ray.sweep.settings`), runs the cheap checks, generates the
built-in synthetic data when no ``--data`` is given, then runs each sweep
(:mod:`jersey_ray.sweep.run`) and prints its table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jersey_ray import cli
from jersey_ray.config import replace
from jersey_ray.errors import UserError, run_cli
from jersey_ray.sweep import preflight, trackers, tuner
from jersey_ray.sweep.run import RUNS_DIR, finish, run_sweep
from jersey_ray.sweep.settings import (
    FULL,
    QUICK,
    Settings,
    demo_preset,
    load_sweep,
    resolve,
    synthetic_root,
)

PHASES = ("phase0", "phaseA", "phaseB")


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.sweep",
        description="Run a sweep (models x seeds) on Ray Tune and print its table. Settings: "
        "command line > preset (--quick) > sweep file > the model's phase protocol > defaults.",
        epilog="Sweeps live in sweeps/<name>.py. Watch live: tensorboard --logdir results/runs",
    )
    p.add_argument("sweep", help="phase0, phaseA, phaseB, all, any sweep in sweeps/, or a .py file")
    p.add_argument("--data", type=Path, help="data root (default: built-in synthetic data)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--quick", action="store_true", help="the CPU demo preset: a few minutes on 2 cores"
    )
    which.add_argument(
        "--demo",
        action="store_true",
        help="the demo: --quick on a CPU, full-size synthetic data where a CUDA GPU is visible",
    )
    p.add_argument("--models", help="comma-separated model ids (default: the sweep's)")
    p.add_argument("--seeds", type=cli.ints, help="comma-separated seeds (default: the sweep's)")
    p.add_argument("--epochs", type=cli.positive_int, help="epochs per trial (default: 30)")
    p.add_argument(
        "--pretrained",
        help="none, imagenet (downloaded once into the torch/HF caches) or a weights file "
        "(default: imagenet)",
    )
    p.add_argument("--scheduler", choices=("fifo", "asha"), help="default: the sweep's")
    p.add_argument(
        "--profile",
        type=cli.positive_int,
        metavar="STEPS",
        help="record STEPS training steps of every trial with torch.profiler (trial/profile/)",
    )
    p.add_argument("--grace-period", type=cli.positive_int, help="ASHA's first rung in epochs")
    cli.add_data_options(p)
    r = p.add_argument_group("resources and runs")
    r.add_argument("--gpus-per-trial", type=float, help="GPU fraction per trial (default: fit)")
    r.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: fill GPU slots)")
    r.add_argument("--max-concurrent", type=cli.positive_int, help="cap on trials at once")
    r.add_argument("--max-failures", type=int, default=2, help="retries per trial (default: 2)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    r.add_argument("--address", help="Ray cluster address (auto or HOST:PORT; default: local)")
    r.add_argument("--storage", help=f"results root, a path or URI (default: {RUNS_DIR})")
    r.add_argument("--name", help="experiment name (default: the sweep's name)")
    r.add_argument(
        "--verbose",
        action="store_true",
        help="Tune's own status table instead of one line per trial and a progress bar",
    )
    trackers.add_tracker_options(p)
    return p


def _gpus_here() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        names = list(PHASES) if args.sweep == "all" else [args.sweep]
        preset = QUICK if args.quick else demo_preset(_gpus_here()) if args.demo else FULL
        print(f"preset {preset.name}: {preset.description}")
        if args.data is not None:
            print(f"data: {args.data}")
        all_settings = [resolve(load_sweep(n), preset, args) for n in names]
        if args.data is not None and not args.data.is_dir():
            raise UserError(
                f"--data {args.data} is not a folder; expected ROOT/<jersey>/<track>/<seq>/*.jpg"
            )
        preflight.check_request(args.gpus_per_trial, bool(args.address), _gpus_here())
        storage = tuner.storage_root(args.storage, RUNS_DIR)
        planned = []
        for settings in all_settings:
            name = args.name or settings.spec.name
            if args.name and len(all_settings) > 1:
                name = f"{args.name}-{settings.spec.name}"
            exp_path = f"{storage}/{name}"
            tuner.init_ray(args.address)
            preflight.check_experiment(exp_path, args.resume)
            weights = {m: cfg.pretrained for m, cfg in settings.train.items()}
            n_params = preflight.check_models(settings.spec.models, weights)
            planned.append((settings, name, exp_path, n_params))
        status = 0
        for settings, name, exp_path, n_params in planned:
            settings = _with_root(settings, args)
            run_sweep(settings, args, exp_path, n_params)
            status |= finish(exp_path, str(Path("results") / name))
        return status

    return run_cli(body)


def _with_root(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with the data root: ``--data``, or the built-in synthetic data set."""
    root = args.data if args.data is not None else synthetic_root(settings)
    return dataclasses.replace(settings, data=replace(settings.data, root=str(root)))


if __name__ == "__main__":
    sys.exit(main())
