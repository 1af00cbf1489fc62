"""``python -m jersey_ray.train --model ID (--data ROOT | --cache DIR)``: one trial, no Ray.

Settings are resolved once, in order (later wins): TrainConfig defaults < the protocol of the
model's phase < ``--set`` and the flags. Data settings come from the cache: ``--data ROOT``
builds (or reuses) the cache that the data options describe, named as the sweep names it;
``--cache DIR`` reads them from that cache's manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jersey_ray import cli
from jersey_ray import metrics as M
from jersey_ray.config import DataConfig, TrainConfig, layered, replace, to_dict
from jersey_ray.errors import UserError, run_cli
from jersey_ray.models import build_model, protocol
from jersey_ray.storage import is_nonempty_folder
from jersey_ray.train.checkpoint import LocalReporter
from jersey_ray.train.loop import load_data, train
from jersey_ray.train.step import resolve_device

RUNS_ROOT = Path("results/train")
FLAG_KEYS = {
    "model": "--model",
    "seed": "--seed",
    "epochs": "--epochs",
    "device": "--device",
    "pretrained": "--pretrained",
    "compile": "--compile",
    "profile_steps": "--profile",
}
"""TrainConfig keys with their own flag (``--set`` refuses them)."""


def parse_sets(items: list[str], flags: Mapping[str, str] = FLAG_KEYS) -> dict[str, Any]:
    """``--set key=value`` pairs; values are JSON (``3e-4``, ``[0.9, 0.99]``) or plain strings.
    Keys with a flag of their own (``flags``, the data flags) are refused (the sweep passes its
    own flags)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set lr=3e-4")
        if key in flags or key in cli.DATA_FLAGS:
            flag = flags.get(key) or cli.DATA_FLAGS[key]
            raise UserError(f"--set {key}: use {flag} instead")
        if key in values:
            raise UserError(f"--set {key} given twice")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw  # a bare word: from_dict rejects it unless the field is a string
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.train",
        description="Run one training trial (the protocol of the model's phase) without Ray. "
        "Writes OUT/config.json, metrics.jsonl, best.pt, last.pt, test.json, "
        "test_predictions.csv and TensorBoard events.",
    )
    parser.add_argument("--model", required=True, help="model id (python -m jersey_ray.models)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, metavar="ROOT", help="raw data root: builds or reuses its cache"
    )
    source.add_argument(
        "--cache", type=Path, metavar="DIR", help="an existing cache (its manifest fixes the data)"
    )
    d = TrainConfig()
    parser.add_argument("--epochs", type=int, help=f"training epochs (default {d.epochs})")
    parser.add_argument(
        "--seed", type=int, help=f"seed of init, shuffling, augmentation ({d.seed})"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help=f"default {d.device}")
    parser.add_argument(
        "--pretrained", metavar="none|imagenet|PATH", help=f"default {d.pretrained}"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"run folder (default {RUNS_ROOT}/<model>/seed<seed>)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--profile",
        type=cli.positive_int,
        metavar="STEPS",
        help="record STEPS training steps of the first epoch with torch.profiler (after a short "
        "warm-up) into OUT/profile/ (TensorBoard's profiler plugin, Perfetto)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.pt"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig field, e.g. --set lr=3e-4 (repeatable; JSON values)",
    )
    cli.add_data_options(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < the model's phase protocol < the command line."""
    given = {
        "model": args.model,
        "seed": args.seed,
        "epochs": args.epochs,
        "device": args.device,
        "pretrained": args.pretrained,
        "compile": True if args.compile else None,
        "profile_steps": args.profile,
    }
    flags = {**parse_sets(args.set), **{k: v for k, v in given.items() if v is not None}}
    layers = [("model protocol", protocol(args.model)), ("command line", flags)]
    return layered(TrainConfig, layers)[0]


def check_out(out: Path, resume: bool) -> None:
    if resume:
        if not (out / "last.pt").is_file():
            raise UserError(f"{out}: no last.pt to resume from; drop --resume to start a run")
    elif is_nonempty_folder(out):
        raise UserError(
            f"{out} already holds a run; pass --resume to continue it, or another --out"
        )


def prepare_cache(args: argparse.Namespace) -> str:
    """Build or reuse the cache (--data) or check the given one (--cache); returns its path."""
    from jersey_ray.cache.build import build_cache
    from jersey_ray.cache.store import data_config, read_manifest

    given = cli.data_overrides(args)
    if args.data is not None:
        data, _ = layered(DataConfig, [("command line", {"root": str(args.data), **given})])
        return build_cache(data).path
    config = data_config(read_manifest(args.cache))
    wanted, built = to_dict(replace(config, **given)), to_dict(config)
    clash = sorted(k for k in given if wanted[k] != built[k])
    if clash:
        flags = ", ".join(f"{cli.DATA_FLAGS[k]} (built with {built[k]})" for k in clash)
        raise UserError(
            f"{args.cache}: the cache fixes the data settings; drop {flags} or build another "
            "cache with --data"
        )
    return str(args.cache)


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        cfg = config_from_args(args)
        build_model(cfg.model, cfg.pretrained)  # bad ids or missing weights fail before data
        out = args.out or RUNS_ROOT / cfg.model / f"seed{cfg.seed}"
        check_out(out, args.resume)
        cache = prepare_cache(args)
        data = load_data(cache, resolve_device(cfg.device))
        resume = out if args.resume else None
        test = train(cfg, data, out, LocalReporter(out, echo=True), resume=resume)
        print(
            f"test (best val epoch): acc_number {test[M.TEST_ACC_NUMBER]:.4f}, "
            f"tens {test[M.TEST_ACC_TENS]:.4f}, ones {test[M.TEST_ACC_ONES]:.4f}, "
            f"loss {test[M.TEST_LOSS]:.4f}; files in {out}"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
