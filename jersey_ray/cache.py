"""The preprocessing cache: every selected frame decoded once, letterboxed, stored as Parquet.

``python -m jersey_ray.cache build ROOT --out DIR`` indexes ROOT (:mod:`jersey_ray.data`),
selects each sequence's frames (anchor first, up to ``max_frames``), assigns every track a
split, then runs a Ray Data pipeline: ``from_items`` (one item per sequence, sorted by split
and id) -> ``map_batches`` (decode, RGB, letterbox to HxW with black padding, uint8; a plain
function on a ``TaskPoolStrategy``) -> materialized in the object store with a progress bar ->
the small columns to the driver (skips, drops, counts) -> ``split_at_indices`` -> per split
``write_parquet`` into ``DIR/<split>/part-NNNNN.parquet`` (about 128 MB of raw frames per
shard, uncompressed). ``DIR/manifest.json`` is written last; :func:`build_cache` lists its
content.

Row schema: ``frames`` (binary, T*H*W*3 uint8, HWC, letterboxed, only the real selected frames),
``n_frames`` int32, ``tens``/``ones`` int64, ``jersey``/``track``/``seq_id`` string, ``anchor``
int32 (index of the anchor within the stored frames).

Ray and Tune: the build runs on the driver before any trial exists (the sweep calls
:func:`build_cache` first), with the whole cluster free, and trials only read the Parquet with
pyarrow (:mod:`jersey_ray.loader`, no Ray Data). Tune trials therefore never run Ray Data, so
the documented deadlock (trials holding every CPU while a Ray Data job inside them waits for
one) cannot happen. With ``--address`` every node must see ROOT at the same path (shared file
system); the Parquet is written by Ray Data tasks into a folder the driver's node can rename.

Atomicity: a build writes ``DIR.tmp-<uuid>`` next to DIR, puts ``manifest.json`` in last, then
renames it into place (an old DIR is renamed aside first, then deleted). A folder without a
manifest is never taken for a cache, so an interrupted build leaves nothing that looks valid
(only a ``.tmp-`` folder, reported by the next build). Two concurrent builds of the same cache
each write their own temporary folder; the later one finds an identical cache in place and
uses it. For a URI (``s3://...``, ``file://...``) the build happens in a local temporary folder
and is uploaded with ``pyarrow.fs.copy_files``: the old manifest is deleted first, the shards
(deterministic names and bytes) are uploaded, the manifest last, then stale shards are removed.

Decoding follows the reference (report-spec 1.6): ``PIL.Image.convert("RGB")`` (grayscale,
palette, CMYK; RGBA/LA lose their alpha), ``s = min(H/h, W/w)``, ``new = int(h*s), int(w*s)``
(at least 1 pixel), PIL bilinear, pasted at ``((H-nh)//2, (W-nw)//2)`` on black. JPEG
``Image.draft`` is *not* used: decoding at 1/2 or 1/4 scale before the resize changed pixels by
up to 2-8 levels (mean 0.2-1.2) against the full decode on test images, so it is not the
reference's preprocessing; the crops of this task are small enough that it rarely applied.
Unusable images are skipped and listed with a reason (``empty_file``, ``truncated``,
``not_an_image``, ``corrupt``, ``unreadable``, ``too_large``) next to the index's skips;
a sequence with no decodable frame is dropped; when the anchor fails, the next stored frame
takes the anchor position and the manifest records it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from jersey_ray import cli
from jersey_ray.errors import UserError, run_cli

if TYPE_CHECKING:
    from jersey_ray.data.index import Index

# Ray workers import this module to run decode_batch. The data layer (and through
# jersey_ray.metrics, torch) is imported inside the driver-side functions instead, so a worker
# starts without torch: seconds less per worker and per build.

CACHE_FORMAT = 1  # bump when the stored bytes or the schema change: it enters the fingerprint
MANIFEST = "manifest.json"
SHARD_BYTES = 128 * 2**20  # raw frame bytes per shard: inside the 100-200 MB band
DECODE_BATCH = 32  # sequences per map_batches call (about 20 MB of frames at 192x96)
DEFAULT_SIZE = (192, 96)
DEFAULT_MAX_FRAMES = 16
DEFAULT_SPLIT_SEED = 42
# Raw frames barely compress (lz4: -20% on synthetic crops) and lz4 tripled the write time of
# a build on 2 cores; uncompressed shards also read fastest (~1.7 GB/s). Parquet's default
# dictionary encoding put whole shards of (all distinct) frames into one dictionary page,
# hashing every byte on write and costing a decoding copy on read: dictionaries only for the
# repeated strings, and no min/max statistics (nothing filters on them).
PARQUET_ARGS = {
    "compression": "none",
    "use_dictionary": ["jersey", "track"],
    "write_statistics": False,
}
COLUMNS = ("frames", "n_frames", "tens", "ones", "jersey", "track", "seq_id", "anchor")


class CacheError(UserError):
    """A cache folder is missing, incomplete or corrupt, or cannot be written."""


@dataclass(frozen=True)
class CacheResult:
    path: str  # the cache folder or URI, as given
    manifest: dict[str, Any]
    reused: bool
    ray_start_s: float = 0.0  # Ray start-up, excluded from the manifest's frames/s
    total_s: float = 0.0  # wall time of build_cache, Ray start-up included


# ----------------------------------------------------------------------------- decoding


class FrameError(Exception):
    """An image that cannot be used; ``reason`` is one of the manifest's decode reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def letterbox_geometry(h: int, w: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)`` of an ``h x w`` image letterboxed into ``size`` (H, W).

    The reference's arithmetic (``int(h * s)`` in float), with at least one pixel per side
    where the reference would have failed on an extremely thin image.
    """
    height, width = size
    s = min(height / h, width / w)
    nh, nw = max(1, min(height, int(h * s))), max(1, min(width, int(w * s)))
    return nh, nw, (height - nh) // 2, (width - nw) // 2


def letterbox(img: Image.Image, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """RGB letterbox of ``img`` as uint8 [H, W, 3] (written into ``out``, zeroed, if given)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    nh, nw, top, left = letterbox_geometry(img.height, img.width, size)
    if (nw, nh) != img.size:  # PIL returns a plain copy for the same size
        img = img.resize((nw, nh), Image.BILINEAR)
    if out is None:
        out = np.zeros((*size, 3), np.uint8)
    out[top : top + nh, left : left + nw] = np.asarray(img)
    return out


def decode_frame(path: str, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Open, decode and letterbox one image file; raises :class:`FrameError` if unusable."""
    try:
        if os.path.getsize(path) == 0:
            raise FrameError("empty_file", "0 bytes")
        with Image.open(path) as img:
            img.load()
            return letterbox(img, size, out)
    except FrameError:
        raise
    except UnidentifiedImageError:
        raise FrameError("not_an_image", "PIL cannot identify an image format") from None
    except Image.DecompressionBombError as err:
        raise FrameError("too_large", str(err)) from None
    except (PermissionError, FileNotFoundError, IsADirectoryError) as err:
        raise FrameError("unreadable", err.strerror or type(err).__name__) from None
    except OSError as err:  # decoder errors: "image file is truncated", "broken data stream"
        reason = "truncated" if "truncat" in str(err).lower() else "corrupt"
        raise FrameError(reason, str(err) or type(err).__name__) from None
    except (ValueError, SyntaxError, EOFError) as err:  # PIL's plugins raise these on bad data
        raise FrameError("corrupt", str(err) or type(err).__name__) from None


def decode_batch(table: pa.Table, *, root: str, size: tuple[int, int]) -> pa.Table:
    """Ray Data ``map_batches`` function: sequences (paths) -> rows of letterboxed frames.

    All frames of the batch are decoded into one zeroed buffer that becomes the ``frames``
    column without a copy. Every input row gives an output row; a row with ``n_frames == 0``
    is a dropped sequence (filtered before writing), ``skipped`` lists ``path\\treason\\tdetail``
    of its failed frames.
    """
    height, width = size
    frame_bytes = height * width * 3
    paths = table.column("paths").to_pylist()
    buf = np.zeros((sum(map(len, paths)), height, width, 3), np.uint8)
    offsets, skipped, used = [0], [], 0
    for seq_paths in paths:
        failed = []
        for rel in seq_paths:
            try:
                decode_frame(os.path.join(root, rel), size, buf[used])
                used += 1
            except FrameError as err:
                buf[used] = 0  # a failure may have written part of the frame
                failed.append(f"{rel}\t{err.reason}\t{err.detail}")
        offsets.append(used * frame_bytes)
        skipped.append(failed)
    n = len(paths)
    wide = offsets[-1] > np.iinfo(np.int32).max  # binary offsets are int32: 2 GB per batch
    frames = pa.Array.from_buffers(
        pa.large_binary() if wide else pa.binary(),
        n,
        [
            None,
            pa.py_buffer(np.asarray(offsets, np.int64 if wide else np.int32)),
            pa.py_buffer(buf[:used].reshape(-1)),
        ],
    )
    counts = np.diff(np.asarray(offsets, np.int64)) // frame_bytes
    return pa.table(
        {
            "frames": frames,
            "n_frames": pa.array(counts.astype(np.int32)),
            "tens": table.column("tens").cast(pa.int64()),
            "ones": table.column("ones").cast(pa.int64()),
            "jersey": table.column("jersey"),
            "track": table.column("track"),
            "seq_id": table.column("seq_id"),
            "anchor": pa.array(np.zeros(n, np.int32)),  # selection puts the anchor first
            "split": table.column("split"),
            "skipped": pa.array(skipped, pa.list_(pa.string())),
        }
    )


def keep_split(table: pa.Table, *, split: str) -> pa.Table:
    """``map_batches`` filter: the stored rows of one split, in the stored schema."""
    import pyarrow.compute as pc

    keep = pc.and_(pc.equal(table["split"], split), pc.greater(table["n_frames"], 0))
    table = table.select(list(COLUMNS))
    return table if pc.all(keep).as_py() else table.filter(keep)  # filter copies the frames


# ----------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """Everything decided before decoding: the input, its split and the fingerprint."""

    root: Path
    index: Index
    assignment: dict[str, str]  # track -> split
    items: list[dict[str, Any]]  # one per sequence, sorted by (split, seq_id)
    params: dict[str, Any]
    fingerprint: str
    frames_selected: int = field(init=False)

    def __post_init__(self) -> None:
        self.frames_selected = sum(len(item["paths"]) for item in self.items)


def make_plan(
    root: str | os.PathLike,
    size: tuple[int, int],
    max_frames: int,
    split_seed: int,
    numbers: Iterable[str] | None,
) -> Plan:
    """Index ``root``, select frames, split tracks and fingerprint the lot."""
    from jersey_ray.data.index import index_root, select_frames
    from jersey_ray.data.split import split_tracks

    root = Path(root)
    index = index_root(root, numbers)
    assignment = split_tracks(index.sequences, seed=split_seed)
    order = {s: i for i, s in enumerate(_splits())}
    items = sorted(
        (
            {
                "seq_id": seq.seq_id,
                "jersey": seq.jersey,
                "track": seq.track,
                "split": assignment[seq.track],
                "tens": seq.tens,
                "ones": seq.ones,
                "paths": select_frames(seq, max_frames),
            }
            for seq in index.sequences
        ),
        key=lambda it: (order[it["split"]], it["seq_id"]),
    )
    params = {
        "format": CACHE_FORMAT,
        "size": list(size),
        "max_frames": max_frames,
        "split_seed": split_seed,
        "numbers": sorted(numbers) if numbers is not None else None,
    }
    return Plan(root, index, assignment, items, params, fingerprint(root, index, params))


def fingerprint(root: Path, index: Index, params: dict[str, Any]) -> str:
    """sha256 over the sorted relative file list (size, mtime) and every build parameter.

    The files are all the index saw: every frame of every sequence (selected or not) and every
    skipped entry, so adding, removing or touching any of them changes the fingerprint.
    """
    files = sorted(
        {p for s in index.sequences for p in ((s.anchor,) if s.anchor else ()) + s.frames}
    )
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for rel in files:
        try:
            st = os.stat(root / rel)
        except OSError as err:
            raise CacheError(
                f"{root / rel}: {err.strerror}; did the data change while indexing?"
            ) from None
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for skip in sorted(index.skipped, key=lambda s: (s.path, s.reason)):
        h.update(f"skip\0{skip.path}\0{skip.reason}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- storage


def _splits() -> tuple[str, ...]:
    from jersey_ray.metrics import SPLITS  # lazily: see the note on imports at the top

    return SPLITS


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def cache_name(
    root: str | os.PathLike,
    size: tuple[int, int],
    max_frames: int,
    split_seed: int,
    numbers: Sequence[str] = (),
) -> str:
    """The folder name under which the sweep and ``train --data`` cache ``root``.

    One folder per data root and preprocessing parameters, so changing any of them never
    replaces another cache; a class subset gets its own folder for the same reason.
    """
    path = Path(root).resolve()
    h, w = size
    name = f"{path.name}-{h}x{w}-f{max_frames}-s{split_seed}-{_short_hash(str(path), 8)}"
    if numbers:
        name += "-n" + _short_hash(",".join(numbers), 6)
    return name


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def cache_filesystem(cache: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """pyarrow file system and base path of a cache location (path or URI)."""
    if is_uri(cache):
        try:
            return pafs.FileSystem.from_uri(str(cache))
        except (pa.ArrowInvalid, OSError) as err:
            raise CacheError(f"{cache}: cannot open this storage URI ({err})") from None
    return pafs.LocalFileSystem(), os.path.abspath(cache)


def read_manifest(cache: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a cache; :class:`CacheError` when there is none or it is unreadable."""
    fs, base = cache_filesystem(cache)
    path = f"{base}/{MANIFEST}"
    try:
        with fs.open_input_stream(path) as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        raise CacheError(
            f"{cache}: not a cache (no {MANIFEST}; an interrupted build leaves none); build it "
            f"with `python -m jersey_ray.cache build ROOT --out {cache}`"
        ) from None
    except (OSError, ValueError) as err:
        raise CacheError(f"{cache}/{MANIFEST}: unreadable ({err}); rebuild with --force") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise CacheError(
            f"{cache}: cache format {manifest.get('format')}, this version reads "
            f"{CACHE_FORMAT}; rebuild with `python -m jersey_ray.cache build ROOT --out {cache} "
            "--force`"
        )
    return manifest


def _rebuild_hint(cache: str | os.PathLike, manifest: dict[str, Any]) -> str:
    root = manifest.get("root", "ROOT")
    return f"rebuild with `python -m jersey_ray.cache build {root} --out {cache} --force`"


def shard_digest(fs: pafs.FileSystem, path: str) -> tuple[str, int]:
    """(sha256 hex, bytes) of one file."""
    h, n = hashlib.sha256(), 0
    with fs.open_input_stream(path) as f:
        while chunk := f.read(8 * 2**20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def verify_cache(cache: str | os.PathLike, *, quick: bool = False) -> dict[str, Any]:
    """Check every shard against the manifest; returns the manifest.

    Full check: the file exists, its sha256 and byte count match, its Parquet footer has the
    listed rows. ``quick`` only checks existence and byte counts (what reuse needs). Raises
    :class:`CacheError` naming the bad shard.
    """
    manifest = read_manifest(cache)
    fs, base = cache_filesystem(cache)
    hint = _rebuild_hint(cache, manifest)
    for shard in manifest["shards"]:
        path, name = f"{base}/{shard['path']}", shard["path"]
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            raise CacheError(f"{cache}: shard {name} is missing; {hint}")
        if info.size != shard["bytes"]:
            raise CacheError(
                f"{cache}: shard {name} has {info.size} bytes, manifest says {shard['bytes']}; "
                f"{hint}"
            )
        if quick:
            continue
        digest, _ = shard_digest(fs, path)
        if digest != shard["sha256"]:
            raise CacheError(f"{cache}: shard {name} fails its sha256 check (corrupt); {hint}")
        try:
            rows = pq.read_metadata(path, filesystem=fs).num_rows
        except (OSError, pa.ArrowException) as err:
            raise CacheError(f"{cache}: shard {name} is not Parquet ({err}); {hint}") from None
        if rows != shard["rows"]:
            raise CacheError(
                f"{cache}: shard {name} has {rows} rows, manifest says {shard['rows']}; {hint}"
            )
    return manifest


def _reusable(cache: str, fingerprint_: str) -> dict[str, Any] | None:
    """The manifest of a complete cache with this fingerprint at ``cache``, else None."""
    try:
        manifest = read_manifest(cache)
        if manifest.get("fingerprint") != fingerprint_:
            return None
        return verify_cache(cache, quick=True)
    except CacheError:
        return None


def _leftovers(out: str) -> list[str]:
    """Temporary folders of interrupted builds next to a local cache."""
    base = Path(out)
    if not base.parent.is_dir():
        return []
    return sorted(str(p) for p in base.parent.glob(f"{base.name}.tmp-*") if p.is_dir())


def check_out(out: str) -> None:
    """Refuse an ``out`` that holds something other than a cache: it would be replaced."""
    fs, base = cache_filesystem(out)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise CacheError(f"{out}: exists and is not a folder; remove it or pick another --out")
    if fs.get_file_info(f"{base}/{MANIFEST}").type == pafs.FileType.File:
        return
    if fs.get_file_info(pafs.FileSelector(base)):
        raise CacheError(
            f"{out}: a non-empty folder that is not a cache (no {MANIFEST}); a build would "
            "replace it, so remove it or pick another --out"
        )


def _install_local(tmp: Path, dest: Path, fingerprint_: str, force: bool) -> dict | None:
    """Rename ``tmp`` to ``dest``; returns the manifest of an identical cache that a concurrent
    build installed first (then ``tmp`` is deleted and that cache used), else None."""
    for _ in range(20):
        try:
            os.rename(tmp, dest)  # atomic; fails if dest is a non-empty folder
            return None
        except OSError:
            if not dest.exists():
                raise
        other = None if force else _reusable(str(dest), fingerprint_)
        if other is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return other
        check_out(str(dest))  # something else may have appeared meanwhile
        aside = dest.with_name(f"{dest.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(dest, aside)
        except FileNotFoundError:
            continue  # another build moved it; try again
        try:
            os.rename(tmp, dest)
            return None
        except OSError:
            continue  # another build got in between; look at what it installed
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    raise CacheError(f"{dest}: could not install the cache (too many concurrent builds?)")


def _install_uri(tmp: Path, dest: str, manifest: dict[str, Any]) -> None:
    """Upload a finished local build to ``dest``: old manifest off, shards, manifest last."""
    fs, base = cache_filesystem(dest)
    local = pafs.LocalFileSystem()
    check_out(dest)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(f"{base}/{MANIFEST}")
    fs.create_dir(base, recursive=True)
    for split in _splits():
        if (tmp / split).is_dir():
            fs.create_dir(f"{base}/{split}", recursive=True)
            pafs.copy_files(
                str(tmp / split),
                f"{base}/{split}",
                source_filesystem=local,
                destination_filesystem=fs,
            )
    with fs.open_output_stream(f"{base}/{MANIFEST}") as f:
        f.write(json.dumps(manifest, indent=1).encode())
    listed = {s["path"] for s in manifest["shards"]}
    for split in _splits():
        found = fs.get_file_info(pafs.FileSelector(f"{base}/{split}", allow_not_found=True))
        for info in found:
            rel = f"{split}/{info.base_name}"
            if info.type == pafs.FileType.File and rel not in listed:
                fs.delete_file(info.path)  # a shard of the cache this one replaced


# ----------------------------------------------------------------------------- build


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
        decode_batch,
        batch_size=DECODE_BATCH,
        batch_format="pyarrow",
        zero_copy_batch=True,
        fn_kwargs={"root": str(plan.root.resolve()), "size": tuple(plan.params["size"])},
        compute=ray.data.TaskPoolStrategy(),
    )
    refs = []
    bar = tqdm(total=len(plan.items), desc="cache: decoding", unit="seq", disable=not progress)
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

    size = plan.params["size"]
    with _ray_data_context():
        decoded = _decode_all(plan, progress)
        meta = decoded.drop_columns(["frames"]).take_all()
        if len(meta) != len(plan.items):
            raise RuntimeError(f"decoded {len(meta)} of {len(plan.items)} sequences")
        row_bytes = max(1, plan.frames_selected) * size[0] * size[1] * 3 / max(1, len(meta))
        rows_per_shard = max(1, int(SHARD_BYTES // row_bytes))
        sizes = Counter(item["split"] for item in plan.items)
        bounds = np.cumsum([sizes[s] for s in _splits()])[:-1].tolist()
        _await_free_cpu()
        parts = decoded.split_at_indices(bounds)  # items are sorted by split
        bar = tqdm(_splits(), desc="cache: writing", unit="split", disable=not progress)
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


def _describe_shards(tmp: Path) -> list[dict[str, Any]]:
    """Path, split, rows, bytes and sha256 of every shard (hashed in parallel: hashlib
    releases the GIL on large buffers)."""
    files = [
        (split, f)
        for split in _splits()
        for f in (sorted((tmp / split).glob("*.parquet")) if (tmp / split).is_dir() else [])
    ]
    local = pafs.LocalFileSystem()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        digests = list(pool.map(lambda sf: shard_digest(local, str(sf[1])), files))
    return [
        {
            "path": f"{split}/{f.name}",
            "split": split,
            "rows": pq.read_metadata(f).num_rows,
            "bytes": size,
            "sha256": digest,
        }
        for (split, f), (digest, size) in zip(files, digests, strict=True)
    ]


def _manifest(plan: Plan, meta: list[dict[str, Any]], shards: list[dict[str, Any]]) -> dict:
    by_seq = {item["seq_id"]: item for item in plan.items}
    skipped = [{"path": s.path, "reason": s.reason, "stage": "index"} for s in plan.index.skipped]
    dropped, anchors, frames = [], [], defaultdict(int)
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
        **plan.params,
        "fingerprint": plan.fingerprint,
        "root": str(plan.root),
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
    ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    return True


def _stop_ray(started: bool) -> None:
    import ray

    if started:
        ray.shutdown()


def build_cache(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    max_frames: int = DEFAULT_MAX_FRAMES,
    split_seed: int = DEFAULT_SPLIT_SEED,
    numbers: Iterable[str] | None = None,
    force: bool = False,
    address: str | None = None,
    progress: bool = True,
) -> CacheResult:
    """Build the cache of ``root`` at ``out`` (a folder or a pyarrow URI), or reuse it.

    Reuse: a cache at ``out`` with the same fingerprint whose shards all exist with their
    listed sizes is returned at once (``reused=True``; ``force`` rebuilds; the full sha256
    check is :func:`verify_cache`, which every trial runs). Ray is started (``ray.init(
    address=address)``) when this process has none and shut down afterwards; a running Ray is
    reused and left running. A non-empty ``out`` that is not a cache is refused, never replaced.

    Manifest (``manifest.json``): ``format``, ``fingerprint``, ``root``, ``created``, ``size``
    [H, W], ``max_frames``, ``split_seed``, ``numbers``, ``sequences``, ``frames``,
    ``counts`` = {"splits": {split: {tracks, sequences, frames}}, "per_class": {jersey:
    {split: {...}}}}, ``split_assignment`` {track: split}, ``skipped`` [{path, reason, stage
    ("index" | "decode"), detail}], ``skipped_counts`` {reason: n}, ``dropped_sequences``
    [{seq_id, reason}], ``anchor_replaced`` [{seq_id, failed, anchor}], ``shards`` [{path
    (relative to the cache), split, rows, bytes, sha256}], ``build_seconds`` (Ray start-up
    excluded), ``frames_per_s``.
    """
    start = time.perf_counter()
    out = str(out)
    size, numbers = (int(size[0]), int(size[1])), None if numbers is None else list(numbers)
    _check_params(size, max_frames)
    plan = make_plan(root, size, max_frames, split_seed, numbers)
    if not force:
        manifest = _reusable(out, plan.fingerprint)
        if manifest is not None:
            if progress:
                print(f"reusing cache {out} (fingerprint {plan.fingerprint[:12]}...)", flush=True)
            return CacheResult(out, manifest, True, 0.0, time.perf_counter() - start)
    check_out(out)
    if progress and not is_uri(out):
        for leftover in _leftovers(out):
            print(f"note: {leftover} is left from an interrupted build; delete it when no "
                  "build is running", file=sys.stderr)  # fmt: skip
    ray_start = time.perf_counter()
    started = _start_ray(address)
    ray_s = time.perf_counter() - ray_start
    try:
        manifest, reused = _build(plan, out, force, progress, start + ray_s)
    finally:
        _stop_ray(started)
    total = time.perf_counter() - start
    if progress:
        print(summary_line(out, manifest, reused), flush=True)
    return CacheResult(out, manifest, reused, ray_s, total)


def _check_params(size: tuple[int, int], max_frames: int) -> None:
    if min(size) < 1:
        raise CacheError(f"size {size[0]}x{size[1]}: height and width must be positive")
    if max_frames < 1:
        raise CacheError(f"max_frames {max_frames}: must be at least 1")


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
    tmp.mkdir()
    try:
        meta = _run_pipeline(plan, tmp, progress)
        manifest = _manifest(plan, meta, _describe_shards(tmp))
        seconds = time.perf_counter() - begin
        manifest["build_seconds"] = round(seconds, 3)
        manifest["frames_per_s"] = round(manifest["frames"] / max(seconds, 1e-9), 1)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if parent is not None:
            _install_uri(tmp, out, manifest)
            return manifest, False
        other = _install_local(tmp, Path(out), plan.fingerprint, force)
        return (manifest, False) if other is None else (other, True)
    except OSError as err:
        raise CacheError(f"writing the cache {out} failed: {err}") from None
    finally:
        shutil.rmtree(parent or tmp, ignore_errors=True)  # no-op after a local rename


def summary_line(out: str, manifest: dict[str, Any], reused: bool = False) -> str:
    splits = manifest["counts"]["splits"]
    per_split = ", ".join(f"{s} {splits[s]['sequences']}" for s in _splits())
    skipped = len(manifest["skipped"])
    dropped = len(manifest["dropped_sequences"])
    how = "reused (same fingerprint)" if reused else "built"
    return (
        f"cache {out} {how}: {manifest['sequences']} sequences ({per_split}), "
        f"{manifest['frames']} frames, {skipped} skipped, {dropped} sequences dropped, "
        f"{manifest['frames_per_s']:.0f} frames/s"
    )


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(prog="python -m jersey_ray.cache", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,verify}")
    b = sub.add_parser("build", help="build (or reuse) the cache of a data root")
    b.add_argument("root", type=Path, metavar="ROOT", help="data root ROOT/<jersey>/<track>/<seq>")
    b.add_argument("--out", required=True, metavar="DIR", help="cache folder or URI (s3://...)")
    b.add_argument(
        "--size",
        type=cli.size,
        default=DEFAULT_SIZE,
        metavar="HxW",
        help="letterbox size, height x width (default 192x96)",
    )
    b.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        metavar="T",
        help="frames per sequence incl. the anchor (default 16)",
    )
    b.add_argument(
        "--split-seed",
        type=int,
        default=DEFAULT_SPLIT_SEED,
        help="seed of the track-level split (default 42)",
    )
    b.add_argument(
        "--numbers",
        nargs="+",
        metavar="N",
        help="only these jersey numbers (space or comma separated)",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if an identical cache exists")
    b.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    b.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar or notes (the summary line is still printed)",
    )
    v = sub.add_parser("verify", help="check every shard against the manifest (rows, sha256)")
    v.add_argument("cache", metavar="DIR", help="cache folder or URI")
    return p  # fmt: skip


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        manifest = verify_cache(args.cache)
        rows = sum(s["rows"] for s in manifest["shards"])
        print(f"cache {args.cache}: ok, {len(manifest['shards'])} shards, {rows} sequences, "
              f"fingerprint {manifest['fingerprint'][:12]}...")  # fmt: skip
        return 0
    numbers = None
    if args.numbers:
        numbers = [n for part in args.numbers for n in part.split(",") if n]
    result = build_cache(
        args.root, args.out, size=args.size, max_frames=args.max_frames,
        split_seed=args.split_seed, numbers=numbers, force=args.force, address=args.address,
        progress=not args.no_progress,
    )  # fmt: skip
    if args.no_progress:  # the summary is the command's result, not progress
        print(summary_line(result.path, result.manifest, result.reused))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(partial(_main, sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
