"""``python -m jersey_ray.bench restart CACHE``: what a trial pays at each (re)start to trust its
cache, before and after cheap restarts.

A sweep's driver hashes every shard once (:func:`~jersey_ray.cache.store.verify_for_trials`);
each trial start (the first, and every retry, ASHA resume or ``--resume``) then checks only the
manifest's digest and the shard sizes (:func:`~jersey_ray.cache.store.check_verified`). Before,
every trial start hashed the whole cache twice: :func:`~jersey_ray.train.loop.load_data` ran
:func:`~jersey_ray.cache.store.verify_cache`, then the first ``load_split`` ran it again (its
per-process memo is empty in a fresh trial process). Timed on CACHE, median of ``--repeat``:

* ``full verify``: one :func:`verify_cache` (what ``cache verify`` and the driver run);
* ``cheap check``: one :func:`check_verified` with the driver's token;
* ``trial start-up before``: the old data start (verify, then load every split, verifying again);
* ``trial start-up after``: ``load_data(cache, device, verified=token)``.

The start-up figures include reading the splits onto the device, which a restart pays either
way. The page cache is warm (the cache was just read): on a cold cache or network storage the
hashing costs more and the cheap check about the same. Speed targets live here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from jersey_ray import cli
from jersey_ray.cache import loader
from jersey_ray.cache.store import (
    check_verified,
    read_manifest,
    splits_of,
    verify_cache,
    verify_for_trials,
)
from jersey_ray.errors import run_cli


def _median_s(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        loader._VERIFIED.clear()  # a fresh trial process has an empty memo
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _start_before(cache: str, device: str) -> None:
    """The data start of a trial before cheap restarts (two full verifications)."""
    manifest = verify_cache(cache)
    for split in splits_of(manifest):
        loader.load_split(cache, split, device)


def _start_after(cache: str, device: str, token: str) -> None:
    from jersey_ray.train.loop import load_data

    load_data(cache, device, verified=token)


def measure(cache: str, device: str, repeat: int) -> dict[str, Any]:
    """The four timings (seconds) and what the cache holds."""
    manifest = read_manifest(cache)
    token = verify_for_trials(cache)  # also warms the page cache for every timing below
    return {
        "cache": cache,
        "size": manifest["data"]["size"],
        "max_frames": manifest["data"]["max_frames"],
        "sequences": manifest["sequences"],
        "frames": manifest["frames"],
        "shards": len(manifest["shards"]),
        "bytes": sum(s["bytes"] for s in manifest["shards"]),
        "device": device,
        "repeat": repeat,
        "full_verify_s": _median_s(partial(verify_cache, cache), repeat),
        "cheap_check_s": _median_s(partial(check_verified, cache, token), repeat),
        "start_before_s": _median_s(partial(_start_before, cache, device), repeat),
        "start_after_s": _median_s(partial(_start_after, cache, device, token), repeat),
        "load_average": list(os.getloadavg()),
    }


def report(r: dict[str, Any]) -> str:
    size = "x".join(map(str, r["size"]))
    saved = r["start_before_s"] - r["start_after_s"]
    return "\n".join(
        [
            f"cache {r['cache']}: {size}, {r['max_frames']} frames max, {r['sequences']} "
            f"sequences, {r['frames']} frames, {r['shards']} shards, {r['bytes'] / 1e6:.1f} MB; "
            f"device {r['device']}, median of {r['repeat']}, load average "
            f"{r['load_average'][0]:.1f}",
            f"  full verify (driver, once a sweep)  {r['full_verify_s'] * 1e3:10.1f} ms",
            f"  cheap check (each trial start)      {r['cheap_check_s'] * 1e3:10.1f} ms",
            f"  trial start-up before (2x verify)   {r['start_before_s'] * 1e3:10.1f} ms",
            f"  trial start-up after (cheap check)  {r['start_after_s'] * 1e3:10.1f} ms",
            f"  saved per trial start               {saved * 1e3:10.1f} ms "
            f"({r['start_before_s'] / max(r['start_after_s'], 1e-9):.1f}x faster)",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.bench restart",
        description="What a trial's (re)start pays to trust its cache: the full verification "
        "against the driver's token check, and the data start-up before and after.",
    )
    p.add_argument("cache", metavar="CACHE", help="a built cache (folder or URI)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--repeat", type=cli.positive_int, default=3, help="timings per figure (3)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    return p


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    result = measure(args.cache, args.device, args.repeat)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(partial(_run, sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
