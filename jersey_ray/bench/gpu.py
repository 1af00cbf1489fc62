"""``python -m jersey_ray.bench gpu [--out DIR] [--budget-min 8]``: prove the CUDA fast path in
one short call, on a machine with one CUDA GPU.

Each part runs in its own process under its own time limit, and ``gpu-check.json`` and
``gpu-check.md`` are rewritten in ``--out`` after every part, so a part that fails or runs out
of time leaves every other part's result (``gpu_report`` judges the targets):

0. data: the full preset's synthetic data (1500 sequences at the report's size, 16 frames) and its
   cache, made as the sweep makes them; runs beside part 1 (CPU work beside GPU tests);
1. tests: ``pytest -m cuda`` (``tests/test_cuda.py``);
2. train: ``bench train`` for ``basic_r18`` and ``attn_bgru_luong`` compiled (a trial against
   the bare compiled step), then ``basic_r18`` eager, with CUDA graphs, without determinism,
   and compiled with CUDA graphs (priority order: later runs are dropped when time runs out);
3. pack: 1, 2 and 4 concurrent ``attn_bgru_luong`` trials under Tune, 1, 0.5, 0.25 GPU each;
4. infer: ``bench infer`` for ``attn_bgru_luong``, batch 1 and 256, eager then compiled;
5. sweep: ``phaseB``, 6 models x 1 seed, 2 epochs, from scratch, on the part-0 data.

The budget (``--budget-min``, default 8) is shared out by weight; time a part leaves unused
goes to the later ones. Without a CUDA GPU it says so in one line and exits 2, before Ray is
imported. Processes run with the repository on ``PYTHONPATH`` (a bare GPU machine has Ray from
``../shared/tools/gpu-wheels.sh`` in ``.site``; README, "GPU check").
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jersey_ray import cli
from jersey_ray.bench.gpu_parts import (
    finish_data,
    part_infer,
    part_pack,
    part_sweep,
    part_tests,
    part_train,
    start_data,
)
from jersey_ray.bench.gpu_run import Check
from jersey_ray.errors import UserError, run_cli

DEFAULT_OUT = Path("results/gpu-check")
PARTS = ("data", "tests", "train", "pack", "infer", "sweep")
WEIGHTS = {"tests": 1.7, "train": 2.8, "pack": 2.0, "infer": 1.3, "sweep": 1.8}
"""Shares of the budget (data runs beside the tests and takes no share of its own)."""


PART_RUNNERS: dict[str, Callable[[Check, float], dict[str, Any]]] = {
    "tests": part_tests,
    "train": part_train,
    "pack": part_pack,
    "infer": part_infer,
    "sweep": part_sweep,
}


def run_check(check: Check, parts: tuple[str, ...]) -> None:
    data = start_data(check) if "data" in parts else None
    todo = [p for p in PARTS[1:] if p in parts]
    for i, name in enumerate(todo):
        if data is not None and name != "tests":  # the parts after the tests need the data
            finish_data(check, *data)
            data = None
        limit = max(check.left(), 0.0) * WEIGHTS[name] / sum(WEIGHTS[p] for p in todo[i:])
        check.result["parts"][name] = {"status": "running", "limit_s": limit}
        check.save()
        part = PART_RUNNERS[name](check, limit)
        check.result["parts"][name] = part
        check.save()
        print(
            f"bench gpu: {name}: {part['status']} in {part['seconds']:.0f} s "
            f"(limit {limit:.0f} s) {part.get('reason', '')}".rstrip(),
            flush=True,
        )
    if data is not None:
        finish_data(check, *data)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    memory = props.total_memory / 2**30
    return {
        "gpu": f"{props.name} ({memory:.0f} GiB, sm_{props.major}{props.minor})",
        "gpu_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "ray": _version("ray"),
        "pytest": _version("pytest"),
    }


def child_env(root: Path, gpus: int) -> dict[str, str]:
    """The parts' environment: the project importable from any folder, unbuffered output, and
    one GPU (the packing and the sweep assume one)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    if gpus > 1:
        first = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        env["CUDA_VISIBLE_DEVICES"] = first
    return env


def build_parser() -> cli.OneLineParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.bench gpu",
        description="On a machine with a CUDA GPU: the CUDA tests, training, packing and "
        "inference benchmarks and a short sweep; writes OUT/gpu-check.json and gpu-check.md.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--budget-min", type=float, default=8.0, help="minutes in all (8)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument("--cache", help="reuse this full-size cache instead of the data part's")
    return parser


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
        unknown = sorted(set(parts) - set(PARTS))
        if unknown or not parts or args.budget_min <= 0:
            raise UserError(
                f"--parts takes {','.join(PARTS)} and --budget-min > 0; got "
                f"{args.parts!r}, {args.budget_min}"
            )
        import torch

        if not torch.cuda.is_available():
            raise UserError("bench gpu needs a CUDA GPU and torch sees none; nothing was run")
        root = Path(__file__).resolve().parents[2]
        env = child_env(root, torch.cuda.device_count())
        cache = str(Path(args.cache).resolve()) if args.cache else None
        check = Check(args.out.resolve(), 60.0 * args.budget_min, root, env, cache=cache)
        if args.cache:
            parts = tuple(p for p in parts if p != "data")
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        check.result.update(
            benchmark="python -m jersey_ray.bench gpu",
            started=started,
            budget_s=check.budget_s,
            machine=machine(),
            parts={},
        )
        check.save()
        run_check(check, parts)
        check.save()
        print(f"bench gpu: report in {args.out / 'gpu-check.md'}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
