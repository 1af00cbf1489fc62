"""The Ray Data preprocessing cache: round trip, reuse, atomicity, verification, bad files."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jersey_ray.cache import build as B
from jersey_ray.cache import store as S
from jersey_ray.cache.__main__ import main as cache_main
from jersey_ray.cache.decode import COLUMNS
from jersey_ray.cache.plan import cache_name, make_plan
from jersey_ray.config import DataConfig, to_dict
from jersey_ray.data.index import index_root, select_frames
from jersey_ray.data.split import split_tracks

ray = pytest.importorskip("ray")

SIZE = (32, 16)
MAX_FRAMES = 4


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()  # reuse a session another module left running
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _image(path: Path, mode: str, hw: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8))
    img = rgb.convert(mode) if mode != "P" else rgb.quantize(16)
    if mode in ("RGBA", "LA"):
        img.putalpha(Image.fromarray(rng.integers(0, 256, hw, dtype=np.uint8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path)


def _truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 20, 3), 128, np.uint8)).save(buf, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _corrupt(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "truncated":
        _truncated_jpeg(path)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    else:
        path.write_text("this is not a png\n")


def make_root(root: Path) -> Path:
    """Modes and aspect ratios in jersey 4, every corrupt kind in jersey 48, a long
    sequence (frame selection) in jersey 07; three tracks each, so every split is used."""
    seq = root / "4" / "t1" / "s1"
    _image(seq / "anchor.jpg", "RGB", (32, 16), 1)
    _image(seq / "f1.png", "L", (64, 16), 2)  # tall
    _image(seq / "f2.png", "P", (10, 40), 3)  # wide
    seq = root / "4" / "t2" / "s1"
    _image(seq / "f1.jpg", "CMYK", (20, 20), 4)
    _image(seq / "f2.png", "RGBA", (33, 17), 5)
    _image(seq / "f3.png", "LA", (5, 3), 6)  # upscaled
    _image(root / "4" / "t3" / "s1" / "f1.jpg", "RGB", (100, 30), 7)
    seq = root / "48" / "t1" / "s1"
    _corrupt(seq / "anchor.jpg", "zero")  # the next frame becomes the anchor
    _image(seq / "f1.jpg", "RGB", (40, 20), 8)
    _image(seq / "f2.jpg", "RGB", (40, 20), 9)
    seq = root / "48" / "t2" / "s1"  # nothing decodable: dropped
    for name, kind in [("f1.jpg", "zero"), ("f2.jpg", "truncated"), ("f3.jpg", "random")]:
        _corrupt(seq / name, kind)
    _corrupt(seq / "f4.png", "text")
    seq = root / "48" / "t3" / "s1"
    _image(seq / "f1.jpg", "RGB", (30, 30), 10)
    _corrupt(seq / "f2.png", "text")
    _image(root / "48" / "t3" / "s2" / "f1.png", "RGB", (16, 8), 11)
    for t in (1, 2, 3):
        for f in range(1, 21 if t == 1 else 3):
            _image(root / "07" / f"t{t}" / "s1" / f"f{f}.jpg", "RGB", (36, 18), 100 * t + f)
    return root


def reference_letterbox(path: Path) -> np.ndarray:
    """Report-spec 1.6, written independently of the cache: convert, resize, paste on black."""
    height, width = SIZE
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(height / h, width / w)
    nh, nw = int(h * s), int(w * s)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), ((width - nw) // 2, (height - nh) // 2))
    return np.asarray(canvas)


def settings(root: Path, **kw) -> DataConfig:
    return DataConfig(root=str(root), size=SIZE, max_frames=MAX_FRAMES, **kw)


def build(root: Path, out, **kw) -> B.CacheResult:
    return B.build_cache(settings(root), out, progress=False, **kw)


@pytest.fixture(scope="module")
def built(ray_session, tmp_path_factory) -> tuple[Path, Path, B.CacheResult]:
    base = tmp_path_factory.mktemp("cache")
    root = make_root(base / "data")
    return root, base / "cache", build(root, base / "cache")


def _rows(cache: Path) -> dict[str, dict]:
    manifest = json.loads((cache / "manifest.json").read_text())
    rows = {}
    for shard in manifest["shards"]:
        table = pq.read_table(cache / shard["path"])
        assert tuple(table.column_names) == COLUMNS
        for row in table.to_pylist():
            rows[row["seq_id"]] = {**row, "split": shard["split"]}
    return rows


def test_round_trip_frames_equal_the_letterboxed_inputs(built) -> None:
    root, cache, result = built
    assert not result.reused and result.path == str(cache)
    rows = _rows(cache)
    index = index_root(root)
    assignment = split_tracks(index.sequences, seed=42)
    bad = {s["path"] for s in result.manifest["skipped"]}
    assert set(rows) == {s.seq_id for s in index.sequences} - {"48/t2/s1"}
    for seq in index.sequences:
        if seq.seq_id not in rows:
            continue
        row = rows[seq.seq_id]
        paths = [p for p in select_frames(seq, MAX_FRAMES) if p not in bad]
        frames = np.frombuffer(row["frames"], np.uint8).reshape(-1, *SIZE, 3)
        assert row["n_frames"] == len(paths) == len(frames)
        for path, frame in zip(paths, frames, strict=True):
            assert np.array_equal(frame, reference_letterbox(root / path)), path
        assert (row["tens"], row["ones"]) == (seq.tens, seq.ones)
        assert (row["jersey"], row["track"], row["anchor"]) == (seq.jersey, seq.track, 0)
        assert (
            row["split"] == assignment[seq.track] == result.manifest["split_assignment"][seq.track]
        )
    assert rows["07/t1/s1"]["n_frames"] == MAX_FRAMES  # 20 frames, 4 selected


def test_modes_and_padding_are_as_expected(built) -> None:
    _, cache, _ = built
    frames = np.frombuffer(_rows(cache)["4/t1/s1"]["frames"], np.uint8).reshape(-1, *SIZE, 3)
    tall, wide = frames[1], frames[2]
    assert (tall[:, :4] == 0).all() and (tall[:, 12:] == 0).all()  # 64x16 -> 32x8, centred
    assert (tall[:, 4:12] == tall[:, 4:12, :1]).all()  # grayscale stays gray in RGB
    assert (wide[:14] == 0).all() and (wide[18:] == 0).all()  # 10x40 -> 4x16


def test_corrupt_files_are_skipped_listed_and_counted(built) -> None:
    _, cache, result = built
    m = result.manifest
    decode = {s["path"]: s["reason"] for s in m["skipped"] if s["stage"] == "decode"}
    assert decode == {
        "48/t1/s1/anchor.jpg": "empty_file",
        "48/t2/s1/f1.jpg": "empty_file",
        "48/t2/s1/f2.jpg": "truncated",
        "48/t2/s1/f3.jpg": "not_an_image",
        "48/t2/s1/f4.png": "not_an_image",
        "48/t3/s1/f2.png": "not_an_image",
    }
    assert m["skipped_counts"] == {"empty_file": 2, "not_an_image": 3, "truncated": 1}
    assert m["dropped_sequences"] == [{"seq_id": "48/t2/s1", "reason": "no_decodable_frame"}]
    assert m["anchor_replaced"] == [
        {"seq_id": "48/t1/s1", "failed": "48/t1/s1/anchor.jpg", "anchor": "48/t1/s1/f1.jpg"}
    ]
    assert m["sequences"] == 9 and m["frames"] == sum(r["n_frames"] for r in _rows(cache).values())
    line = B.summary_line(str(cache), m)
    assert "9 sequences" in line and "6 skipped" in line and "1 sequences dropped" in line


def test_manifest_describes_counts_and_shards(built) -> None:
    root, cache, result = built
    m = json.loads((cache / "manifest.json").read_text())
    assert m == result.manifest
    assert m["format"] == S.CACHE_FORMAT
    assert m["data"] == to_dict(settings(root.resolve()))  # the DataConfig, whole
    assert S.data_config(m) == settings(root.resolve())  # and back
    splits = m["counts"]["splits"]
    assert sum(c["sequences"] for c in splits.values()) == m["sequences"]
    assert all(splits[s]["sequences"] > 0 for s in ("train", "val", "test"))
    per_class = m["counts"]["per_class"]
    assert set(per_class) == {"4", "07", "48"}
    assert per_class["48"]["train"]["frames"] + per_class["48"]["val"]["frames"] + per_class["48"][
        "test"
    ]["frames"] == sum(r["n_frames"] for s, r in _rows(cache).items() if s[:2] == "48")
    for shard in m["shards"]:
        assert shard["path"].startswith(f"{shard['split']}/part-")
        assert S.shard_digest(pafs.LocalFileSystem(), str(cache / shard["path"])) == (
            shard["sha256"], shard["bytes"],
        )  # fmt: skip
    assert m["frames_per_s"] > 0 and m["build_seconds"] > 0


def test_second_build_is_reused_instantly(built, capsys) -> None:
    root, cache, result = built
    start = time.perf_counter()
    code = cache_main(
        ["build", str(root), "--out", str(cache), "--size", "32x16", "--max-frames", "4"]
    )
    assert code == 0 and time.perf_counter() - start < 5
    out = capsys.readouterr().out
    assert f"reusing cache {cache} (fingerprint {result.manifest['fingerprint'][:12]}" in out
    again = build(root, cache)
    assert again.reused and again.manifest == result.manifest
    quiet = ["build", str(root), "--out", str(cache), "--size", "32x16", "--max-frames", "4"]
    assert cache_main([*quiet, "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()  # no bar or notes, the summary still there
    assert line.startswith(
        f"cache {cache} reused (same fingerprint): {result.manifest['sequences']} sequences"
    )


def test_fingerprint_changes_with_files_and_parameters(tmp_path) -> None:
    root = tmp_path / "data"
    for t in (1, 2):
        _image(root / "4" / f"t{t}" / "s1" / "f1.jpg", "RGB", (20, 10), t)

    def fp(**kw) -> str:
        return make_plan(
            DataConfig(**{"root": str(root), "size": SIZE, "max_frames": 4, **kw})
        ).fingerprint

    base = fp()
    assert fp() == base
    changed = {
        fp(size=(32, 17)), fp(max_frames=5), fp(split_seed=1), fp(numbers=("4",)),
    }  # fmt: skip
    assert base not in changed and len(changed) == 4
    target = root / "4" / "t1" / "s1" / "f1.jpg"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    touched = fp()
    assert touched != base
    _image(root / "4" / "t1" / "s1" / "f2.jpg", "RGB", (20, 10), 3)
    assert fp() not in (base, touched)


def test_changed_data_rebuilds_and_replaces(ray_session, tmp_path) -> None:
    root = tmp_path / "data"
    for t in (1, 2):
        _image(root / "4" / f"t{t}" / "s1" / "f1.jpg", "RGB", (20, 10), t)
    first = build(root, tmp_path / "c")
    _image(root / "4" / "t1" / "s1" / "f2.jpg", "RGB", (20, 10), 3)
    second = build(root, tmp_path / "c")
    assert not second.reused and second.manifest["fingerprint"] != first.manifest["fingerprint"]
    assert second.manifest["frames"] == first.manifest["frames"] + 1
    assert S.verify_cache(tmp_path / "c")["fingerprint"] == second.manifest["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "data"]  # no leftovers
    forced = build(root, tmp_path / "c", force=True)
    assert not forced.reused and forced.manifest["created"] >= second.manifest["created"]


def test_a_failed_build_leaves_no_cache(ray_session, tmp_path, monkeypatch) -> None:
    root = make_root(tmp_path / "data")

    def boom(tmp: Path):
        assert any(tmp.glob("*/part-*.parquet"))  # the shards were written
        raise KeyboardInterrupt

    monkeypatch.setattr(B, "describe_shards", boom)
    with pytest.raises(KeyboardInterrupt):
        build(root, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    monkeypatch.undo()
    assert not build(root, tmp_path / "c").reused
    assert S.verify_cache(tmp_path / "c")["sequences"] == 9


def test_a_killed_build_leaves_nothing_that_looks_valid(ray_session, tmp_path) -> None:
    root = make_root(tmp_path / "data")
    out = tmp_path / "c"
    address = ray.get_runtime_context().gcs_address
    cmd = [
        *(sys.executable, "-m", "jersey_ray.cache", "build", str(root), "--out", str(out)),
        *("--size", "32x16", "--max-frames", "4", "--address", address, "--no-progress"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("c.tmp-*/*/*.parquet")):  # killed once it writes shards
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    with pytest.raises(S.CacheError, match="not a cache"):
        S.verify_cache(out)
    leftovers = S.leftovers(str(out))
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0]
    result = build(root, out)
    assert not result.reused and S.verify_cache(out)["sequences"] == 9


def test_two_concurrent_builds_of_one_cache(ray_session, tmp_path) -> None:
    root = make_root(tmp_path / "data")
    out = tmp_path / "c"
    address = ray.get_runtime_context().gcs_address
    cmd = [
        *(sys.executable, "-m", "jersey_ray.cache", "build", str(root), "--out", str(out)),
        *("--size", "32x16", "--max-frames", "4", "--address", address, "--no-progress"),
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode()[-2000:] for _, e in outputs]
    lines = sorted(o.decode().strip().splitlines()[-1] for o, _ in outputs)
    assert all(line.startswith(f"cache {out} ") for line in lines)
    assert S.verify_cache(out)["sequences"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "data"]  # no leftovers


def test_verify_catches_a_flipped_byte_and_a_missing_shard(built, tmp_path, capsys) -> None:
    _, cache, result = built
    assert S.verify_cache(cache) == result.manifest
    assert cache_main(["verify", str(cache)]) == 0
    copy = Path(shutil.copytree(cache, tmp_path / "copy"))
    shard = result.manifest["shards"][0]["path"]
    data = bytearray((copy / shard).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / shard).write_bytes(bytes(data))
    with pytest.raises(S.CacheError, match=f"shard {shard} fails its sha256"):
        S.verify_cache(copy)
    capsys.readouterr()
    assert cache_main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert shard in err and "--force" in err
    S.verify_cache(copy, quick=True)  # same size: only the full check sees it
    (copy / shard).unlink()
    with pytest.raises(S.CacheError, match=f"shard {shard} is missing"):
        S.verify_cache(copy, quick=True)
    (copy / "manifest.json").unlink()
    with pytest.raises(S.CacheError, match="not a cache"):
        S.verify_cache(copy)


def test_concurrent_build_uses_the_identical_cache_already_installed(built, tmp_path) -> None:
    _, cache, result = built
    dest = Path(shutil.copytree(cache, tmp_path / "c"))
    loser = Path(shutil.copytree(cache, tmp_path / "c.tmp-loser"))
    other = S.install_local(loser, dest, result.manifest["fingerprint"], force=False)
    assert other == result.manifest and not loser.exists()
    newer = Path(shutil.copytree(cache, tmp_path / "c.tmp-newer"))
    (newer / "marker").write_text("x")
    assert S.install_local(newer, dest, "another fingerprint", force=False) is None
    assert (dest / "marker").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_uri_storage(built, tmp_path) -> None:
    root, _, local = built
    uri = f"file://{tmp_path}/remote"
    result = build(root, uri)
    assert not result.reused and (tmp_path / "remote" / "manifest.json").exists()
    assert S.verify_cache(uri)["fingerprint"] == local.manifest["fingerprint"]
    ours = {s["path"]: s["sha256"] for s in result.manifest["shards"]}
    assert ours == {s["path"]: s["sha256"] for s in local.manifest["shards"]}  # deterministic
    assert build(root, uri).reused
    assert not list(tmp_path.glob("remote*tmp*"))


def test_bad_arguments_are_user_errors(built, tmp_path) -> None:
    root = built[0]
    assert cache_main(["build", str(root), "--out", str(tmp_path / "c"), "--size", "9"]) == 2
    assert cache_main(["build", str(root), "--out", str(tmp_path / "c"), "--max-frames", "0"]) == 2
    assert cache_main(["build", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    precious = tmp_path / "precious"
    (precious / "notes.txt").parent.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(S.CacheError, match="not a cache"):
        build(root, precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_cache_names_follow_the_data_config(tmp_path) -> None:
    base = DataConfig(root=str(tmp_path / "data"), size=SIZE, max_frames=4)
    name = cache_name(base)
    assert name.startswith("data-32x16-f4-s42-") and cache_name(base) == name
    others = {
        cache_name(DataConfig(**{**to_dict(base), **change}))
        for change in ({"numbers": ["4"]}, {"split_seed": 1}, {"size": [32, 17]},
                       {"split": "heldout"}, {"root": str(tmp_path / "elsewhere")})
    }  # fmt: skip
    assert name not in others and len(others) == 5


def test_ray_workers_import_the_cache_decoder_without_torch() -> None:
    code = "import sys, jersey_ray.cache.decode; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_heldout_cache_keeps_its_numbers_out_of_train_and_val(ray_session, tmp_path) -> None:
    root = tmp_path / "data"
    for number in ("4", "8", "44", "48", "84", "88"):
        for t in (1, 2, 3):
            _image(root / number / f"t{t}" / "s1" / "f1.jpg", "RGB", (20, 10), t)
    data = DataConfig(root=str(root), size=SIZE, max_frames=2, split="heldout")
    result = B.build_cache(data, tmp_path / "c", progress=False)
    m = result.manifest
    built = S.data_config(m)
    assert built.heldout_numbers == ("48",) or len(built.heldout_numbers) == 1
    held = set(built.heldout_numbers)
    assert S.splits_of(m) == ["train", "val", "test", "unseen"]
    for track, split in m["split_assignment"].items():
        assert (split == "unseen") == (track.split("/")[0] in held), track
    unseen = sum(m["counts"]["per_class"][n]["unseen"]["sequences"] for n in held)
    assert unseen == m["counts"]["splits"]["unseen"]["sequences"] == 3
    assert cache_name(data) != cache_name(settings(root))  # its own cache
    again = B.build_cache(data, tmp_path / "c", progress=False)
    assert again.reused and S.data_config(again.manifest) == built  # the choice is stable
