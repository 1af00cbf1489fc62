"""Cheap restarts: a sweep's trials do not hash the cache again once the driver verified it.

The driver hashes every shard once (:func:`verify_for_trials`) and hands the trials a token, the
sha256 of the manifest it verified; a trial, and each of its restarts (a retry, an ASHA resume,
``--resume``), checks only that token and the shards' sizes (:func:`check_verified`). A
standalone run verifies in full, once (it hashed the shards twice before). Caches are built
with the serial pipeline (tests/serial_cache.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from serial_cache import use_serial_build

from jersey_ray.bench import restart as R
from jersey_ray.cache import build as B
from jersey_ray.cache import loader
from jersey_ray.cache import store as S
from jersey_ray.config import DataConfig
from jersey_ray.data import synth
from jersey_ray.sweep import trainable
from jersey_ray.train import loop as L


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    synth.generate(root, sequences=48, size=(32, 16), frames=(2, 4), seed=3, workers=1,
                   progress=False)  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        use_serial_build(mp)
        built = B.build_cache(
            DataConfig(root=str(root), size=(32, 16), max_frames=4),
            tmp_path_factory.mktemp("c") / "cache",
            progress=False,
        )
    return Path(built.path)


@pytest.fixture
def copy(cache, tmp_path) -> Path:
    return Path(shutil.copytree(cache, tmp_path / "cache"))


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every shard the code under test hashes (store.shard_digest calls)."""
    seen: list[str] = []
    real = S.shard_digest

    def counting(fs, path):
        seen.append(Path(path).name)
        return real(fs, path)

    monkeypatch.setattr(S, "shard_digest", counting)
    loader._VERIFIED.clear()
    return seen


def flip_a_byte(shard: Path) -> None:
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))


def test_trials_check_the_drivers_token_without_hashing(copy, hashes):
    token = S.verify_for_trials(copy)
    shards = len(S.read_manifest(copy)["shards"])
    assert len(hashes) == shards  # the driver hashed each shard once
    hashes.clear()
    manifest = S.check_verified(copy, token)
    data = L.load_data(copy, "cpu", verified=token)
    assert hashes == []  # the trial's start-up hashed nothing
    assert manifest == S.read_manifest(copy) and set(data.splits) == {"train", "val", "test"}
    assert data.data.size == (32, 16)


def test_a_standalone_run_hashes_each_shard_once(copy, hashes):
    data = L.load_data(copy, "cpu")
    names = [s["path"].split("/")[-1] for s in S.read_manifest(copy)["shards"]]
    assert sorted(hashes) == sorted(names)  # once each (load_split hashed them all again before)
    assert len(data["train"]) == S.read_manifest(copy)["counts"]["splits"]["train"]["sequences"]


def test_the_cheap_check_catches_missing_and_resized_shards_and_a_new_manifest(copy):
    token = S.verify_for_trials(copy)
    shard = next(copy.glob("val/*.parquet"))
    saved = shard.read_bytes()
    shard.write_bytes(saved[:-10])
    with pytest.raises(S.CacheError, match=rf"shard val/{shard.name} has \d+ bytes, manifest"):
        S.check_verified(copy, token)
    shard.unlink()
    with pytest.raises(S.CacheError, match=rf"shard val/{shard.name} is missing"):
        L.load_data(copy, "cpu", verified=token)
    shard.write_bytes(saved)
    S.check_verified(copy, token)
    manifest = json.loads((copy / S.MANIFEST).read_text())
    manifest["created"] = "2000-01-01T00:00:00+00:00"  # another build installed meanwhile
    (copy / S.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(S.CacheError, match="changed since the sweep verified the cache"):
        S.check_verified(copy, token)


def test_a_same_size_corruption_is_the_drivers_to_catch(copy):
    """The documented trade: a flipped byte keeps the size, so only the full check sees it; the
    driver runs that before every sweep and every --resume."""
    token = S.verify_for_trials(copy)
    shard = next(copy.glob("train/*.parquet"))
    flip_a_byte(shard)
    assert S.check_verified(copy, token)  # sizes and manifest unchanged
    with pytest.raises(S.CacheError, match=rf"shard train/{shard.name} fails its sha256"):
        S.verify_for_trials(copy)
    with pytest.raises(S.CacheError, match="fails its sha256"):
        L.load_data(copy, "cpu")  # a standalone run verifies in full


def test_the_trainable_passes_the_token_to_the_trial(copy, tmp_path, monkeypatch, hashes):
    """run_trial as Tune calls it (a fresh start, then a restart from a checkpoint): the token
    reaches load_data, so neither start hashes a shard."""
    token = S.verify_for_trials(copy)
    hashes.clear()
    trained: list[Path | None] = []
    monkeypatch.setattr(trainable, "_record_placement", lambda out: None)
    monkeypatch.setattr(trainable.tune, "get_context", lambda: SimpleNamespace(
        get_trial_dir=lambda: str(tmp_path / "trial")))  # fmt: skip
    monkeypatch.setattr(trainable, "train", lambda cfg, data, out, **kw: trained.append(
        kw.get("resume")))  # fmt: skip
    config = {"model": "basic_sv2", "seed": 1, "device": "cpu", "pretrained": "none"}
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    trainable.run_trial(config, str(copy), verified=token)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.pt").write_bytes(b"")
    checkpoint = SimpleNamespace(as_directory=lambda: _Folder(ckpt))
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: checkpoint)
    trainable.run_trial(config, str(copy), verified=token)
    assert trained[0] is None and trained[1] is not None and trained[1].name == "ckpt"
    assert hashes == []
    with pytest.raises(S.CacheError, match="changed since the sweep verified"):
        trainable.run_trial(config, str(copy), verified="0" * 64)


class _Folder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc) -> None:
        return None


def test_bench_restart_prints_both_costs(cache, capsys):
    assert R.main([str(cache), "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("full verify", "cheap check", "trial start-up before", "trial start-up after"):
        assert label in out, out
    assert R.main([str(cache.parent / "nope")]) == 2
