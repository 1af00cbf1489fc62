"""jersey_ray.data.split and the ``summary`` command."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from PIL import Image

from jersey_ray.data.__main__ import main
from jersey_ray.data.index import Sequence, index_root, parse_label
from jersey_ray.data.split import SPLITS, by_split, split_counts, split_sizes, split_tracks


def make(tracks_per_jersey: dict[str, int], seqs_per_track: int = 2) -> list[Sequence]:
    out = []
    for jersey, n in tracks_per_jersey.items():
        tens, ones = parse_label(jersey)
        for t in range(n):
            for s in range(seqs_per_track):
                seq_id = f"{jersey}/trk{t}/s{s}"
                out.append(Sequence(jersey, f"{jersey}/trk{t}", seq_id, None, ("f",), tens, ones))
    return out


def sizes_of(assignment: dict[str, str], jersey: str) -> tuple[int, ...]:
    splits = [s for t, s in assignment.items() if t.split("/")[0] == jersey]
    return tuple(splits.count(s) for s in SPLITS)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (4, (2, 1, 1)),
        (5, (3, 1, 1)),
        (10, (8, 1, 1)),
        (11, (9, 1, 1)),
        (20, (16, 2, 2)),
        (25, (20, 3, 2)),
    ],
)
def test_split_sizes(n, expected):
    assert split_sizes(n) == expected


def test_split_sizes_cover_every_track():
    for n in range(3, 300):
        sizes = split_sizes(n)
        assert sum(sizes) == n and min(sizes) >= 1
        if n >= 20:  # every quota >= 2: no split needed topping up, so within 1 of its quota
            assert all(
                abs(size - r * n) < 1 for size, r in zip(sizes, (0.8, 0.1, 0.1), strict=True)
            )


def test_split_sizes_reject_bad_ratios():
    for ratios in [(0.8, 0.2), (1.0, -0.5, 0.5), (0.0, 0.0, 0.0)]:
        with pytest.raises(ValueError):
            split_sizes(5, ratios)


def test_split_by_track_stratified_by_jersey():
    seqs = make({"4": 1, "6": 2, "8": 3, "9": 4, "48": 10, "49": 20, "07": 37})
    assignment = split_tracks(seqs)
    assert set(assignment) == {s.track for s in seqs}
    groups = by_split(seqs, assignment)
    track_sets = [{s.track for s in groups[split]} for split in SPLITS]
    assert not (track_sets[0] & track_sets[1] or track_sets[0] & track_sets[2])
    assert not track_sets[1] & track_sets[2]
    assert sum(len(g) for g in groups.values()) == len(seqs)
    assert sizes_of(assignment, "4") == (1, 0, 0)
    assert sizes_of(assignment, "6") == (1, 0, 1)
    assert sizes_of(assignment, "8") == (1, 1, 1)
    assert sizes_of(assignment, "9") == (2, 1, 1)
    assert sizes_of(assignment, "48") == (8, 1, 1)
    assert sizes_of(assignment, "49") == (16, 2, 2)
    for jersey in ("8", "9", "48", "49", "07"):
        assert min(sizes_of(assignment, jersey)) >= 1


def test_split_is_deterministic_and_order_free():
    seqs = make({"4": 7, "6": 12, "66": 30})
    first = split_tracks(seqs, seed=42)
    shuffled = list(seqs)
    random.Random(0).shuffle(shuffled)
    assert split_tracks(shuffled, seed=42) == first
    assert split_tracks(seqs, seed=42) == first
    assert split_tracks(seqs, seed=7) != first


def test_one_jersey_split_ignores_the_others():
    alone = split_tracks(make({"66": 30}), seed=3)
    together = split_tracks(make({"4": 5, "66": 30, "9": 11}), seed=3)
    assert {t: s for t, s in together.items() if t.startswith("66/")} == alone


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="JPEG")
    return buf.getvalue()


def _tree(root: Path, rels: list[str]) -> Path:
    data = _jpeg()
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


TREE = [f"{j}/t{t}/s{s}/f1.jpg" for j in ("4", "48") for t in range(6) for s in range(2)] + [
    f"{j}/t{t}/s0/f{f}.jpg" for j in ("7", "07") for t in range(2) for f in range(3)
]


def test_split_independent_of_directory_creation_order(tmp_path):
    one = index_root(_tree(tmp_path / "one", TREE))
    two = index_root(_tree(tmp_path / "two", list(reversed(TREE))))
    assert split_tracks(one.sequences) == split_tracks(two.sequences)


def test_split_counts():
    seqs = make({"4": 3, "48": 1}, seqs_per_track=2)
    counts = split_counts(seqs, split_tracks(seqs))
    assert counts["splits"] == {
        "train": {"tracks": 2, "sequences": 4},
        "val": {"tracks": 1, "sequences": 2},
        "test": {"tracks": 1, "sequences": 2},
    }
    assert list(counts["per_class"]) == ["4", "48"]
    assert counts["per_class"]["48"]["val"] == {"tracks": 0, "sequences": 0}


def test_summary_json(tmp_path, capsys):
    root = _tree(tmp_path / "root", [*TREE, "notes.txt"])
    assert main(["summary", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"sequences", "tracks", "frames", "classes", "skipped", "splits"} <= set(summary)
    assert summary["sequences"] == 2 * 6 * 2 + 2 * 2
    assert summary["tracks"] == 2 * 6 + 2 * 2
    assert summary["frames"] == 2 * 6 * 2 + 2 * 2 * 3
    assert summary["classes"]["07"] == {"tracks": 2, "sequences": 2}
    assert summary["classes"]["48"] == {"tracks": 6, "sequences": 12}
    assert summary["skipped"] == {"wrong_depth": 1}
    assert sum(s["tracks"] for s in summary["splits"].values()) == summary["tracks"]
    assert summary["per_class_splits"]["4"]["val"]["tracks"] >= 1
    assert summary["per_class_splits"]["7"]["val"]["tracks"] == 0


def test_summary_numbers_and_table(tmp_path, capsys):
    root = _tree(tmp_path / "root", TREE)
    assert main(["summary", str(root), "--numbers", "7,48,5", "--split-seed", "1"]) == 0
    out, err = capsys.readouterr()
    assert "no data for numbers 5" in err
    assert "14 sequences, 8 tracks" in out and "excluded_number 2" in out
    assert "seed 1" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["48", "6", "12", "4/8", "1/2", "1/2"] in rows


def test_summary_errors_are_one_line(tmp_path, capsys):
    assert main(["summary", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    # refused while parsing, before any indexing
    assert main(["summary", str(_tree(tmp_path / "r", TREE)), "--numbers", "7,x"]) == 2
    err = capsys.readouterr().err
    assert "'7,x'" in err and err.startswith("error: ") and err.count("\n") == 1
    assert main(["summary", str(tmp_path), "--numbers", ","]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------------------ held-out combinations


def heldout(seqs, held=(), seed=42):
    from jersey_ray.config import DataConfig
    from jersey_ray.data.split import assign_splits

    data = DataConfig(split="heldout", split_seed=seed, heldout_numbers=tuple(held))
    return assign_splits(seqs, data)


def test_heldout_numbers_go_to_unseen_and_nowhere_else():
    seqs = make({"4": 3, "9": 3, "49": 3, "94": 4, "44": 3, "99": 3})
    assignment, resolved = heldout(seqs, held=("94",))
    assert resolved.heldout_numbers == ("94",)
    for track, split in assignment.items():
        assert (split == "unseen") == track.startswith("94/")
    assert {s for t, s in assignment.items() if not t.startswith("94/")} == set(SPLITS)
    counts = split_counts(seqs, assignment)
    assert counts["splits"]["unseen"] == {"tracks": 4, "sequences": 8}
    assert counts["per_class"]["94"]["train"]["tracks"] == 0


def test_a_heldout_number_needs_both_digits_in_place_in_training():
    from jersey_ray.data.index import DataError

    seqs = make({"4": 3, "9": 3, "49": 3, "94": 3})
    # 94 needs a 9 in the tens place of some training number: 4, 9, 49 have none
    with pytest.raises(DataError, match=r"held-out number 94 .* a 9 in the tens place .* 90-99"):
        heldout(seqs, held=("94",))
    with pytest.raises(DataError, match="have no tracks"):
        heldout(seqs, held=("77",))
    seqs = make({"7": 3, "17": 3, "1": 3})
    with pytest.raises(DataError, match=r"held-out number 7 .* a blank \(a one-digit number\)"):
        heldout(seqs, held=("7", "1"))


def test_the_automatic_heldout_choice_is_covered_seeded_and_about_a_fifth():
    numbers = [f"{t}{o}" for t in range(1, 10) for o in range(10)]  # 90 two-digit numbers
    seqs = make({n: 3 for n in ["4", "7", *numbers]})
    _, first = heldout(seqs, seed=1)
    _, again = heldout(seqs, seed=1)
    _, other = heldout(seqs, seed=2)
    assert first == again and first.heldout_numbers != other.heldout_numbers
    assert len(first.heldout_numbers) == round(0.2 * 90)
    kept = [n for n in ["4", "7", *numbers] if n not in first.heldout_numbers]
    tens_seen = {parse_label(n)[0] for n in kept}
    ones_seen = {parse_label(n)[1] for n in kept}
    for n in first.heldout_numbers:
        assert parse_label(n)[0] in tens_seen and parse_label(n)[1] in ones_seen


def test_no_automatic_choice_where_no_digit_is_covered_twice():
    from jersey_ray.data.index import DataError

    seqs = make({"4": 3, "12": 3, "35": 3})  # every two-digit number's digits are unique
    with pytest.raises(DataError, match="no number can be held out"):
        heldout(seqs)


def test_summary_lists_the_heldout_numbers_a_sweep_would_use_with_their_coverage(tmp_path, capsys):
    numbers = [f"{t}{o}" for t in (1, 2, 3) for o in (1, 2, 3)]
    rels = [f"{n}/t{t}/s{s}/f1.jpg" for n in numbers for t in range(8) for s in range(2)]
    root = _tree(tmp_path / "root", rels)
    assert main(["summary", str(root), "--split", "heldout", "--heldout", "22", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    [held] = summary["heldout"]
    assert held["number"] == "22" and held["fair"] is True
    assert (
        held["coverage"].startswith("tens 2 in 21,23 (") and "ones 2 in 12,32 (" in held["coverage"]
    )
    assert summary["per_class_splits"]["22"]["unseen"] == {"tracks": 8, "sequences": 16}
    assert summary["splits"]["unseen"]["tracks"] == 8
    # the automatic choice is the one the cache build makes (same data, same seed)
    from jersey_ray.config import DataConfig
    from jersey_ray.data.split import assign_splits

    _, chosen = assign_splits(index_root(root).sequences, DataConfig(split="heldout"))
    assert main(["summary", str(root), "--split", "heldout"]) == 0
    out = capsys.readouterr().out
    assert f"held out (--heldout {','.join(chosen.heldout_numbers)})" in out
    assert "unseen" in out.splitlines()[4]
    # the plain summary has no unseen split and no held-out list
    assert main(["summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert "unseen" not in out and "held out" not in out
