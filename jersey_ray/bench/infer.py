"""``python -m jersey_ray.bench infer``: deployment latency and throughput per precision, compiler
and runtime, with the test accuracy of each (the report's Table 4, done right).

The model comes from a checkpoint (``--checkpoint``), from a sweep's run folder (``--run``: the
finished trial with the best validation acc_number; test metrics play no part, unlike the
reference, report-spec 8.10/8.12) or is built with random weights (``--model``: timing only).
Every variant of :mod:`jersey_ray.bench.variants` is timed on two inputs per batch size, each
with fixed random frames on the device: *fixed* (every sequence ``--frames`` long, as the
reference) and *variable* (lengths uniform in 1..frames from a fixed seed). With a test split
(``--data`` or ``--cache``) each variant's test acc_number is compared with fp32 eager: it is
*preserved* when at most one sequence changes. Outputs: Markdown (with the report's own rows,
labelled), JSON and a latency-vs-batch plot, all from one result dict
(:mod:`jersey_ray.bench.infer_report` renders them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jersey_ray import cli
from jersey_ray.bench.infer_report import render_markdown, write_plot
from jersey_ray.bench.infer_run import (
    EVAL_BATCH,
    INPUT_SEED,
    PRESERVED_SEQUENCES,
    add_comparisons,
    example_input,
    make_input,
    run_all,
)
from jersey_ray.bench.infer_targets import (
    RANDOM_NOTE,
    machine_info,
    report_table4,
    targets,
    timed_text,
)
from jersey_ray.bench.variants import (
    BASELINE,
    BY_NAME,
    VARIANTS,
    Context,
)
from jersey_ray.cache.build import build_cache
from jersey_ray.cache.loader import SplitData, keep_freed_host_memory, load_split
from jersey_ray.cache.store import data_config, read_manifest
from jersey_ray.config import DataConfig, TrainConfig, replace, to_dict
from jersey_ray.errors import UserError, run_cli
from jersey_ray.models import build_model, get_spec
from jersey_ray.results.runs import BEST_VAL_ACC_NUMBER, CHOICE_RULE, chosen_checkpoint, read_run
from jersey_ray.train.checkpoint import load_model
from jersey_ray.train.step import resolve_device

DEFAULT_BATCH_SIZES = (1, 4, 8, 16, 64, 256)


# ------------------------------------------------------------------------ model and data


@dataclass
class Loaded:
    model: torch.nn.Module
    info: dict[str, Any]
    cfg: TrainConfig | None
    """The checkpoint's training config; None for random weights."""
    data: DataConfig | None
    """The data settings it was trained on; None for random weights."""


def random_model(model_id: str, device: torch.device) -> Loaded:
    spec = get_spec(model_id)
    torch.manual_seed(INPUT_SEED)
    model = build_model(model_id, pretrained="none").to(device).eval()
    info = {"id": model_id, "display": spec.display, "weights": "random", "note": RANDOM_NOTE}
    return Loaded(model, info, None, None)


def checkpoint_model(path: Path, device: torch.device) -> Loaded:
    trained = load_model(path, device)
    cfg, data = trained.train, trained.data
    info = {
        "id": cfg.model,
        "display": get_spec(cfg.model).display,
        "weights": "checkpoint",
        "checkpoint": str(path),
        "epoch": trained.checkpoint.get("epoch"),
        "seed": cfg.seed,
        "trained_size": list(data.size),
        "trained_max_frames": data.max_frames,
    }
    return Loaded(trained.model, info, cfg, data)


def run_model(run_dir: Path, device: torch.device) -> Loaded:
    """The finished trial chosen on validation, and its latest best.pt."""
    run = read_run(run_dir)
    trial, path = chosen_checkpoint(run)
    loaded = checkpoint_model(path, device)
    finished = [t for t in run.trials if t.status == "finished"]
    loaded.info["chosen"] = {
        "run": str(run_dir),
        "trial": trial.dir,
        "model": trial.model,
        "seed": trial.seed,
        "best_val_acc_number": trial.last[BEST_VAL_ACC_NUMBER],
        "finished_trials": len(finished),
        "rule": CHOICE_RULE,
    }
    return loaded


def check_cache_fits(cache: Path, data: DataConfig) -> None:
    """A cache built with other data settings is not the checkpoint's test split (the data
    root may differ: the same data can move)."""
    have = to_dict(data_config(read_manifest(cache)))
    want = to_dict(data)
    diff = [
        f"{k} {have[k]} (checkpoint: {want[k]})" for k in want if k != "root" and have[k] != want[k]
    ]
    if diff:
        raise UserError(
            f"{cache}: built with {', '.join(diff)}; pass a cache built with the checkpoint's "
            "settings, or the data root with --data"
        )


def load_test_split(
    args: argparse.Namespace, loaded: Loaded, device: torch.device
) -> tuple[SplitData | None, dict[str, Any]]:
    if args.data is None and args.cache is None:
        reason = RANDOM_NOTE if loaded.cfg is None else "no test data given (--data or --cache)"
        return None, {"checked": False, "reason": reason}
    assert loaded.data is not None  # check_args refuses data with random weights
    if args.data is not None:
        cache = build_cache(replace(loaded.data, root=str(args.data))).path
    else:
        cache = args.cache
        check_cache_fits(cache, loaded.data)
    data = load_split(cache, "test", device)
    if len(data) == 0:
        raise UserError(f"{cache}: the test split is empty; nothing to check accuracy on")
    info = {
        "checked": True,
        "split": "test",
        "cache": str(cache),
        "sequences": len(data),
        "eval_batch": EVAL_BATCH,
        "rule": f"preserved when |delta correct| <= {PRESERVED_SEQUENCES} sequence against "
        "fp32 eager",
    }
    return data, info


# --------------------------------------------------------------------------------- CLI


def benchmark(args: argparse.Namespace, loaded: Loaded, data, data_info, device) -> dict:
    size = args.size
    # a single-frame model reads only the anchor: time it on what it reads
    frames = min(args.frames, loaded.model.input_frames or args.frames)
    if device.type == "cpu":
        keep_freed_host_memory()  # else the first variant alone pays fresh page faults per call
    selected = [v for v in VARIANTS if v.name in set(args.variants) | {BASELINE}]
    inputs = [
        make_input(kind, b, frames, size, device)
        for kind in ("fixed", "variable")
        for b in args.batch_sizes
    ]
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as scratch:
        steps = max(frames, int(data.lengths.max()) if data is not None else 0)
        ctx = Context(loaded.model, device, example_input(size, device), Path(scratch), steps)
        records, rows = run_all(ctx, selected, inputs, args, data)
    add_comparisons(records, rows, len(data) if data is not None else None)
    machine = machine_info(device)
    return {
        "benchmark": "python -m jersey_ray.bench infer",
        "model": loaded.info,
        "machine": machine,
        "settings": {
            "batch_sizes": list(args.batch_sizes),
            "size": list(size),
            "frames": frames,
            "iters": args.iters,
            "warmup": args.warmup,
            "variants": [v.name for v in selected],
        },
        "timed": timed_text(device, args.warmup, args.iters),
        "inputs": {
            "fixed": f"every sequence {frames} frames, all valid",
            "variable": f"lengths uniform in 1..{frames} (seed {INPUT_SEED} + batch size), "
            "mask width = the longest",
            "lengths": {str(i.batch): i.lengths for i in inputs if i.kind == "variable"},
            "check": f"agreement with fp32 is measured on the variable batch of {inputs[-1].batch}",
        },
        "accuracy": data_info,
        "variants": records,
        "rows": rows,
        "targets": targets(loaded.info["id"], machine, rows, records),
        "report_table4": report_table4(),
    }


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none)'}; valid: {', '.join(BY_NAME)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.bench infer",
        description="Deployment latency, throughput and test accuracy per precision, compiler "
        "and runtime (the report's Table 4, done right).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, metavar="PATH", help="a trial's best.pt")
    src.add_argument(
        "--run",
        type=Path,
        metavar="RUN_DIR",
        help="a sweep's run folder: benchmark its best trial on validation",
    )
    src.add_argument("--model", metavar="ID", help="model id with random weights: timing only")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA if visible"
    )
    p.add_argument(
        "--batch-sizes",
        type=cli.positive_ints,
        default=DEFAULT_BATCH_SIZES,
        metavar="B,B,...",
        help="default 1,4,8,16,64,256",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--data",
        type=Path,
        metavar="ROOT",
        help="data root: build or reuse its cache, check accuracy on its test split",
    )
    data.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="a cache built with the checkpoint's size, frames and split seed",
    )
    p.add_argument(
        "--size",
        type=cli.size,
        metavar="HxW",
        help=f"timed frame size (default: the checkpoint's, {DataConfig().size_text} with --model)",
    )
    p.add_argument(
        "--frames",
        type=cli.positive_int,
        metavar="T",
        help=f"frames per timed sequence (default: the checkpoint's max, {DataConfig().max_frames} "
        "with --model)",
    )
    p.add_argument("--iters", type=int, default=100, help="timed calls per input (default 100)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls before (default 20)")
    p.add_argument(
        "--variants",
        type=_variants,
        default=tuple(BY_NAME),
        metavar="NAME,...",
        help=f"subset to run (fp32, the baseline, always runs): {', '.join(BY_NAME)}",
    )
    p.add_argument(
        "--threads",
        type=cli.positive_int,
        metavar="N",
        help="intra-op threads for torch and ONNX Runtime (default: torch's, one per core)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the result as JSON")
    p.add_argument("--md", type=Path, metavar="OUT", help="write the Markdown tables")
    p.add_argument("--plot", type=Path, metavar="OUT", help="write the latency-vs-batch PNG")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.iters < 1 or args.warmup < 0:
        raise UserError(f"--iters must be >= 1 and --warmup >= 0 (got {args.iters}, {args.warmup})")
    if args.model is not None and (args.data is not None or args.cache is not None):
        raise UserError(
            "--data/--cache check a trained model's accuracy; with --model the "
            "weights are random (use --checkpoint or --run)"
        )


def load(args: argparse.Namespace, device: torch.device) -> Loaded:
    if args.model is not None:
        return random_model(args.model, device)
    if args.checkpoint is not None:
        return checkpoint_model(args.checkpoint, device)
    return run_model(args.run, device)


def write_outputs(args: argparse.Namespace, result: dict[str, Any], markdown: str) -> None:
    for path, text in ((args.json, json.dumps(result, indent=2) + "\n"), (args.md, markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.plot is not None:
        write_plot(result, args.plot)


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        check_args(args)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        loaded = load(args, device)
        cfg = loaded.cfg
        # ascending: the check input is the largest batch, and the plot's ticks follow the list
        args.batch_sizes = tuple(sorted(set(args.batch_sizes)))
        trained = loaded.data or DataConfig()
        args.size = args.size or trained.size
        args.frames = args.frames or trained.max_frames
        if cfg and args.size != trained.size and (args.data or args.cache):
            raise UserError(
                f"--size {args.size[0]}x{args.size[1]}: accuracy is checked at the checkpoint's "
                f"size {trained.size_text}, and every variant runs one size; drop --size"
            )
        data, data_info = load_test_split(args, loaded, device)
        result = benchmark(args, loaded, data, data_info, device)
        markdown = render_markdown(result)
        write_outputs(args, result, markdown)
        print(markdown)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
