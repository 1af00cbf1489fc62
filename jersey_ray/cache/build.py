"""Building the cache with Ray Data: every selected frame decoded once, letterboxed, stored as
Parquet shards.

``build_cache(data)`` plans the build (:mod:`jersey_ray.cache.plan`: index, frame selection,
split, fingerprint), then runs a Ray Data pipeline: ``from_items`` (one item per sequence,
sorted by split and id) -> ``map_batches`` (:func:`jersey_ray.cache.decode.decode_batch`, a
plain function on a ``TaskPoolStrategy``) -> materialized in the object store with a progress
bar -> the small columns to the driver (skips, drops, counts) -> ``split_at_indices`` -> per
split ``write_parquet`` into ``<cache>/<split>/part-NNNNN.parquet`` (about 128 MB of raw frames
per shard, uncompressed). The manifest is written last and the folder installed atomically
(:mod:`jersey_ray.cache.store`).

A full disk: before Ray starts, the free space at ``out`` is checked against the build's size
(:func:`estimate_bytes`, the raw frames); a build that still runs out of space removes its
temporary folder and raises :class:`~jersey_ray.disk_space.NoSpaceError` (one line: the path,
the space needed and free). A cache that was already there is never touched by a failed build.

Ray and Tune: the build runs on the driver before any trial exists, with the whole cluster
free, and trials only read the Parquet with pyarrow (:mod:`jersey_ray.cache.loader`, no Ray
Data), so the documented deadlock (trials holding every CPU while a Ray Data job inside them
waits for one) cannot happen. With ``--address`` every node must see the data root at the same
path (shared file system); the Parquet is written by Ray Data tasks into a folder the driver's
node can rename.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jersey_ray.cache.decode import decode_batch, keep_split
from jersey_ray.cache.plan import Plan, cache_location, make_plan
from jersey_ray.cache.store import (
    CACHE_FORMAT,
    MANIFEST,
    SPLIT_FOLDERS,
    CacheError,
    check_out,
    describe_shards,
    install_local,
    install_uri,
    leftovers,
    reusable,
    splits_of,
)
from jersey_ray.config import DataConfig, to_dict
from jersey_ray.disk_space import check_free, no_space_error
from jersey_ray.progress import bar as progress_bar
from jersey_ray.storage import is_uri, write_json

log = logging.getLogger(__name__)

SHARD_BYTES = 128 * 2**20  # raw frame bytes per shard: inside the 100-200 MB band
DECODE_BATCH = 32  # sequences per map_batches call (about 20 MB of frames at the report's size)
# Raw frames barely compress (lz4: -20% on synthetic crops) and lz4 tripled the write time of
# a build on 2 cores; uncompressed shards also read fastest (~1.7 GB/s). Parquet's default
# dictionary encoding put whole shards of (all distinct) frames into one dictionary page,
# hashing every byte on write and costing a decoding copy on read: dictionaries only for the
# repeated strings, and no min/max statistics (nothing filters on them).
SPACE_HINT = "free space or use --out/--storage elsewhere"
PARQUET_ARGS = {
    "compression": "none",
    "use_dictionary": ["jersey", "track"],
    "write_statistics": False,
}


@dataclass(frozen=True)
class CacheResult:
    path: str  # the cache folder or URI
    manifest: dict[str, Any]
    reused: bool
    ray_start_s: float = 0.0  # Ray start-up, excluded from the manifest's frames/s
    total_s: float = 0.0  # wall time of build_cache, Ray start-up included


def _part_names():
    """write_parquet file names ``w<write task>-<file>.parquet``: sortable, no random part."""
    from ray.data.datasource import FilenameProvider

    class PartNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"w{task_index:05d}-{{i}}.parquet"

    return PartNames()


def _rename_parts(folder: Path) -> None:
    """``w<task>-<i>.parquet`` -> ``part-00000.parquet``, ... in (task, i) order."""
    key = lambda p: tuple(int(x) for x in re.findall(r"\d+", p.name))  # noqa: E731
    for n, path in enumerate(sorted(folder.glob("w*-*.parquet"), key=key)):
        path.rename(folder / f"part-{n:05d}.parquet")


@contextlib.contextmanager
def _ray_data_context():
    """Ray Data's console log and progress off (ours are shown), deterministic order on, and
    no per-operator CPU reservation.

    The reservation (half the CPUs split among the operators) let one decode task run at a
    time on 2 CPUs (measured: 305 sequences/s, one task's rate; 1.5x faster without it). Our
    operators cannot starve each other: ``from_items`` is a single task that runs first.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        ctx.op_resource_reservation_enabled,
    )
    ctx.execution_options.preserve_order = True  # deterministic row order and shard content
    ctx.enable_progress_bars = False
    ctx.op_resource_reservation_enabled = False
    console = [
        (h, h.level)
        for h in logging.getLogger("ray.data").handlers
        if not isinstance(h, logging.FileHandler) and "File" not in type(h).__name__
    ]
    for handler, _ in console:
        handler.setLevel(logging.WARNING)
    # This logger only warns that the progress bars are off, which is our choice (ours show).
    bars_log = logging.getLogger("ray.data._internal.progress")
    bars_level = bars_log.level
    bars_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        (
            ctx.execution_options.preserve_order,
            ctx.enable_progress_bars,
            ctx.op_resource_reservation_enabled,
        ) = saved
        for handler, level in console:
            handler.setLevel(level)
        bars_log.setLevel(bars_level)


def _decode_all(plan: Plan, progress: bool):
    """Run the decode stage to completion with a progress bar; a materialized dataset."""
    import ray.data

    blocks = max(1, math.ceil(len(plan.items) / DECODE_BATCH))
    ds = ray.data.from_items(plan.items, override_num_blocks=blocks).map_batches(
        # its keyword-only arguments come through fn_kwargs, which Ray's type for fn ignores
        decode_batch,  # type: ignore[arg-type]
        batch_size=DECODE_BATCH,
        batch_format="pyarrow",
        zero_copy_batch=True,
        fn_kwargs={"root": str(plan.root), "size": tuple(plan.data.size)},
        compute=ray.data.TaskPoolStrategy(),
    )
    refs = []
    bar = progress_bar(
        total=len(plan.items), desc="cache: decoding", unit="seq", disable=not progress
    )
    with bar:
        # Like materialize(), plus a progress bar: keep the block refs as they complete.
        for bundle in ds.iter_internal_ref_bundles():
            if any(s is not None for s in bundle.slices):
                raise RuntimeError("Ray Data returned a sliced block; expected whole blocks")
            for entry in bundle.blocks:
                refs.append(entry.ref)
                bar.update(entry.metadata.num_rows)
    return ray.data.from_arrow_refs(refs)


def _await_free_cpu(timeout_s: float = 5.0) -> None:
    """Wait until the cluster's resource view shows a free CPU again.

    The view lags the end of the previous Ray Data job by a moment, and a job that starts
    meanwhile warns that it "will hang" (it does not). A CPU still busy after the timeout is
    real contention, and Ray's warning about it is then shown.
    """
    import ray

    deadline = time.monotonic() + timeout_s
    while not ray.available_resources().get("CPU") and time.monotonic() < deadline:
        time.sleep(0.05)


def _run_pipeline(plan: Plan, tmp: Path, progress: bool) -> list[dict[str, Any]]:
    """Decode and write the shards into ``tmp``; returns the per-sequence metadata rows."""
    import ray.data

    size = plan.data.size
    with _ray_data_context():
        decoded = _decode_all(plan, progress)
        meta = decoded.drop_columns(["frames"]).take_all()
        if len(meta) != len(plan.items):
            raise RuntimeError(f"decoded {len(meta)} of {len(plan.items)} sequences")
        row_bytes = max(1, plan.frames_selected) * size[0] * size[1] * 3 / max(1, len(meta))
        rows_per_shard = max(1, int(SHARD_BYTES // row_bytes))
        sizes = Counter(item["split"] for item in plan.items)
        bounds = np.cumsum([sizes[s] for s in SPLIT_FOLDERS])[:-1].tolist()
        _await_free_cpu()
        parts = decoded.split_at_indices(bounds)  # items are sorted by split
        bar = progress_bar(SPLIT_FOLDERS, desc="cache: writing", unit="split", disable=not progress)
        for split, part in zip(bar, parts, strict=True):
            if not any(m["split"] == split and m["n_frames"] for m in meta):
                continue
            _await_free_cpu()
            part.map_batches(
                keep_split,
                batch_format="pyarrow",
                fn_kwargs={"split": split},
                compute=ray.data.TaskPoolStrategy(),
            ).write_parquet(
                str(tmp / split),
                filename_provider=_part_names(),
                min_rows_per_file=rows_per_shard,
                mode="overwrite",  # a fresh folder; "append" would demand random file names
                **PARQUET_ARGS,
            )
            _rename_parts(tmp / split)
    return meta


def _manifest(plan: Plan, meta: list[dict[str, Any]], shards: list[dict[str, Any]]) -> dict:
    by_seq = {item["seq_id"]: item for item in plan.items}
    skipped = [{"path": s.path, "reason": s.reason, "stage": "index"} for s in plan.index.skipped]
    dropped, anchors = [], []
    frames: defaultdict[tuple[str, str], int] = defaultdict(int)  # (jersey, split) -> frames
    for row in meta:
        item = by_seq[row["seq_id"]]
        failed = [f.split("\t", 2) for f in row["skipped"]]
        skipped += [{"path": p, "reason": r, "detail": d, "stage": "decode"} for p, r, d in failed]
        bad = {p for p, _, _ in failed}
        if not row["n_frames"]:
            dropped.append({"seq_id": row["seq_id"], "reason": "no_decodable_frame"})
            continue
        if item["paths"][0] in bad:
            now = next(p for p in item["paths"] if p not in bad)
            anchors.append({"seq_id": row["seq_id"], "failed": item["paths"][0], "anchor": now})
        frames[row["jersey"], row["split"]] += row["n_frames"]
    kept = {m["seq_id"] for m in meta if m["n_frames"]}
    from jersey_ray.data.split import split_counts

    counts = split_counts([s for s in plan.index.sequences if s.seq_id in kept], plan.assignment)
    for jersey, per_split in counts["per_class"].items():
        for split, cell in per_split.items():
            cell["frames"] = frames[jersey, split]
    for split, cell in counts["splits"].items():
        cell["frames"] = sum(frames[j, split] for j in counts["per_class"])
    return {
        "format": CACHE_FORMAT,
        "fingerprint": plan.fingerprint,
        "data": to_dict(plan.resolved),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sequences": len(kept),
        "frames": sum(frames.values()),
        "counts": counts,
        "split_assignment": plan.assignment,
        "skipped": skipped,
        "skipped_counts": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "dropped_sequences": dropped,
        "anchor_replaced": anchors,
        "shards": shards,
    }


def _start_ray(address: str | None) -> bool:
    """Start (or connect to) Ray unless it is running in this process; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    return True


def _stop_ray(started: bool) -> None:
    import ray

    if started:
        ray.shutdown()


def build_cache(
    data: DataConfig,
    out: str | os.PathLike | None = None,
    *,
    force: bool = False,
    address: str | None = None,
    progress: bool = True,
) -> CacheResult:
    """Build the cache ``data`` describes at ``out`` (a folder or a pyarrow URI; default
    :func:`~jersey_ray.cache.plan.cache_location`), or reuse it.

    Reuse: a cache at ``out`` with the same fingerprint whose shards all exist with their
    listed sizes is returned at once (``reused=True``; ``force`` rebuilds; the full sha256
    check is :func:`verify_cache`, which a sweep's driver and a standalone trial run). Ray is
    started (``ray.init(address=address)``) when this process has none and shut down
    afterwards; a running Ray is reused and left running. A non-empty ``out`` that is not a
    cache is refused, never replaced.

    Manifest (``manifest.json``): ``format``, ``fingerprint``, ``data`` (the DataConfig as
    built, root absolute and held-out numbers filled in), ``created``, ``sequences``, ``frames``,
    ``counts`` = {"splits": {split: {tracks, sequences, frames}}, "per_class": {jersey:
    {split: {...}}}}, ``split_assignment`` {track: split}, ``skipped`` [{path, reason, stage
    ("index" | "decode"), detail}], ``skipped_counts`` {reason: n}, ``dropped_sequences``
    [{seq_id, reason}], ``anchor_replaced`` [{seq_id, failed, anchor}], ``shards`` [{path
    (relative to the cache), split, rows, bytes, sha256}], ``build_seconds`` (Ray start-up
    excluded), ``frames_per_s``.
    """
    start = time.perf_counter()
    out = str(out) if out is not None else cache_location(data)
    plan = make_plan(data)
    if not force:
        manifest = reusable(out, plan.fingerprint)
        if manifest is not None:
            if progress:
                log.info("reusing cache %s (fingerprint %s...)", out, plan.fingerprint[:12])
            return CacheResult(out, manifest, True, 0.0, time.perf_counter() - start)
    check_out(out)
    # before Ray starts; the shards are staged beside a local out, in TMPDIR for a URI
    hint = SPACE_HINT
    if not is_uri(out) and (old := leftovers(out)):
        hint += f" (interrupted builds left {', '.join(old)}: delete them if no build is running)"
    check_free(tempfile.gettempdir() if is_uri(out) else out, estimate_bytes(plan), hint)
    if progress and not is_uri(out):
        for leftover in leftovers(out):
            log.warning(
                "note: %s is left from an interrupted build; delete it when no build is running",
                leftover,
            )
    ray_start = time.perf_counter()
    started = _start_ray(address)
    ray_s = time.perf_counter() - ray_start
    try:
        manifest, reused = _build(plan, out, force, progress, start + ray_s)
    finally:
        _stop_ray(started)
    total = time.perf_counter() - start
    if progress:
        log.info(summary_line(out, manifest, reused))
    return CacheResult(out, manifest, reused, ray_s, total)


def _build(
    plan: Plan, out: str, force: bool, progress: bool, begin: float
) -> tuple[dict[str, Any], bool]:
    """Decode, write, describe and install; returns (manifest, reused another build's).

    ``begin`` is the build's start on the ``time.perf_counter`` clock, moved later by the Ray
    start-up time so that ``build_seconds`` leaves it out.
    """
    if is_uri(out):
        parent = Path(tempfile.mkdtemp(prefix="jersey-cache-"))
        tmp = parent / "cache"
    else:
        dest = Path(out)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(f"{out}: cannot create its parent folder ({err.strerror})") from None
        parent, tmp = None, dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        tmp.mkdir()
        meta = _run_pipeline(plan, tmp, progress)
        manifest = _manifest(plan, meta, describe_shards(tmp))
        seconds = time.perf_counter() - begin
        manifest["build_seconds"] = round(seconds, 3)
        manifest["frames_per_s"] = round(manifest["frames"] / max(seconds, 1e-9), 1)
        write_json(tmp / MANIFEST, manifest)
        if parent is not None:
            install_uri(tmp, out, manifest)
            return manifest, False
        other = install_local(tmp, Path(out), plan.fingerprint, force)
        return (manifest, False) if other is None else (other, True)
    except Exception as err:
        # A full disk: the partial build goes first, so the error tells the space a retry has.
        shutil.rmtree(parent or tmp, ignore_errors=True)
        full = no_space_error(err, tmp if parent else out, estimate_bytes(plan), SPACE_HINT)
        if full is not None:
            raise full from None
        if isinstance(err, OSError):
            raise CacheError(f"writing the cache {out} failed: {err}") from None
        raise
    finally:
        shutil.rmtree(parent or tmp, ignore_errors=True)  # no-op after a local rename


def estimate_bytes(plan: Plan) -> int:
    """Disk space a build of ``plan`` needs: its raw frames (shards are uncompressed), a little
    per sequence for the other columns and Parquet's pages, and the manifest."""
    height, width = plan.data.size
    return plan.frames_selected * height * width * 3 + len(plan.items) * 512 + 2**20


def summary_line(out: str, manifest: dict[str, Any], reused: bool = False) -> str:
    splits = manifest["counts"]["splits"]
    per_split = ", ".join(f"{s} {splits[s]['sequences']}" for s in splits_of(manifest))
    skipped = len(manifest["skipped"])
    dropped = len(manifest["dropped_sequences"])
    how = "reused (same fingerprint)" if reused else "built"
    return (
        f"cache {out} {how}: {manifest['sequences']} sequences ({per_split}), "
        f"{manifest['frames']} frames, {skipped} skipped, {dropped} sequences dropped, "
        f"{manifest['frames_per_s']:.0f} frames/s"
    )
