"""The parts of ``bench gpu`` that have no command of their own, each run in its own process.

``python -m jersey_ray.bench.gpu_work data --json OUT``: a synthetic data set with the full
preset's generator arguments (1500 sequences at the report's size) in ``results/data/`` of the
folder, and its cache where a sweep run there with ``--data`` on it looks for it
(``results/cache/``), so the sweep part reuses both.

``python -m jersey_ray.bench.gpu_work pack --cache DIR --json OUT``: 1, 2 and 4 concurrent
training trials of one model under Ray Tune with 1, 0.5 and 0.25 GPU each. Every trial caps
its CUDA memory to its share (as a sweep's trial does), trains on the cache's train split with
the trial's loader and step, waits for the others at a file barrier after its warm-up, then
trains for the same number of seconds as they do; the total is the sum of their frames/s. The
JSON is rewritten after each configuration.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA_ROOT = "results/data/gpu-check-synthetic"
BARRIER_TIMEOUT_S = 180.0
STEPS_PER_CHECK = 4  # steps queued between clock reads in the timed window


def prepare_data(out_json: Path) -> None:
    from jersey_ray.cache.build import build_cache
    from jersey_ray.cache.plan import cache_location
    from jersey_ray.config import DataConfig, replace
    from jersey_ray.data.synth import generate
    from jersey_ray.sweep.settings import FULL

    start = time.perf_counter()
    data = DataConfig()
    root = Path(DATA_ROOT).resolve()
    if not root.is_dir():  # generate writes a temporary folder and renames it when complete
        generate(root, seed=0, progress=False, **{"size": data.size, **FULL.synth})
    data = replace(data, root=str(root))
    built = build_cache(data, cache_location(data), progress=False)
    counts = built.manifest["counts"]["splits"]
    _write(
        out_json,
        {
            "root": data.root,
            "cache": built.path,
            "reused": built.reused,
            "size": list(data.size),
            "max_frames": data.max_frames,
            "sequences": {s: c["sequences"] for s, c in counts.items()},
            "frames": {s: c["frames"] for s, c in counts.items()},
            "seconds": time.perf_counter() - start,
        },
    )


def _barrier(folder: Path, slot: int, trials: int) -> bool:
    """Wait until all ``trials`` trials have reached this point; False on a time-out."""
    (folder / f"ready-{slot}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(folder.glob("ready-*"))) < trials:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pack_trial(config: dict[str, Any]) -> None:
    """One packed trial (a Tune function trainable): warm up, meet the others, train timed."""
    import torch
    from ray import tune

    from jersey_ray import metrics as M
    from jersey_ray.bench.train import loader_stream
    from jersey_ray.cache.loader import load_split
    from jersey_ray.config import TrainConfig
    from jersey_ray.models import build_model
    from jersey_ray.train.step import make_step, resolve_device, run_epoch, set_determinism

    share = config["gpu"]
    cfg = TrainConfig(
        model=config["model"],
        pretrained="none",
        device=config["device"],
        gpu_fraction=share if share < 1 else 0.0,
        batch_size=config["batch_size"],
    )
    device = resolve_device(cfg.device)
    if device.type == "cuda" and cfg.gpu_fraction > 0:  # what train() does for a fractional trial
        torch.cuda.set_per_process_memory_fraction(cfg.gpu_fraction, device)
    set_determinism(cfg.deterministic)
    torch.manual_seed(cfg.seed + config["slot"])
    data = load_split(config["cache"], "train", device)
    step = make_step(cfg, build_model(cfg.model, cfg.pretrained), len(data), device)
    stream = loader_stream(data, cfg, step.input_frames, device)
    counter = M.SplitCounter(device)
    run_epoch(step, itertools.islice(stream, config["warmup"]), counter)
    _sync(device)
    met = _barrier(Path(config["barrier"]), config["slot"], config["trials"])
    start = time.perf_counter()
    deadline, frames = start + config["seconds"], 0
    while time.perf_counter() < deadline:
        frames += run_epoch(step, itertools.islice(stream, STEPS_PER_CHECK), counter)
    counter.compute("train")
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else 0.0
    tune.report(
        {"frames_per_s": frames / seconds, "seconds": seconds, "peak_gb": peak, "barrier_met": met}
    )


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _packed(trainable, k: int, args, scratch: Path) -> dict[str, Any]:
    from ray import tune

    share = 1.0 / k
    gpus = share if args.device == "cuda" else 0.0  # cpu: a dry run of the plumbing
    barrier = Path(tempfile.mkdtemp(prefix=f"pack{k}-", dir=scratch))
    space = {
        "model": args.model,
        "cache": str(args.cache),
        "device": args.device,
        "batch_size": args.batch_size,
        "gpu": share,
        "trials": k,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "barrier": str(barrier),
        "slot": tune.grid_search(list(range(k))),
    }
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": args.cpus_per_trial, "gpu": gpus}),
        param_space=space,
        tune_config=tune.TuneConfig(max_concurrent_trials=k),
        run_config=tune.RunConfig(name=f"pack{k}", storage_path=str(scratch), verbose=0),
    )
    # a ResultGrid iterates through __getitem__ and __len__, which mypy does not count
    grid: Any = tuner.fit()
    rows = [r.metrics for r in grid if r.error is None and "frames_per_s" in (r.metrics or {})]
    errors = [str(r.error).splitlines()[-1][:300] for r in grid if r.error is not None]
    return {
        "trials": k,
        "gpu_each": share,
        "finished": len(rows),
        "total_frames_per_s": sum(r["frames_per_s"] for r in rows) if len(rows) == k else None,
        "per_trial": [r["frames_per_s"] for r in rows],
        "peak_gb": [r["peak_gb"] for r in rows],
        "barrier_met": all(r["barrier_met"] for r in rows),
        "errors": errors,
    }


def pack(args: argparse.Namespace) -> None:
    import ray

    from jersey_ray.bench import gpu_work  # the trainable by module path, not __main__'s copy

    result: dict[str, Any] = {"model": args.model, "seconds_each": args.seconds, "configs": []}
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-pack-") as scratch:
            for k in args.trials:
                config = _packed(gpu_work.pack_trial, k, args, Path(scratch))
                total = config["total_frames_per_s"]
                one = result["configs"][0]["total_frames_per_s"] if result["configs"] else total
                config["ratio_to_one"] = total / one if total and one else None
                result["configs"].append(config)
                _write(args.json, result)
                if config["finished"] < k:  # interrupted (Tune returns on SIGINT) or failing
                    break
    finally:
        ray.shutdown()


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    from jersey_ray import cli

    parser = cli.OneLineParser(prog="python -m jersey_ray.bench.gpu_work")
    sub = parser.add_subparsers(dest="part", required=True)
    data = sub.add_parser("data", help="the full synthetic data set and its cache")
    data.add_argument("--json", type=Path, required=True)
    p = sub.add_parser("pack", help="packed fractional trials under Tune")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--model", default="attn_bgru_luong")
    p.add_argument("--trials", type=cli.positive_ints, default=(1, 2, 4))
    p.add_argument("--seconds", type=float, default=12.0, help="timed window of every trial")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps before the barrier")
    p.add_argument("--cpus-per-trial", type=float, default=2.0)
    p.add_argument("--batch-size", type=cli.positive_int, default=64)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run")
    args = parser.parse_args(argv)
    if args.part == "data":
        prepare_data(args.json)
    else:
        pack(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
