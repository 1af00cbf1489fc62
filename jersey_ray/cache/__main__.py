"""``python -m jersey_ray.cache {build,verify}``: build (or reuse) a data root's Parquet cache, or
check a cache against its manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from jersey_ray import cli
from jersey_ray.cache.build import build_cache, summary_line
from jersey_ray.cache.store import verify_cache
from jersey_ray.config import DataConfig, layered
from jersey_ray.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.cache",
        description="Build the preprocessed Parquet cache of a data root (decoded and "
        "letterboxed once, split by track), or verify one.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,verify}")
    b = sub.add_parser("build", help="build (or reuse) the cache of a data root")
    b.add_argument("root", type=Path, metavar="ROOT", help="data root ROOT/<jersey>/<track>/<seq>")
    b.add_argument(
        "--out", metavar="DIR", help="cache folder or URI (default results/cache/<name>)"
    )
    cli.add_data_options(b)
    b.add_argument("--force", action="store_true", help="rebuild even if an identical cache exists")
    b.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    b.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar or notes (the summary line is still printed)",
    )
    v = sub.add_parser("verify", help="check every shard against the manifest (rows, sha256)")
    v.add_argument("cache", metavar="DIR", help="cache folder or URI")
    return p


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        manifest = verify_cache(args.cache)
        rows = sum(s["rows"] for s in manifest["shards"])
        print(f"cache {args.cache}: ok, {len(manifest['shards'])} shards, {rows} sequences, "
              f"fingerprint {manifest['fingerprint'][:12]}...")  # fmt: skip
        return 0
    data, _ = layered(
        DataConfig, [("command line", {"root": str(args.root), **cli.data_overrides(args)})]
    )
    result = build_cache(
        data, args.out, force=args.force, address=args.address, progress=not args.no_progress
    )
    if args.no_progress:  # the summary is the command's result, not progress
        print(summary_line(result.path, result.manifest, result.reused))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(partial(_main, sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
