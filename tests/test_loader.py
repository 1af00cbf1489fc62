"""The on-device split and its batches (CPU path): shapes, packing, masks, anchors, shuffling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from jersey_ray.cache import augment as A
from jersey_ray.cache.build import build_cache
from jersey_ray.cache.loader import iter_batches, load_split
from jersey_ray.cache.store import CacheError, data_config, read_manifest
from jersey_ray.config import DataConfig

ray = pytest.importorskip("ray")

SIZE = (32, 16)
LENGTHS = (1, 2, 3, 4, 5, 6, 2, 3, 4, 1, 6, 5)  # frames per sequence before selection
MAX_FRAMES = 5


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    started = not ray.is_initialized()  # reuse a session another module left running
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        base = tmp_path_factory.mktemp("loader")
        rng = np.random.default_rng(0)
        for i, n in enumerate(LENGTHS):
            jersey = ("4", "48", "9")[i % 3]
            seq = base / "data" / jersey / f"t{i // 3}" / "s1"
            seq.mkdir(parents=True)
            for f in range(n):
                name = "anchor.png" if f == n // 2 else f"f{f}.png"  # anchor not first in time
                Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)).save(seq / name)
        out = base / "cache"
        data = DataConfig(root=str(base / "data"), size=SIZE, max_frames=MAX_FRAMES)
        build_cache(data, out, progress=False)
        return out
    finally:
        if started:
            ray.shutdown()


@pytest.fixture(scope="module")
def train(cache):
    return load_split(cache, "train", "cpu")


def _stored(cache: Path, split: str) -> list[np.ndarray]:
    """Per sequence of the split, its stored frames [T,H,W,3], in shard order."""
    out = []
    for shard in read_manifest(cache)["shards"]:
        if shard["split"] == split:
            for blob in pq.read_table(cache / shard["path"]).column("frames").to_pylist():
                out.append(np.frombuffer(blob, np.uint8).reshape(-1, *SIZE, 3).copy())
    return out


def _uint8(frames: torch.Tensor) -> torch.Tensor:
    """Undo the eval normalization: back to uint8 NHWC."""
    mean = torch.tensor(A.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(A.IMAGENET_STD).view(1, 3, 1, 1)
    return ((frames * std + mean) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def test_split_tensors(cache, train) -> None:
    manifest = read_manifest(cache)
    counts = manifest["counts"]["splits"]["train"]
    stored = _stored(cache, "train")
    assert len(train) == counts["sequences"] == len(stored)
    assert train.frames.shape == (counts["frames"], *SIZE, 3) and train.frames.dtype == torch.uint8
    assert train.frames.is_pinned() == torch.cuda.is_available()  # no CUDA driver: plain memory
    assert train.lengths.tolist() == [len(s) for s in stored]
    assert train.offsets.tolist() == [0, *torch.cumsum(train.lengths, 0)[:-1].tolist()]
    assert train.tens.dtype == torch.int64
    for i, frames in enumerate(stored):
        o, n = int(train.offsets[i]), int(train.lengths[i])
        assert torch.equal(train.frames[o : o + n], torch.from_numpy(frames))
    for i, jersey in enumerate(train.jersey):
        tens, ones = (10, int(jersey)) if len(jersey) == 1 else (int(jersey[0]), int(jersey[1]))
        assert (int(train.tens[i]), int(train.ones[i])) == (tens, ones)
        assert train.track[i] == train.seq_id[i].rsplit("/", 1)[0]
    assert max(train.lengths) <= MAX_FRAMES


def test_sequence_batches_pack_the_real_frames(cache, train) -> None:
    stored = _stored(cache, "train")
    batches = list(iter_batches(train, 3, shuffle=False))
    assert [len(b.index) for b in batches] == [3] * (len(train) // 3) + (
        [len(train) % 3] if len(train) % 3 else []
    )  # drop_last is False
    for b in batches:
        lengths = train.lengths[b.index]
        assert b.mask.shape == (len(b.index), int(lengths.max())) and b.mask.dtype == torch.bool
        assert b.mask.sum(1).tolist() == lengths.tolist()
        assert all(b.mask[i, : lengths[i]].all() for i in range(len(lengths)))  # padding at the end
        assert b.frames.shape == (int(lengths.sum()), 3, *SIZE) == (b.n_frames, 3, *SIZE)
        assert b.frames.dtype == torch.float32
        assert b.frames.is_contiguous(memory_format=torch.channels_last)
        expected = np.concatenate([stored[i] for i in b.index.tolist()])
        assert torch.equal(_uint8(b.frames), torch.from_numpy(expected))
        assert torch.equal(b.tens, train.tens[b.index]) and torch.equal(b.ones, train.ones[b.index])


def test_capped_batches_hold_the_first_frames(cache, train) -> None:
    stored = _stored(cache, "train")
    for b in iter_batches(train, 5, frames=2, shuffle=False):
        lengths = train.lengths[b.index].clamp(max=2)
        assert b.mask.sum(1).tolist() == lengths.tolist() and b.mask.shape[1] <= 2
        expected = np.concatenate([stored[i][:2] for i in b.index.tolist()])
        assert torch.equal(_uint8(b.frames), torch.from_numpy(expected))


def test_phase0_batches_hold_the_anchors(cache, train) -> None:
    stored = _stored(cache, "train")
    seen = []
    for b in iter_batches(train, 4, frames=1, shuffle=False):
        assert b.frames.shape == (len(b.index), 3, *SIZE)
        assert b.mask.shape == (len(b.index), 1) and b.mask.all()
        assert b.n_frames == len(b.index)
        anchors = np.stack([stored[i][0] for i in b.index.tolist()])
        assert torch.equal(_uint8(b.frames), torch.from_numpy(anchors))
        seen += b.index.tolist()
    assert seen == list(range(len(train)))


def test_anchor_is_the_anchor_file(cache, train) -> None:
    """The anchor file is stored first although it sits mid-sequence in time."""
    root = Path(data_config(read_manifest(cache)).root)
    i = next(k for k in range(len(train)) if train.lengths[k] >= 3)
    anchor = np.asarray(Image.open(root / train.seq_id[i] / "anchor.png").convert("RGB"))
    o = int(train.offsets[i])
    # 40x20 letterboxed to 32x16: bilinear downscale of the anchor, never of another frame
    resized = np.asarray(Image.fromarray(anchor).resize((16, 32), Image.BILINEAR))
    assert np.array_equal(train.frames[o].numpy(), resized)


def test_shuffle_is_seeded_and_covers_every_sequence_once(train) -> None:
    def order(seed: int, epochs: int = 1) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return [
            [i for b in iter_batches(train, 4, shuffle=True, generator=gen)
             for i in b.index.tolist()]
            for _ in range(epochs)
        ]  # fmt: skip

    first, second = order(0, epochs=2)
    assert sorted(first) == sorted(second) == list(range(len(train)))
    assert first != second  # reshuffled every epoch
    assert order(0, epochs=2) == [first, second]
    assert order(1)[0] != first


def test_train_mode_augments_with_a_seeded_generator(train) -> None:
    def frames(seed: int) -> torch.Tensor:
        batches = iter_batches(
            train, 64, shuffle=False, augment=True,
            aug_generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        return torch.cat([b.frames for b in batches])

    plain = torch.cat([b.frames for b in iter_batches(train, 64, shuffle=False)])
    a, b, c = frames(0), frames(0), frames(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == plain.shape and (a - plain).abs().mean() > 0.05
    assert a.is_contiguous(memory_format=torch.channels_last)


def test_other_splits_and_uri(cache) -> None:
    for split in ("val", "test"):
        data = load_split(cache, split, "cpu")
        assert len(data) == read_manifest(cache)["counts"]["splits"][split]["sequences"]
        assert (
            sum(b.n_frames for b in iter_batches(data, 64, shuffle=False)) == (data.frames.shape[0])
        )
    via_uri = load_split(f"file://{cache}", "val", "cpu")
    assert torch.equal(via_uri.frames, load_split(cache, "val", "cpu").frames)
    with pytest.raises(CacheError, match="no split"):
        load_split(cache, "training", "cpu")


def test_a_corrupt_cache_is_refused(cache, tmp_path) -> None:
    copy = Path(shutil.copytree(cache, tmp_path / "copy"))
    shard = read_manifest(copy)["shards"][0]["path"]
    data = bytearray((copy / shard).read_bytes())
    data[-100] ^= 0x01
    (copy / shard).write_bytes(bytes(data))
    with pytest.raises(CacheError, match=shard):
        load_split(copy, "train", "cpu")
    (copy / "manifest.json").unlink()
    with pytest.raises(CacheError, match="not a cache"):
        load_split(copy, "train", "cpu")


def test_training_never_makes_a_batch_of_one(train) -> None:
    from jersey_ray.cache.loader import batch_bounds

    assert batch_bounds(129, 64, training=True) == [(0, 64), (64, 129)]
    assert batch_bounds(129, 64, training=False) == [(0, 64), (64, 128), (128, 129)]
    assert batch_bounds(130, 64, training=True) == [(0, 64), (64, 128), (128, 130)]
    assert batch_bounds(1, 64, training=True) == [(0, 1)]
    b = len(train) - 1  # the real split: one sequence left over at this batch size
    sizes = [len(x.index) for x in iter_batches(train, b, shuffle=False, training=True)]
    assert sizes == [len(train)]
    sizes = [len(x.index) for x in iter_batches(train, b, shuffle=False)]
    assert sizes == [b, 1]  # evaluation keeps every sequence in its own batch, as before
