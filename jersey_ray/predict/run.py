"""One trained model over a folder: read, decode and run the one evaluation loop chunk by chunk.

Labels play no part in the forward pass; where a sequence has one it only fills the
``true`` column (and the accuracy the command prints).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from jersey_ray.config import DataConfig
from jersey_ray.data.index import Skip
from jersey_ray.errors import UserError
from jersey_ray.predict.aggregate import Level
from jersey_ray.predict.read import DROPPED, Decoded, decode_chunks, index_folder, to_split
from jersey_ray.progress import bar as progress_bar
from jersey_ray.train.evaluate import infer


@dataclass
class Result:
    sequences: Level
    skipped: list[tuple[Skip, str]]
    """Every input not used, with its stage: ``index`` (the walk), ``decode`` (a frame) or
    ``sequence`` (no decodable frame: the sequence is dropped)."""
    indexed: int
    """Sequences the index found (before dropping those with no decodable frame)."""
    seconds: float
    """Wall time of decoding and the forward passes."""

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s, _ in self.skipped).items()))


@dataclass
class _Collected:
    ids: list[str]
    tracks: list[str]
    true: list[str]
    counts: list[int]
    tens: list[torch.Tensor]
    ones: list[torch.Tensor]


def _skips(chunk: list[Decoded]) -> list[tuple[Skip, str]]:
    found = []
    for d in chunk:
        found += [(s, "decode") for s in d.skipped]
        if not len(d.frames):
            found.append((Skip(d.seq.seq_id, DROPPED), "sequence"))
    return found


def _run_chunk(
    model: nn.Module,
    chunk: list[Decoded],
    data: DataConfig,
    device: torch.device,
    batch_size: int,
    got: _Collected,
    bar: tqdm,
) -> None:
    split = to_split(chunk, data.size, device)
    # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
    frames: int | None = model.input_frames  # type: ignore[assignment]
    for batch, out in infer(model, split, batch_size=batch_size, frames=frames):
        got.tens.append(out.tens.float().log_softmax(1).cpu())
        got.ones.append(out.ones.float().log_softmax(1).cpu())
        bar.update(len(batch.index))
    bar.update(len(chunk) - len(split))  # the dropped sequences
    labelled = [d.seq.labelled for d in chunk if len(d.frames)]
    got.ids += split.seq_id
    got.tracks += split.track
    got.true += [j if lab else "" for j, lab in zip(split.jersey, labelled, strict=True)]
    read = split.lengths if frames is None else split.lengths.clamp(max=frames)
    got.counts += read.tolist()


def predict_folder(
    model: nn.Module,
    data: DataConfig,
    root: str | os.PathLike,
    *,
    device: torch.device,
    batch_size: int,
    workers: int,
    progress: bool = True,
) -> Result:
    """Per-sequence log-probabilities of ``model`` (eval mode, on ``device``) on the folder
    ``root``, read at the size and frame count ``data`` (the model's DataConfig) gives. A
    UserError if the folder holds no sequence or none with a decodable frame."""
    index = index_folder(root)
    skipped = [(s, "index") for s in index.skipped]
    got = _Collected([], [], [], [], [], [])
    start = time.perf_counter()
    bar = progress_bar(total=len(index.sequences), desc="predict", unit="seq", disable=not progress)
    # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
    frames: int | None = model.input_frames  # type: ignore[assignment]
    with bar:
        chunks = decode_chunks(index, data.size, data.max_frames, frames, workers=workers)
        for chunk in chunks:
            skipped += _skips(chunk)
            _run_chunk(model, chunk, data, device, batch_size, got, bar)
    result = Result(
        sequences=Level(
            got.ids, got.tracks, got.true, got.counts, _cat(got.tens, 11), _cat(got.ones, 10)
        ),
        skipped=skipped,
        indexed=len(index.sequences),
        seconds=time.perf_counter() - start,
    )
    if not len(result.sequences):
        counts = ", ".join(f"{r} {n}" for r, n in result.skip_counts().items())
        raise UserError(
            f"{root}: no sequence has a decodable frame (skipped: {counts}); check the images"
        )
    return result


def _cat(parts: list[torch.Tensor], classes: int) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, classes)
