"""``python -m jersey_ray.bench train``: a trial's training frames/s against the bare step ceiling.

Two numbers from one process, same model, batch size, sequence-length distribution, precision
and optimizer step (both run :func:`jersey_ray.train.run_epoch`, the trainer's own loop):

* **trial**: the real training loop over the cache's train split (device-resident data, the
  loader's gathers, on-device augmentation, shuffling across epoch boundaries);
* **ceiling**: the same step on a few random batches already on the device, whose lengths are
  drawn from the train split's lengths; no loader work at all.

Their ratio is the share of the step's speed the input pipeline leaves. With ``--compile`` both
run the compiled step, so the ceiling is the bare compiled step. Target on an H100 for
``attn_bgru_luong`` and ``basic_r18`` at the report's frame size, batch 64: >= 85%. Without
``--cache`` a small synthetic set is generated and cached in a temporary folder first (Ray Data
is used for that preprocessing only).

``--deterministic/--no-deterministic`` (default: the trial's, deterministic) states what
reproducibility costs; ``--cuda-graphs`` replays the backbone of full batches as CUDA graphs
(single-frame models on CUDA; the JSON counts the replays, so a silent fallback shows).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from jersey_ray import cli
from jersey_ray import metrics as M
from jersey_ray.cache.loader import Batch, SplitData, iter_batches, load_split
from jersey_ray.config import DataConfig, TrainConfig, replace
from jersey_ray.errors import UserError, run_cli
from jersey_ray.models import build_model
from jersey_ray.train.loop import make_generators
from jersey_ray.train.step import (
    Step,
    check_cuda_graphs,
    make_step,
    resolve_device,
    resolve_precision,
    run_epoch,
    set_determinism,
)

SYNTH_SEQUENCES = 240  # enough for a few distinct batches of 64 at any size
RANDOM_BATCHES = 8  # the ceiling cycles over these


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.bench train",
        description="Training frames/s of the real trial loop next to the bare step ceiling.",
    )
    parser.add_argument("--model", required=True, help="model id (python -m jersey_ray.models)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64)
    parser.add_argument(
        "--size",
        type=cli.size,
        metavar="HxW",
        help=f"frame size of the synthetic cache (default {DataConfig().size_text}); --cache "
        "fixes its own",
    )
    parser.add_argument(
        "--steps", type=cli.positive_int, default=200, help="timed steps per measurement"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="untimed steps before each measurement (more with --compile)",
    )
    parser.add_argument(
        "--rounds",
        type=cli.positive_int,
        default=3,
        help="alternating trial/ceiling rounds (medians shown)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay the backbone of full batches as CUDA graphs (single-frame models, CUDA)",
    )
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        help=f"deterministic kernels (default {TrainConfig().deterministic}, as a trial)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="cache to read (default: generate a small synthetic one)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers here")
    return parser


def synthetic_cache(data: DataConfig, scratch: Path) -> Path:
    """Generate a small synthetic data set at ``data``'s size and build its cache in ``scratch``."""
    from jersey_ray.cache.build import build_cache
    from jersey_ray.data.synth import generate

    root = scratch / "synth"
    generate(root, sequences=SYNTH_SEQUENCES, size=data.size, progress=False)
    built = build_cache(replace(data, root=str(root)), scratch / "cache", progress=False)
    return Path(built.path)


def random_batches(
    data: SplitData, cfg: TrainConfig, input_frames: int | None, device: torch.device
) -> list[Batch]:
    """Batches of random frames already on the device, lengths drawn from the split's (capped
    at the model's ``input_frames`` per sequence)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    height, width = data.size
    batches = []
    for _ in range(RANDOM_BATCHES):
        rows = torch.randint(len(data.lengths), (cfg.batch_size,), generator=gen)
        lengths = data.lengths[rows].clamp(max=input_frames or int(data.lengths.max()))
        n_frames = int(lengths.sum())
        frames = torch.randn(n_frames, 3, height, width, generator=gen).to(device)
        mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
        batches.append(
            Batch(
                frames=frames.contiguous(memory_format=torch.channels_last),
                mask=mask.to(device),
                tens=torch.randint(M.N_TENS, (cfg.batch_size,), generator=gen).to(device),
                ones=torch.randint(M.N_ONES, (cfg.batch_size,), generator=gen).to(device),
                index=rows,
                n_frames=n_frames,
            )
        )
    return batches


def loader_stream(data: SplitData, cfg: TrainConfig, frames: int | None, device) -> Iterator[Batch]:
    """The trial's training batches, epoch after epoch, as the trainer draws them."""
    shuffle, augment = make_generators(cfg.seed, device)
    for _ in itertools.count():
        yield from iter_batches(
            data,
            cfg.batch_size,
            frames=frames,
            shuffle=True,
            generator=shuffle,
            augment=cfg.augment,
            aug_generator=augment,
            training=True,
        )


def frames_per_s(step: Step, batches: Iterator[Batch], warmup: int, steps: int) -> float:
    """Real frames per second over ``steps`` training steps after ``warmup`` untimed ones."""
    counter = M.SplitCounter(step.device)
    run_epoch(step, itertools.islice(batches, warmup), counter)
    _sync(step.device)
    start = time.perf_counter()
    n_frames = run_epoch(step, itertools.islice(batches, steps), counter)
    counter.compute("train")  # the trainer's per-epoch sync belongs in the measurement
    _sync(step.device)
    return n_frames / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, cache: Path) -> dict:
    cfg = TrainConfig(
        model=args.model,
        batch_size=args.batch_size,
        device=args.device,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        pretrained="none",  # weights do not change the speed
    )
    if args.deterministic is not None:
        cfg = replace(cfg, deterministic=args.deterministic)
    device = resolve_device(cfg.device)
    set_determinism(cfg.deterministic)
    data = load_split(cache, "train", device)
    torch.manual_seed(cfg.seed)
    step = make_step(cfg, build_model(cfg.model, cfg.pretrained), len(data.lengths), device)
    stream = loader_stream(data, cfg, step.input_frames, device)
    ceiling_batches = itertools.cycle(random_batches(data, cfg, step.input_frames, device))
    trial, ceiling = [], []
    for _ in range(args.rounds):  # alternated, so drifting clocks or neighbours hit both
        trial.append(frames_per_s(step, stream, args.warmup, args.steps))
        ceiling.append(frames_per_s(step, ceiling_batches, args.warmup, args.steps))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    return {
        "model": cfg.model,
        "device": f"{device.type} ({name}, {torch.get_num_threads()} threads)",
        "precision": resolve_precision(cfg, device),
        "compile": cfg.compile,
        "cuda_graphs": cfg.cuda_graphs,
        "graph_replays": step.graphs.replays if step.graphs else 0,
        "graph_eager_calls": step.graphs.eager_calls if step.graphs else 0,
        "deterministic": cfg.deterministic,
        "batch_size": cfg.batch_size,
        "size": list(data.size),
        "steps": args.steps,
        "rounds": args.rounds,
        "mean_frames_per_sequence": float(
            data.lengths.clamp(max=step.input_frames or int(data.lengths.max())).double().mean()
        ),
        "cache": str(cache) if args.cache else "synthetic (temporary)",
        "trial_frames_per_s": statistics.median(trial),
        "ceiling_frames_per_s": statistics.median(ceiling),
        "ratio": statistics.median(trial) / statistics.median(ceiling),
        "trial_rounds": trial,
        "ceiling_rounds": ceiling,
        "torch": torch.__version__,
    }


def report_lines(result: dict) -> str:
    return (
        f"{result['model']} on {result['device']} ({result['precision']}, batch "
        f"{result['batch_size']}, {result['size'][0]}x{result['size'][1]}, "
        f"{result['mean_frames_per_sequence']:.1f} frames/sequence, compile {result['compile']}, "
        f"CUDA graphs {result['cuda_graphs']}, deterministic {result['deterministic']})\n"
        f"  trial loop : {result['trial_frames_per_s']:9.1f} frames/s (median of "
        f"{result['rounds']} rounds of {result['steps']} steps)\n"
        f"  bare step  : {result['ceiling_frames_per_s']:9.1f} frames/s\n"
        f"  ratio      : {100 * result['ratio']:9.1f} %"
    )


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        if args.warmup < 0:
            raise UserError(f"--warmup must be >= 0, got {args.warmup}")
        if args.cache is not None and args.size is not None:
            raise UserError("--size applies to the synthetic cache; --cache fixes its own size")
        if args.cuda_graphs:  # before any data is made
            # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
            check_cuda_graphs(resolve_device(args.device), build_model(args.model).input_frames)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
            data = DataConfig() if args.size is None else DataConfig(size=args.size)
            cache = args.cache or synthetic_cache(data, Path(scratch))
            result = measure(args, cache)
        print(report_lines(result))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
