"""``python -m jersey_ray.sweep {phase0,phaseA,phaseB,all,<sweep>}``: the product's main command.

Parses the command line into :class:`~jersey_ray.sweep.options.RunOptions` (argparse lives only
here), resolves the settings (:mod:`jersey_ray.sweep.settings`), runs the cheap checks,
generates the built-in synthetic data when no ``--data`` is given, then runs each sweep
(:mod:`jersey_ray.sweep.launch`, :mod:`jersey_ray.sweep.execute`) and prints its table. The Python
API (:func:`jersey_ray.sweep.run`) takes the same steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jersey_ray import cli
from jersey_ray.errors import run_cli
from jersey_ray.sweep import launch, trackers
from jersey_ray.sweep.execute import RUNS_DIR, finish
from jersey_ray.sweep.options import RUNNER_KEYS, RunOptions, model_ids
from jersey_ray.sweep.settings import load_sweep, resolve
from jersey_ray.train.__main__ import parse_sets

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
    p.add_argument(
        "--models", type=model_ids, help="comma-separated model ids (default: the sweep's)"
    )
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
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig field for every trial, e.g. --set deterministic=false "
        "(repeatable; JSON values; as python -m jersey_ray.train --set)",
    )
    cli.add_data_options(p)
    r = p.add_argument_group("resources and runs")
    r.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPU fraction per trial, at most 1: a trial trains on one device (default: fit)",
    )
    r.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: fill GPU slots)")
    r.add_argument("--max-concurrent", type=cli.positive_int, help="cap on trials at once")
    r.add_argument(
        "--max-failures",
        type=int,
        default=RunOptions.max_failures,
        help=f"retries per trial (default: {RunOptions.max_failures})",
    )
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


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The parsed command line as :class:`RunOptions` (``--set`` pairs parsed and checked as
    ``train``'s are)."""
    names = [f.name for f in dataclasses.fields(RunOptions) if f.name != "overrides"]
    given = {name: getattr(args, name) for name in names}
    return RunOptions(**given, overrides=parse_sets(args.set, RUNNER_KEYS))


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        opts = options_from_args(args)
        names = list(PHASES) if args.sweep == "all" else [args.sweep]
        preset = launch.choose_preset(opts)
        print(f"preset {preset.name}: {preset.description}")
        if opts.data is not None:
            print(f"data: {opts.data}")
        all_settings = [resolve(load_sweep(n), preset, opts) for n in names]
        status = 0
        for planned in launch.plan_sweeps(all_settings, opts):
            launch.start(planned, opts)
            status |= finish(planned.exp_path, str(planned.out))
        return status

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
