"""jersey_ray.data.soccernet: the SoccerNet crops importer, on a hand-made archive and (when it
is present) on the real one."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from jersey_ray.data import soccernet
from jersey_ray.data.__main__ import main
from jersey_ray.data.index import index_root
from jersey_ray.data.soccernet import chunk_sizes, import_soccernet
from jersey_ray.errors import UserError


def _jpeg(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 7), (shade, shade, shade)).save(buf, format="JPEG")
    return buf.getvalue()


def _labels(entries: dict[str, str | None]) -> bytes:
    data_list = [
        {"img_path": p, "instances": [] if t is None else [{"text": t}]} for p, t in entries.items()
    ]
    data_list.append({"img_path": 5, "instances": [{"text": "5"}]})  # bad_annotation: no path
    return json.dumps({"metainfo": {"task_name": "textrecog"}, "data_list": data_list}).encode()


# tracklet 5 (label 10) is split over both folders with unpadded frame numbers and one frame in
# both; tracklet 8 disagrees on its label; tracklet 9 (label 7) has 20 frames.
TRAIN = {
    "5/5_1.jpg": "10",
    "5/5_11.jpg": "10",
    "5/5_2.jpg": "10",
    "8/8_1.jpg": "7",
    "6/6_1.jpg": "123",  # bad_label
    "6/6_2.jpg": None,  # bad_annotation (no instance)
    **{f"9/9_{i}.jpg": "7" for i in range(1, 21)},
}
TEST = {"5/5_3.jpg": "10", "5/5_2.jpg": "10", "8/8_2.jpg": "9", "4/4_1.jpg": "44"}


def _members() -> list[tuple[str, bytes | None]]:
    """(path, bytes) in archive order; None marks a folder. Labels sit mid-stream, as in the
    real archive."""
    out: list[tuple[str, bytes | None]] = [("train", None)]
    for i, rel in enumerate(TRAIN):
        out.append((f"train/{rel}", _jpeg(i)))
        if i == 3:
            out.append(("train/gen-annotations-L.json", _labels(TRAIN)))
    out += [("train/5/5_12.jpg", _jpeg(99)), ("train/5/oops.jpg", _jpeg(98))]  # unlabelled, bad
    out += [("test/" + rel, _jpeg(50 + i)) for i, rel in enumerate(TEST) if rel != "4/4_1.jpg"]
    out += [("test/gen-annotations-L.json", _labels(TEST)), ("README.txt", b"hi")]
    return out


def make_archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in _members():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("train/5/5_40.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "5_1.jpg"
        tar.addfile(link)
    return path


def make_folder(path: Path) -> Path:
    for name, data in _members():
        target = path / name
        if data is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return path


EXPECTED_SKIPS = {
    "annotation_without_crop": 1,  # test/4/4_1.jpg
    "bad_annotation": 3,  # 6/6_2.jpg, and one entry without a path in each label file
    "bad_crop_name": 1,
    "bad_label": 1,
    "duplicate_crop": 1,
    "not_in_annotations": 1,
    "tracklets_label_conflict": 1,
    "unexpected_path": 1,
}


def test_import_archive(tmp_path):
    out = tmp_path / "out"
    result = import_soccernet(
        make_archive(tmp_path / "crops.tar.gz"), out, max_frames_per_sequence=8, progress=False
    )
    assert (result.tracklets, result.sequences, result.frames) == (2, 4, 24)
    assert result.skipped == {**EXPECTED_SKIPS, "unreadable_crop": 1}
    assert "2 tracklets (4 sequences, 24 frames)" in result.summary_line()
    index = index_root(out)
    assert index.skipped == []
    by_id = {s.seq_id: s for s in index.sequences}
    assert sorted(by_id) == ["10/5/seq_000", "7/9/seq_000", "7/9/seq_001", "7/9/seq_002"]
    merged = by_id["10/5/seq_000"]
    assert [Path(f).name for f in merged.frames] == ["5_1.jpg", "5_2.jpg", "5_3.jpg", "5_11.jpg"]
    assert (out / "10/5/seq_000/5_2.jpg").read_bytes() == _jpeg(2)  # train/ copy kept
    assert (merged.tens, merged.ones) == (1, 0)
    cuts = [[Path(f).name for f in by_id[f"7/9/seq_00{i}"].frames] for i in range(3)]
    assert cuts[0] == [f"9_{i}.jpg" for i in range(1, 8)]
    assert cuts[2] == [f"9_{i}.jpg" for i in range(15, 21)]
    assert (by_id["7/9/seq_000"].tens, by_id["7/9/seq_000"].ones) == (10, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops.tar.gz", "out"]


def test_import_folder_matches_archive(tmp_path):
    from_tar = import_soccernet(make_archive(tmp_path / "c.tar.gz"), tmp_path / "a", progress=False)
    from_dir = import_soccernet(make_folder(tmp_path / "crops"), tmp_path / "b", progress=False)
    assert from_dir.skipped == EXPECTED_SKIPS  # no symlink in the folder
    assert (from_dir.tracklets, from_dir.sequences, from_dir.frames) == (2, 3, 24)
    assert (from_tar.tracklets, from_tar.sequences, from_tar.frames) == (2, 3, 24)
    tree_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    tree_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert tree_a == tree_b


def test_chunk_sizes_are_balanced():
    assert chunk_sizes(20, 8) == [7, 7, 6]
    assert chunk_sizes(17, 16) == [9, 8]
    assert chunk_sizes(16, 16) == [16]
    assert chunk_sizes(1, 16) == [1]
    for n in range(1, 200):
        sizes = chunk_sizes(n, 16)
        assert sum(sizes) == n and max(sizes) <= 16 and max(sizes) - min(sizes) <= 1


def test_out_is_refused_unless_forced(tmp_path):
    src = make_archive(tmp_path / "crops.tar.gz")
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    with pytest.raises(UserError, match="--force"):
        import_soccernet(src, out, progress=False)
    assert (out / "keep").is_dir()
    import_soccernet(src, out, force=True, progress=False)
    assert not (out / "keep").exists() and (out / "10/5/seq_000").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops.tar.gz", "out"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        import_soccernet(src, tmp_path / "file", force=True, progress=False)


def test_interrupted_import_leaves_no_output(tmp_path, monkeypatch):
    src = make_archive(tmp_path / "crops.tar.gz")
    calls = []

    def chunks(n, limit):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [n]

    monkeypatch.setattr(soccernet, "chunk_sizes", chunks)
    with pytest.raises(KeyboardInterrupt):
        import_soccernet(src, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops.tar.gz"]


def test_bad_sources(tmp_path):
    with pytest.raises(UserError, match="not found"):
        import_soccernet(tmp_path / "missing.tar.gz", tmp_path / "o", progress=False)
    good = make_archive(tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="cannot read the archive"):
        import_soccernet(tmp_path / "cut.tar.gz", tmp_path / "o", progress=False)
    (tmp_path / "crops" / "train" / "1").mkdir(parents=True)
    (tmp_path / "crops" / "train" / "1" / "1_1.jpg").write_bytes(_jpeg(0))
    with pytest.raises(UserError, match=r"gen-annotations-L\.json"):
        import_soccernet(tmp_path / "crops", tmp_path / "o", progress=False)
    (tmp_path / "crops" / "train" / "gen-annotations-L.json").write_text("{not json")
    with pytest.raises(UserError, match="not an MMOCR label file"):
        import_soccernet(tmp_path / "crops", tmp_path / "o", progress=False)
    (tmp_path / "crops" / "train" / "gen-annotations-L.json").write_text('{"data_list": 3}')
    with pytest.raises(UserError, match="not an MMOCR label file"):
        import_soccernet(tmp_path / "crops", tmp_path / "o", progress=False)
    (tmp_path / "crops" / "train" / "gen-annotations-L.json").write_bytes(_labels({}))
    with pytest.raises(UserError, match="no usable crops"):
        import_soccernet(tmp_path / "crops", tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_cli(tmp_path, capsys):
    src, out = str(make_archive(tmp_path / "crops.tar.gz")), str(tmp_path / "out")
    assert main(["import-soccernet", src, out, "--max-frames-per-sequence", "8", "--quiet"]) == 0
    assert "imported 2 tracklets (4 sequences, 24 frames)" in capsys.readouterr().out
    assert main(["import-soccernet", src, out, "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["import-soccernet", src, out, "--quiet", "--force"]) == 0
    capsys.readouterr()
    assert main(["import-soccernet", src, out, "--max-frames-per-sequence", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-frames-per-sequence" in err and err.count("\n") == 1  # one line, no usage


# --- the real archive ------------------------------------------------------------------------


def _real_dir() -> Path:
    env = os.environ.get("JERSEY_RAY_SOCCERNET")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared/data/soccernet-numcrops"


REAL = _real_dir()


@pytest.mark.skipif(
    not (REAL / "crops.tar.gz").is_file(), reason="SoccerNet crops not present (optional data)"
)
def test_real_archive(tmp_path):
    result = import_soccernet(REAL / "crops.tar.gz", tmp_path / "out", progress=False)
    with open(REAL / "tracklets_index.csv", newline="") as fh:
        facts = {row["tracklet_id"]: row for row in csv.DictReader(fh)}
    assert (result.tracklets, result.frames) == (len(facts), 43822) == (823, 43822)
    assert result.skipped == {}
    index = index_root(tmp_path / "out")
    assert index.skipped == []
    tracks = Counter()
    labels = {}
    for seq in index.sequences:
        tracklet = seq.track.split("/")[1]
        tracks[tracklet] += seq.n_frames
        labels[tracklet] = seq.jersey
    assert labels == {t: row["label"] for t, row in facts.items()}
    assert tracks == {t: int(row["n_crops"]) for t, row in facts.items()}
    digits = Counter(len(label) for label in labels.values())
    assert (digits[1], digits[2]) == (280, 543)
    assert max(s.n_frames for s in index.sequences) <= 16
