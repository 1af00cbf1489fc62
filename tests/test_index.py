"""jersey_ray.data.index: labels, natural sort, frame selection, the walk and its skips."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import pytest
from PIL import Image

from jersey_ray.data import index as index_mod
from jersey_ray.data.index import (
    NO_LABEL,
    DataError,
    Sequence,
    index_root,
    natural_key,
    parse_label,
    select_frames,
)
from jersey_ray.metrics import BLANK

LAYOUT = "ROOT/<jersey>/<track>/<sequence>/*.jpg"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 6), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def put(root: Path, rel: str, data: bytes = JPEG) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def seq(anchor: str | None, frames: list[str]) -> Sequence:
    return Sequence("7", "7/t", "7/t/s", anchor, tuple(frames), BLANK, 7)


# --- labels and sort ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "label"),
    [("7", (BLANK, 7)), ("0", (BLANK, 0)), ("07", (0, 7)), ("00", (0, 0)), ("99", (9, 9))],
)
def test_parse_label_valid(name, label):
    assert parse_label(name) == label


def test_one_and_two_digit_forms_are_distinct_classes():
    assert parse_label("7") != parse_label("07")


@pytest.mark.parametrize("name", ["", "123", "7a", "a7", " 7", "7 ", "-1", "7\n", "٣", "x"])
def test_parse_label_rejects(name):
    assert parse_label(name) is None


def test_natural_key_orders_numbers_by_value():
    names = ["f10.jpg", "f2.jpg", "f1.jpg", "0_11.jpg", "0_2.jpg", "0_1.jpg"]
    assert sorted(names, key=natural_key) == [
        "0_1.jpg",
        "0_2.jpg",
        "0_11.jpg",
        "f1.jpg",
        "f2.jpg",
        "f10.jpg",
    ]


def test_natural_key_is_total_on_mixed_names():
    names = ["b", "10", "a1", "1a", "F2", "f02", "f2", ""]
    once = sorted(names, key=natural_key)
    assert once == sorted(reversed(names), key=natural_key)
    assert once.index("f02") < once.index("f2")


# --- frame selection -----------------------------------------------------------------------


def test_select_fewer_than_max_takes_all_anchor_first():
    s = seq("a/anchor.jpg", ["f1", "f2", "f3"])
    assert select_frames(s, 16) == ["a/anchor.jpg", "f1", "f2", "f3"]


def test_select_exactly_max_takes_all():
    frames = [f"f{i}" for i in range(15)]
    assert select_frames(seq("anc", frames), 16) == ["anc", *frames]


def test_select_more_than_max_exact_indices():
    frames = [f"f{i}" for i in range(20)]  # m = 20, k = 15: floor(i * 20 / 15)
    picked = select_frames(seq("anc", frames), 16)
    assert picked == ["anc"] + [
        f"f{i}" for i in (0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18)
    ]
    frames = [f"f{i}" for i in range(30)]
    assert select_frames(seq("anc", frames), 16)[1:] == [f"f{i}" for i in range(0, 30, 2)]


def test_select_without_anchor_uses_first_frame():
    frames = [f"f{i}" for i in range(20)]  # head f0; rest m = 19, k = 3: 0, 6, 12 of the rest
    assert select_frames(seq(None, frames), 4) == ["f0", "f1", "f7", "f13"]
    assert select_frames(seq(None, ["only"]), 16) == ["only"]


def test_select_matches_reference_float_formula():
    for n in range(17, 700):  # reference n counts the anchor: frame_paths = [anchor] + rest
        frames = [f"f{i}" for i in range(n - 1)]
        step = (n - 1) / 15
        expected = ["anc"] + [frames[math.floor(i * step)] for i in range(15)]
        assert select_frames(seq("anc", frames), 16) == expected


def test_select_edge_lengths():
    assert select_frames(seq("anc", ["f1", "f2"]), 1) == ["anc"]
    with pytest.raises(ValueError):
        select_frames(seq("anc", []), 0)


# --- the walk --------------------------------------------------------------------------------


def test_index_good_tree(tmp_path):
    put(tmp_path, "7/trackA/s1/f10.jpg")
    put(tmp_path, "7/trackA/s1/f2.JPG")
    put(tmp_path, "7/trackA/s1/my_Anchor.png")
    put(tmp_path, "07/trackA/s1/f1.jpeg")
    put(tmp_path, "99/t/s/x.jpg")
    index = index_root(tmp_path)
    assert index.skipped == []
    assert [s.seq_id for s in index.sequences] == ["07/trackA/s1", "7/trackA/s1", "99/t/s"]
    s07, s7, s99 = index.sequences
    assert (s07.jersey, s07.track, s07.tens, s07.ones) == ("07", "07/trackA", 0, 7)
    assert (s7.jersey, s7.track, s7.tens, s7.ones) == ("7", "7/trackA", BLANK, 7)
    assert (s99.tens, s99.ones) == (9, 9)
    assert s7.anchor == "7/trackA/s1/my_Anchor.png"
    assert s7.frames == ("7/trackA/s1/f2.JPG", "7/trackA/s1/f10.jpg")
    assert s07.anchor is None and s07.frames == ("07/trackA/s1/f1.jpeg",)
    assert s7.n_frames == 3


def test_every_skip_reason_is_counted(tmp_path):
    put(tmp_path, "7/t/s/f1.jpg")  # the one valid sequence
    put(tmp_path, "7/t/s/notes.txt")  # not_an_image
    put(tmp_path, "7/t/s/b_anchor.jpg")
    put(tmp_path, "7/t/s/a_anchor.jpg")  # kept: natural-first anchor
    put(tmp_path, "7/t/s/nested/f.jpg")  # wrong_depth: folder in a sequence
    put(tmp_path, "README.md")  # wrong_depth: file under ROOT
    put(tmp_path, "7/stray.jpg")  # wrong_depth: file under a jersey
    put(tmp_path, "7/t/stray.jpg")  # wrong_depth: file under a track
    put(tmp_path, "100/t/s/f.jpg")  # bad_jersey_folder
    put(tmp_path, "seven/t/s/f.jpg")  # bad_jersey_folder
    put(tmp_path, "7/t/empty_seq/.keep", b"")  # not_an_image + empty_sequence
    (tmp_path / "7/t/bare_seq").mkdir()  # empty_sequence
    (tmp_path / "8").mkdir()  # empty_folder
    (tmp_path / "7/t/s/dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")  # broken_link
    (tmp_path / "7/t/loop").symlink_to(tmp_path / "7/t")  # symlink_loop: its own parent
    index = index_root(tmp_path)
    assert [s.seq_id for s in index.sequences] == ["7/t/s"]
    assert index.sequences[0].anchor == "7/t/s/a_anchor.jpg"
    assert index.skipped_counts() == {
        "bad_jersey_folder": 2,
        "broken_link": 1,
        "empty_folder": 1,
        "empty_sequence": 2,
        "extra_anchor": 1,
        "not_an_image": 2,
        "symlink_loop": 1,
        "wrong_depth": 4,
    }
    reasons = {s.path: s.reason for s in index.skipped}
    assert reasons["7/t/s/b_anchor.jpg"] == "extra_anchor"
    assert reasons["7/t/s/nested"] == "wrong_depth"
    assert reasons["README.md"] == "wrong_depth"
    assert reasons["7/t/loop"] == "symlink_loop"


def test_symlink_loops_are_not_followed(tmp_path):
    put(tmp_path, "7/t1/s/f.jpg")
    (tmp_path / "7/t1/s/up").symlink_to(tmp_path)  # folder in a sequence pointing at ROOT
    (tmp_path / "7/t2").symlink_to(tmp_path / "7/t1")  # already indexed
    (tmp_path / "7/t3").symlink_to(tmp_path / "7")  # its own jersey folder
    (tmp_path / "9").symlink_to(tmp_path)  # a jersey folder pointing at ROOT
    index = index_root(tmp_path)
    assert [s.seq_id for s in index.sequences] == ["7/t1/s"]
    assert index.skipped_counts() == {"symlink_loop": 4}


def test_folder_reached_twice_is_indexed_once(tmp_path):
    put(tmp_path, "4/b/s/f.jpg")
    (tmp_path / "4/a").symlink_to(tmp_path / "4/b")  # walked first: the link wins
    index = index_root(tmp_path)
    assert [s.seq_id for s in index.sequences] == ["4/a/s"]
    assert index.skipped == [index_mod.Skip("4/b", "symlink_loop")]


def test_symlink_to_data_outside_root_is_followed(tmp_path):
    put(tmp_path, "elsewhere/s/f.jpg")
    root = tmp_path / "root"
    (root / "4").mkdir(parents=True)
    (root / "4/t").symlink_to(tmp_path / "elsewhere")
    index = index_root(root)
    assert [s.frames for s in index.sequences] == [("4/t/s/f.jpg",)]


def test_numbers_restrict_classes(tmp_path):
    for jersey in ("7", "07", "48"):
        put(tmp_path, f"{jersey}/t/s/f.jpg")
    index = index_root(tmp_path, numbers=["7", "48"])
    assert sorted(s.jersey for s in index.sequences) == ["48", "7"]
    assert index.skipped == [index_mod.Skip("07", "excluded_number")]


def test_unknown_folder_is_skipped_unless_allowed(tmp_path):
    put(tmp_path, "7/t/s/f.jpg")
    put(tmp_path, "unknown/u1/s1/f.jpg")
    put(tmp_path, "unknown/u1/s2/anchor.jpg")
    put(tmp_path, "Unknown/u2/s/f.jpg")  # the name is exact
    training = index_root(tmp_path)
    assert [s.seq_id for s in training.sequences] == ["7/t/s"]
    assert training.skipped_counts() == {"bad_jersey_folder": 2}
    found = index_root(tmp_path, allow_unknown=True)
    assert [s.seq_id for s in found.sequences] == ["7/t/s", "unknown/u1/s1", "unknown/u1/s2"]
    assert found.skipped == [index_mod.Skip("Unknown", "bad_jersey_folder")]
    labelled, *unlabelled = found.sequences
    assert labelled.labelled and (labelled.tens, labelled.ones) == (BLANK, 7)
    for s in unlabelled:
        assert not s.labelled and (s.jersey, s.track) == ("unknown", "unknown/u1")
        assert (s.tens, s.ones) == (NO_LABEL, NO_LABEL)
    assert unlabelled[1].anchor == "unknown/u1/s2/anchor.jpg"


def test_unknown_folder_ignores_numbers_and_is_named_in_errors(tmp_path):
    put(tmp_path, "7/t/s/f.jpg")
    put(tmp_path, "unknown/u/s/f.jpg")
    found = index_root(tmp_path, numbers=["48", "7"], allow_unknown=True)
    assert [s.jersey for s in found.sequences] == ["7", "unknown"]
    with pytest.raises(DataError, match="or unknown for unlabelled tracks"):
        index_root(tmp_path / "unknown/u", allow_unknown=True)  # s is no jersey folder


def test_unreadable_folder_is_counted(tmp_path, monkeypatch):
    put(tmp_path, "7/t/s/f.jpg")
    put(tmp_path, "7/u/s/f.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "u":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(index_mod.os, "scandir", scandir)
    index = index_root(tmp_path)
    assert [s.seq_id for s in index.sequences] == ["7/t/s"]
    assert index.skipped_counts() == {"unreadable_folder": 1}


def test_walk_is_independent_of_creation_order(tmp_path):
    rels = ["7/b/s2/f10.jpg", "7/b/s2/f9.jpg", "7/a/s1/f1.jpg", "48/x/y/anchor.jpg", "48/x/y/z.jpg"]
    put_all = [(tmp_path / "one", rels), (tmp_path / "two", list(reversed(rels)))]
    results = []
    for root, order in put_all:
        for rel in order:
            put(root, rel)
        results.append(index_root(root).sequences)
    assert results[0] == results[1]
    assert results[0][0].seq_id == "7/a/s1"  # jersey "7" before "48" by natural order


# --- fatal errors ----------------------------------------------------------------------------


def test_nothing_valid_names_root_and_layout(tmp_path):
    put(tmp_path, "notes.txt")
    put(tmp_path, "123/t/s/f.jpg")
    with pytest.raises(DataError) as err:
        index_root(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and LAYOUT in message and "\n" not in message
    assert "bad_jersey_folder 1" in message


def test_empty_root_is_an_error(tmp_path):
    with pytest.raises(DataError, match="expected the layout"):
        index_root(tmp_path)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_root_must_be_a_folder(tmp_path, kind):
    root = tmp_path / "root"
    if kind == "file":
        root.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        index_root(root)


def test_numbers_excluding_everything_is_an_error(tmp_path):
    put(tmp_path, "7/t/s/f.jpg")
    with pytest.raises(DataError, match="among numbers 07"):
        index_root(tmp_path, numbers=["07"])


def test_bad_numbers_are_an_error(tmp_path):
    put(tmp_path, "7/t/s/f.jpg")
    with pytest.raises(DataError, match="123"):
        index_root(tmp_path, numbers=["7", "123"])
