"""A split of the cache as one uint8 frame tensor on the device, and batches drawn from it.

:func:`load_split` reads the split's Parquet shards with pyarrow (no Ray) into ``frames``
[F, H, W, 3] uint8 plus per-sequence offsets and lengths. On CUDA the frames stay resident on
the GPU (the report's data set is about 5 GB at its full size); on the CPU they are pinned when
a CUDA driver is present (pinning needs one), plain memory otherwise. The cache is verified
first (sha256 of every shard, once per process for an unchanged cache).

:func:`iter_batches` draws an epoch by index with a seeded CPU generator and gathers on the
device. All index arithmetic for the epoch is done once on the host from host tensors and moved
to the device in one transfer; per step there are only device-side slices and gathers with
host-known shapes, so the loader never waits for the device.

Every batch has the one shape every model takes (:class:`Batch`): the *packed* real frames
[N, 3, H, W] (sequence-major, i.e. ``padded[mask]`` order) and a [B, T] mask. The anchor is
each sequence's first stored frame, so ``frames=1`` gives single-frame models the anchors only
([B, 3, H, W] with a [B, 1] mask) without loading the rest. Frames come out float32,
channels_last, ImageNet-normalized, augmented on the device in train mode
(:mod:`jersey_ray.cache.augment`).
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from jersey_ray.cache.augment import to_model_input
from jersey_ray.cache.splice import splice_batch
from jersey_ray.cache.store import MANIFEST, CacheError, cache_filesystem, data_config, verify_cache

DEFAULT_BATCH_SIZE = 64
_VERIFIED: dict[tuple, tuple[dict, tuple]] = {}


@dataclass
class SplitData:
    split: str
    size: tuple[int, int]
    frames: torch.Tensor  # [F, H, W, 3] uint8, on the device (CUDA) or host (pinned if possible)
    offsets: torch.Tensor  # [N] int64 host: first frame (the anchor) of each sequence
    lengths: torch.Tensor  # [N] int64 host
    tens: torch.Tensor  # [N] int64 on the device
    ones: torch.Tensor  # [N] int64 on the device
    jersey: list[str]
    track: list[str]
    seq_id: list[str]

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass
class Batch:
    """What every model takes: ``model(batch.frames, batch.mask)``."""

    frames: torch.Tensor  # [N, 3, H, W] the real frames, packed sequence-major
    mask: torch.Tensor  # [B, T] bool on the device, True for t < length
    tens: torch.Tensor  # [B] int64 on the device
    ones: torch.Tensor  # [B] int64 on the device
    index: torch.Tensor  # [B] int64 host: rows of the split
    n_frames: int  # real frames in the batch


def _verified_manifest(cache: str | os.PathLike) -> dict:
    """:func:`verify_cache`, memoized per process on the manifest's and shards' size and mtime
    (a trial loads three splits; hashing the shards once is enough while nothing changed)."""
    fs, base = cache_filesystem(cache)

    def stats(paths: list[str]) -> tuple:
        return tuple((i.type, i.size, i.mtime_ns) for i in fs.get_file_info(paths))

    key = (str(cache), stats([f"{base}/{MANIFEST}"]))
    if key in _VERIFIED:
        manifest, shard_stats = _VERIFIED[key]
        if stats([f"{base}/{s['path']}" for s in manifest["shards"]]) == shard_stats:
            return manifest
    manifest = verify_cache(cache)
    shard_stats = stats([f"{base}/{s['path']}" for s in manifest["shards"]])
    _VERIFIED[key] = (manifest, shard_stats)
    return manifest


def keep_freed_host_memory() -> None:
    """Let glibc keep freed large blocks for reuse instead of unmapping them.

    By default every allocation over 32 MB is a fresh mmap whose pages fault in on first touch;
    a CPU batch (~170 MB of float32 frames) then spends most of its time in page faults
    (measured 5-10x slower batch ops on the 2-core box). Process-wide; a no-op off glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


def load_split(
    cache: str | os.PathLike,
    split: str,
    device: str | torch.device,
    manifest: dict | None = None,
) -> SplitData:
    """Read one split of a verified cache into device tensors (see the module docstring).

    ``manifest``: the cache's manifest as the caller already verified it (a trial's
    :func:`~jersey_ray.train.loop.load_data`); without one the cache is verified here.
    On a CPU device this also calls :func:`keep_freed_host_memory` (process-wide malloc
    tuning that makes the per-batch float buffers reusable).
    """
    device = torch.device(device)
    manifest = manifest if manifest is not None else _verified_manifest(cache)
    if split not in manifest["counts"]["splits"]:
        have = ", ".join(manifest["counts"]["splits"])
        raise CacheError(f"{cache}: no split {split!r}; the cache has {have}")
    height, width = data_config(manifest).size
    fs, base = cache_filesystem(cache)
    shards = [s for s in manifest["shards"] if s["split"] == split]
    total = manifest["counts"]["splits"][split]["frames"]
    frames = _allocate_frames(total, height, width, device)
    cols: dict[str, list] = {k: [] for k in ("n_frames", "anchor", "tens", "ones")}
    names: dict[str, list] = {k: [] for k in ("jersey", "track", "seq_id")}
    at = 0
    for shard in shards:
        table = pq.read_table(f"{base}/{shard['path']}", filesystem=fs)
        at = _copy_frames(table.column("frames"), frames, at, height * width * 3)
        for k in cols:
            cols[k].append(table.column(k).to_numpy())
        for k in names:
            names[k] += table.column(k).to_pylist()
    if at != total:
        raise CacheError(f"{cache}: split {split} holds {at} frames, manifest says {total}")
    if _concat(cols["anchor"]).any():  # the build stores the anchor first: batches rely on it
        raise CacheError(f"{cache}: split {split} has anchors off the first frame; rebuild it")
    lengths = _concat(cols["n_frames"])
    return SplitData(
        split=split,
        size=(height, width),
        frames=frames,
        offsets=torch.cumsum(lengths, 0) - lengths,
        lengths=lengths,
        tens=_concat(cols["tens"]).to(device),
        ones=_concat(cols["ones"]).to(device),
        **names,
    )


def _concat(parts: list[np.ndarray]) -> torch.Tensor:
    """Per-shard integer columns as one int64 host tensor."""
    return torch.from_numpy(np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64))


def _allocate_frames(total: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    shape = (total, height, width, 3)
    if device.type == "cpu":
        keep_freed_host_memory()
        return torch.empty(shape, dtype=torch.uint8, pin_memory=torch.cuda.is_available())
    return torch.empty(shape, dtype=torch.uint8, device=device)


def _copy_frames(column: pa.ChunkedArray, frames: torch.Tensor, at: int, frame_bytes: int) -> int:
    """Copy a binary column's bytes into ``frames[at:]`` chunk by chunk; returns the new end.

    A chunk's values are contiguous in its data buffer, so this is one copy per chunk straight
    from the Arrow memory (to the GPU when ``frames`` lives there).
    """
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        wide = pa.types.is_large_binary(chunk.type)
        offsets = np.frombuffer(chunk.buffers()[1], np.int64 if wide else np.int32)
        lo, hi = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
        data = torch.frombuffer(chunk.buffers()[2], dtype=torch.uint8)[lo:hi]
        n = (hi - lo) // frame_bytes
        if n * frame_bytes != hi - lo or at + n > len(frames):
            raise CacheError("a shard's frames do not match the manifest's size and counts")
        frames[at : at + n].copy_(data.view(n, *frames.shape[1:]))
        at += n
    return at


def _epoch_plan(data: SplitData, order: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Host frame indices of an epoch in ``order``: the first ``lengths`` frames of each."""
    starts = torch.repeat_interleave(data.offsets[order], lengths)
    within = torch.arange(int(lengths.sum())) - torch.repeat_interleave(
        torch.cumsum(lengths, 0) - lengths, lengths
    )
    return starts + within


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def batch_bounds(n: int, batch_size: int, training: bool) -> list[tuple[int, int]]:
    """The [start, end) rows of each batch of an epoch of ``n`` sequences; in training a last
    batch of one sequence joins the one before (see :func:`iter_batches`)."""
    bounds = [(b0, min(b0 + batch_size, n)) for b0 in range(0, n, batch_size)]
    if training and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def iter_batches(
    data: SplitData,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    frames: int | None = None,
    shuffle: bool,
    generator: torch.Generator | None = None,
    augment: bool = False,
    aug_generator: torch.Generator | None = None,
    splice: float = 0.0,
    forbidden: frozenset[tuple[int, int]] = frozenset(),
    splice_generator: torch.Generator | None = None,
    training: bool = False,
) -> Iterator[Batch]:
    """One epoch of batches (drop_last False). See the module docstring.

    ``training``: a last batch of one sequence joins the batch before it (:func:`batch_bounds`),
    since BatchNorm cannot train on one value per channel (a train split of 129 at batch 64
    crashed every single-frame model).

    ``frames`` caps the frames taken per sequence, from the anchor on (a model's
    ``input_frames``; None: all). ``generator`` (CPU) draws the shuffle; without one, torch's
    global generator does. ``aug_generator`` must live on the frames' device when ``augment``.
    ``splice`` > 0 (training only) splices two-digit sequences with a CPU ``splice_generator``,
    never composing a ``forbidden`` (tens, ones) label (:mod:`jersey_ray.cache.splice`); a
    spliced row keeps its ``index`` (the left part's row).
    """
    if splice > 0 and splice_generator is None:
        raise ValueError("splice > 0 needs a CPU torch.Generator (splice_generator)")
    n = len(data)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n == 0:
        return
    device = data.frames.device
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    lengths = data.lengths[order]
    if frames is not None:
        lengths = lengths.clamp(max=frames)
    frame_idx = _epoch_plan(data, order, lengths)
    ends = torch.cumsum(lengths, 0).tolist()
    order_dev = _to_device(order, device)
    frame_idx_dev = _to_device(frame_idx, device)
    lengths_dev = _to_device(lengths, device)
    steps = torch.arange(int(lengths.max()), device=device)
    labels = (data.tens.cpu()[order], data.ones.cpu()[order]) if splice > 0 else None
    for b0, b1 in batch_bounds(n, batch_size, training):
        f0, f1 = (ends[b0 - 1] if b0 else 0), ends[b1 - 1]
        t = int(lengths[b0:b1].max())
        raw = data.frames.index_select(0, frame_idx_dev[f0:f1])
        rows = order_dev[b0:b1]
        tens, ones = data.tens.index_select(0, rows), data.ones.index_select(0, rows)
        mask = steps[:t].unsqueeze(0) < lengths_dev[b0:b1].unsqueeze(1)
        n_frames = f1 - f0
        if labels is not None:
            assert splice_generator is not None  # splice > 0: checked above
            out = splice_batch(
                raw, lengths[b0:b1], tens, ones, splice, forbidden, splice_generator,
                labels=(labels[0][b0:b1], labels[1][b0:b1]),
            )  # fmt: skip
            raw, ones, n_frames = out.frames, out.ones, int(out.lengths.sum())
            t = int(out.lengths.max())
            mask = steps[:t].unsqueeze(0) < _to_device(out.lengths, device).unsqueeze(1)
        yield Batch(
            frames=to_model_input(raw, augment=augment, generator=aug_generator),
            mask=mask,
            tens=tens,
            ones=ones,
            index=order[b0:b1],
            n_frames=n_frames,
        )
