"""The synthetic tracklet generator: layout, determinism, class plan, CLI errors, visibility."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jersey_ray import __main__ as front_door
from jersey_ray.data import synth
from jersey_ray.data.__main__ import main as data_main
from jersey_ray.errors import UserError


def main(argv: list[str]) -> int:
    """``python -m jersey_ray.data synth ...``."""
    return data_main(["synth", *argv])


SMALL = {"size": (48, 24), "frames": (2, 5), "workers": 1, "progress": False}
FRAME_NAME = re.compile(r"f[1-9][0-9]*\.jpg")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _sequence_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*") if p.is_dir())


def _assert_layout(root: Path, numbers: set[str], frames: tuple[int, int]) -> int:
    """Every file sits at jersey/track/sequence depth; returns the number of sequences."""
    for path in root.rglob("*"):
        depth = len(path.relative_to(root).parts)
        assert path.is_dir() == (depth <= 3), path
    assert {p.name for p in root.iterdir()} == numbers
    sequences = _sequence_dirs(root)
    for seq in sequences:
        names = sorted(p.name for p in seq.iterdir())
        assert names.count("anchor.jpg") == 1, seq
        others = [n for n in names if n != "anchor.jpg"]
        assert all(FRAME_NAME.fullmatch(n) for n in others), others
        assert sorted(int(n[1:-4]) for n in others) == list(range(1, len(others) + 1))
        assert frames[0] <= len(names) <= frames[1], seq
    return len(sequences)


def test_layout_counts_and_images(tmp_path):
    out = tmp_path / "data"
    summary = synth.generate(
        out, sequences=8, numbers=["4", "48"], size=(48, 24), frames=(9, 12), workers=1,
        progress=False,
    )  # fmt: skip
    assert _assert_layout(out, {"4", "48"}, (9, 12)) == summary.sequences == 8
    files = [p for p in out.rglob("*.jpg")]
    assert len(files) == summary.frames
    assert any(p.name == "f10.jpg" for p in files)  # natural sort matters for these names
    assert summary.tracks == sum(1 for p in out.glob("*/*") if p.is_dir()) == 6
    assert sum(c["sequences"] for c in summary.per_number.values()) == 8
    for path in files[:20]:
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (24, 48))
    assert not list(tmp_path.glob("*.tmp-*"))


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    args = {**SMALL, "sequences": 12, "numbers": ["9", "64"], "seed": 3}
    synth.generate(tmp_path / "a", **args)
    synth.generate(tmp_path / "b", **{**args, "workers": 2})
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) > 12
    assert a == b


def test_other_seed_other_images(tmp_path):
    args = {**SMALL, "sequences": 6, "numbers": ["9", "64"]}
    synth.generate(tmp_path / "a", seed=0, **args)
    synth.generate(tmp_path / "b", seed=1, **args)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    common = [k for k in a if k.endswith("anchor.jpg") and k in b]
    assert common and all(a[k] != b[k] for k in common)


def test_two_digit_and_leading_zero_numbers(tmp_path):
    out = tmp_path / "data"
    numbers = ["07", "7", "00", "99", "0"]
    summary = synth.generate(out, sequences=15, numbers=numbers, **SMALL)
    assert _assert_layout(out, set(numbers), SMALL["frames"]) == 15
    assert list(summary.per_number) == numbers
    assert all(c["tracks"] == 3 for c in summary.per_number.values())


def test_default_classes_are_the_reference_ones_and_imbalanced():
    jobs = synth.plan_dataset(
        synth.REFERENCE_NUMBERS, synth.DEFAULT_SEQUENCES, (4, 24), (192, 96), 0,
        synth.DEFAULT_SEQUENCES_PER_TRACK, synth.DEFAULT_IMBALANCE,
    )  # fmt: skip
    tracks = {n: len({j.track for j in jobs if j.jersey == n}) for n in synth.REFERENCE_NUMBERS}
    assert len(jobs) == synth.DEFAULT_SEQUENCES
    assert min(tracks.values()) >= 3
    assert max(tracks.values()) >= 3 * min(tracks.values())
    assert sum(tracks.values()) == len({j.track for j in jobs})
    lengths = [j.n_frames for j in jobs]
    assert min(lengths) >= 4 and max(lengths) <= 24 and len(set(lengths)) > 10
    per_track = np.bincount([j.track for j in jobs])
    assert per_track.min() >= 1 and per_track.max() >= 3 * np.median(per_track)


def test_minimum_sequences_give_three_tracks_each(tmp_path):
    summary = synth.generate(tmp_path / "data", sequences=30, **SMALL)
    assert list(summary.per_number) == list(synth.REFERENCE_NUMBERS)
    assert all(c["tracks"] == 3 == c["sequences"] for c in summary.per_number.values())
    assert {p.name for p in (tmp_path / "data").iterdir()} == set(synth.REFERENCE_NUMBERS)


def test_largest_remainder_keeps_the_total():
    for total in (0, 1, 7, 100):
        counts = synth.largest_remainder(total, np.array([5.0, 1.0, 1.0, 0.5]))
        assert counts.sum() == total and (counts >= 0).all()


def test_number_is_drawn_on_the_shirt():
    """Same seed, different number: frames differ where the shirt is, not on the legs."""
    torso, legs = 0.0, 0.0
    for seq in range(4):
        job = synth.SeqJob("3", 0, 0, "track000", seq, "seq00", 8, (96, 48), 5)
        frames_a, _ = synth.render_frames(job)
        frames_b, _ = synth.render_frames(dataclasses.replace(job, jersey="7"))
        for a, b in zip(frames_a, frames_b, strict=True):
            diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(axis=2)
            torso += diff[20:55, 10:38].mean()
            legs += diff[70:, :].mean()
    assert torso > 2.0 * 4 * 8  # clearly visible: > 2 grey levels on average over the shirt
    assert torso > 10 * legs


def test_anchor_is_a_sequence_frame_not_a_copy(tmp_path):
    out = tmp_path / "data"
    synth.generate(out, sequences=6, numbers=["5", "6"], **{**SMALL, "frames": (4, 6)})
    for seq in _sequence_dirs(out):
        blobs = [p.read_bytes() for p in seq.iterdir()]
        assert len(set(blobs)) == len(blobs), seq


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [str(out), "--sequences", "3", "--numbers", "5", "--size", "32x16", "--frames", "2-3"]
    assert main([*argv, "--workers", "1", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"synth: 3 sequences, 3 tracks, \d+ frames in .* frames/s\) -> .*", lines[0]
    )
    assert lines[1] == "synth: tracks/sequences per number: 5: 3/3"
    assert (
        front_door.main(["data", "synth", *argv, "--no-progress", "--seed", "1"]) == 2
    )  # OUT taken
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "0x5"],
        ["--size", "abc"],
        ["--frames", "9-3"],
        ["--frames", "0-3"],
        ["--numbers", "123"],
        ["--numbers", "abc"],
        ["--numbers", "4,4"],
        ["--numbers", ""],
        ["--sequences", "5"],
        ["--sequences", "x"],
        ["--workers", "0"],
        ["--seed", "-1"],
        ["--imbalance", "-1"],
        ["--sequences-per-track", "0"],
        ["--bogus"],
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args):
    out = tmp_path / "out"
    assert main([str(out), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_out_is_a_one_line_error(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_non_empty_out_needs_force(tmp_path):
    out = tmp_path / "data"
    args = {**SMALL, "sequences": 3, "numbers": ["5"]}
    synth.generate(out, seed=0, **args)
    first = _files(out)
    with pytest.raises(UserError, match="--force"):
        synth.generate(out, seed=1, **args)
    assert _files(out) == first
    synth.generate(out, seed=1, force=True, **args)
    assert _files(out) != first and _assert_layout(out, {"5"}, SMALL["frames"]) == 3
    assert not list(tmp_path.glob("*.tmp-*"))


def test_force_never_deletes_a_folder_that_is_no_data_set(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="no jersey folder"):
        synth.generate(out, sequences=3, numbers=["5"], force=True, **SMALL)
    assert (out / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        synth.generate(tmp_path / "file", sequences=3, numbers=["5"], **SMALL)


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = []
    real = synth.write_sequence

    def flaky(job, root):
        if calls:
            raise KeyboardInterrupt
        calls.append(job)
        return real(job, root)

    monkeypatch.setattr(synth.dataset, "write_sequence", flaky)  # where generate looks it up
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "data", sequences=3, numbers=["5"], **SMALL)
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []


def test_empty_out_folder_is_used(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    summary = synth.generate(out, sequences=3, numbers=["5"], **SMALL)
    assert summary.out == out and _assert_layout(out, {"5"}, SMALL["frames"]) == 3


def test_the_index_reads_the_generated_set(tmp_path):
    index = pytest.importorskip("jersey_ray.data.index")
    out = tmp_path / "data"
    summary = synth.generate(out, sequences=9, numbers=["8", "88", "08"], **SMALL)
    found = index.index_root(out)
    assert not found.skipped
    assert len(found.sequences) == summary.sequences
    assert len({s.track for s in found.sequences}) == summary.tracks
    assert all(s.anchor and s.anchor.endswith("/anchor.jpg") for s in found.sequences)
    assert sum(1 + len(s.frames) for s in found.sequences) == summary.frames


def test_out_may_not_be_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for out in (".", ".."):
        with pytest.raises(UserError, match="current folder"):
            synth.generate(out, sequences=3, numbers=["5"], force=True, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]


def test_the_anchor_is_drawn_like_any_frame_unless_asked_for_the_clearest():
    """Which frame is the anchor changes no pixel; the default is not the clearest frame."""
    base = synth.SeqJob("48", 0, 0, "track000", 0, "seq00", 8, (96, 48), 5)
    picks = {}
    for anchor in synth.ANCHORS:
        frames, picks[anchor] = synth.render_frames(
            dataclasses.replace(base, style=synth.Style(anchor=anchor))
        )
        assert [np.asarray(f).tobytes() for f in frames] == [
            np.asarray(f).tobytes() for f in synth.render_frames(base)[0]
        ]
    random_picks = {synth.render_frames(dataclasses.replace(base, seq=s))[1] for s in range(12)}
    assert len(random_picks) > 2  # spread over the sequence, not pinned to one frame
    with pytest.raises(UserError, match="anchor 'best' is invalid"):
        synth.Style(anchor="best")


def test_number_crops_cut_the_number_region_of_each_frame():
    job = synth.SeqJob("48", 0, 0, "track000", 0, "seq00", 6, (192, 96), 5)
    players, _ = synth.render_frames(job)
    numbers, _ = synth.render_frames(dataclasses.replace(job, style=synth.Style(crop="number")))
    assert len(numbers) == len(players)
    for player, number in zip(players, numbers, strict=True):
        assert player.size == (96, 192)
        assert number.width < player.width and number.height < player.height / 2
    with pytest.raises(UserError, match="crop 'face' is invalid"):
        synth.Style(crop="face")


def test_number_crop_data_sets_from_the_command_line(tmp_path):
    out = tmp_path / "crops"
    argv = [str(out), "--sequences", "3", "--numbers", "7", "--crop", "number"]
    assert main([*argv, "--anchor", "clearest", "--size", "96x48", "--workers", "1",
                 "--frames", "2-3", "--no-progress"]) == 0  # fmt: skip
    sizes = [Image.open(p).size for p in out.rglob("*.jpg")]
    assert sizes and all(w < 48 and h < 48 for w, h in sizes)


def test_clean_quality_has_full_resolution_no_codec_and_backs_to_the_camera():
    size, t = (96, 48), 8
    for seed in range(20):
        cam = synth._camera(np.random.default_rng(seed), t, size, (24, 24), clean=True)
        assert cam.source == size and cam.scale == 1.0 and cam.jpeg == 0 and cam.noise <= 2.0
        kit = synth.make_kit(np.random.default_rng(seed), np.random.default_rng(seed + 1))
        actor = synth._main_actor(np.random.default_rng(seed), "48", kit, t, size, clean=True)
        assert all(abs(p.yaw) <= 0.5 for p in actor.poses)
    broadcast = [
        synth._camera(np.random.default_rng(s), t, size, (24, 24)).source for s in range(20)
    ]
    assert any(src != size for src in broadcast)  # the default simulates low-resolution sources
    with pytest.raises(UserError, match="quality 'pristine' is invalid"):
        synth.Style(quality="pristine")
