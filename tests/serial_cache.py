"""Real caches without Ray, for tests that need a cache but not Ray Data.

:func:`serial_pipeline` replaces the build's Ray Data stage with the same plain functions run
in this process (:func:`~jersey_ray.cache.decode.decode_batch`, then
:func:`~jersey_ray.cache.decode.keep_split` and one ``pq.write_table`` per split), so
``build_cache`` writes real shards, describes, hashes and installs them exactly as a Ray
build does. Tests of the disk-full and restart paths use it: they exercise what happens around
the pipeline, in seconds; the Ray pipeline itself is tested in test_cache.py.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jersey_ray.cache import build as B
from jersey_ray.cache.decode import decode_batch, keep_split
from jersey_ray.cache.store import SPLIT_FOLDERS


def serial_pipeline(plan, tmp: Path, progress: bool) -> list[dict]:
    """``build._run_pipeline`` without Ray: decode every sequence, write one shard per split."""
    items = [{k: v for k, v in item.items()} for item in plan.items]
    table = decode_batch(
        pa.Table.from_pylist(items), root=str(plan.root), size=tuple(plan.data.size)
    )
    for split in SPLIT_FOLDERS:
        part = keep_split(table, split=split)
        if part.num_rows:
            (tmp / split).mkdir()
            pq.write_table(part, tmp / split / "part-00000.parquet", **B.PARQUET_ARGS)
    return table.drop_columns(["frames"]).to_pylist()


def use_serial_build(monkeypatch) -> None:
    """Make ``build_cache`` run :func:`serial_pipeline` and never start Ray."""
    monkeypatch.setattr(B, "_run_pipeline", serial_pipeline)
    monkeypatch.setattr(B, "_start_ray", lambda address: False)
    monkeypatch.setattr(B, "_stop_ray", lambda started: None)


def patch_for_subprocess() -> None:
    """:func:`use_serial_build` in a child process (no pytest there)."""
    B._run_pipeline = serial_pipeline
    B._start_ray = lambda address: False
    B._stop_ray = lambda started: None
