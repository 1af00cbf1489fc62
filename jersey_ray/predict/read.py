"""Read a folder of tracklets for prediction: no Ray, no cache, the cache build's rules.

The folder is indexed in the reference layout with unlabelled tracks allowed (a jersey folder
named ``unknown``), each sequence's frames are chosen as for training
(:func:`~jersey_ray.data.index.select_frames` with the model's ``max_frames``) and decoded with
the cache's :func:`~jersey_ray.cache.decode.decode_frame` at the model's size. A frame that
cannot be decoded is skipped with the cache build's reason and the next selected frame takes
its place (so a failed anchor is replaced by the next decodable frame, as in the cache); a
sequence with no decodable frame is dropped and counted as :data:`DROPPED`.

Decoding runs on a thread pool (Pillow releases the GIL while it decodes and resizes) one
chunk of sequences ahead of the model, so at most two chunks of frames are held at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jersey_ray.cache.decode import FrameError, decode_frame
from jersey_ray.cache.loader import SplitData
from jersey_ray.data.index import Index, Sequence, Skip, index_root, select_frames

DROPPED = "no_decodable_frame"
"""The skip reason of a sequence none of whose selected frames decodes (the cache's name)."""
CHUNK = 512
"""Sequences decoded per step (64x32 frames: at most 50 MB per chunk at 16 frames)."""
SPLIT = "predict"


def default_workers() -> int:
    """Decoding threads: one per core, at most 8 (more only contend for the model's cores)."""
    return max(1, min(8, os.cpu_count() or 1))


def index_folder(root: str | os.PathLike) -> Index:
    """The folder's index, unlabelled ``unknown`` tracks included; a DataError (one line)
    if it is not a folder or holds no valid sequence."""
    return index_root(root, allow_unknown=True)


@dataclass
class Decoded:
    seq: Sequence
    frames: np.ndarray
    """uint8 [k, H, W, 3], the selected frames that decoded, anchor (or its stand-in) first."""
    skipped: list[Skip]
    """The frames that did not decode, with the cache build's reasons (paths root-relative)."""


def decode_sequence(
    root: Path, seq: Sequence, size: tuple[int, int], max_frames: int, need: int | None
) -> Decoded:
    """Decode ``seq``'s selected frames in order until ``need`` of them decoded (None: all)."""
    paths = select_frames(seq, max_frames)
    want = len(paths) if need is None else min(need, len(paths))
    out = np.zeros((want, *size, 3), np.uint8)
    used, skipped = 0, []
    for rel in paths:
        if used == want:
            break
        try:
            decode_frame(str(root / rel), size, out[used])
            used += 1
        except FrameError as err:
            out[used] = 0  # a failure may have written part of the frame
            skipped.append(Skip(rel, err.reason))
    return Decoded(seq, out[:used], skipped)


def decode_chunks(
    index: Index,
    size: tuple[int, int],
    max_frames: int,
    need: int | None,
    *,
    workers: int,
    chunk: int = CHUNK,
) -> Iterator[list[Decoded]]:
    """Every sequence of ``index`` decoded, in index order, ``chunk`` sequences at a time; the
    next chunk is decoding while the caller uses the current one."""
    seqs = index.sequences
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[Future] | None = None
        for start in range(0, len(seqs), chunk):
            batch = [
                pool.submit(decode_sequence, index.root, s, size, max_frames, need)
                for s in seqs[start : start + chunk]
            ]
            if pending is not None:
                yield [f.result() for f in pending]
            pending = batch
        if pending is not None:
            yield [f.result() for f in pending]


def to_split(decoded: list[Decoded], size: tuple[int, int], device: torch.device) -> SplitData:
    """The sequences with at least one decoded frame as an in-memory split for the loader."""
    kept = [d for d in decoded if len(d.frames)]
    lengths = torch.tensor([len(d.frames) for d in kept], dtype=torch.int64)
    frames = np.concatenate([d.frames for d in kept]) if kept else np.zeros((0, *size, 3))
    return SplitData(
        split=SPLIT,
        size=size,
        frames=torch.from_numpy(frames.astype(np.uint8, copy=False)).to(device),
        offsets=torch.cumsum(lengths, 0) - lengths,
        lengths=lengths,
        tens=torch.tensor([d.seq.tens for d in kept], dtype=torch.int64, device=device),
        ones=torch.tensor([d.seq.ones for d in kept], dtype=torch.int64, device=device),
        jersey=[d.seq.jersey for d in kept],
        track=[d.seq.track for d in kept],
        seq_id=[d.seq.seq_id for d in kept],
    )
