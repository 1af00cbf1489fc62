"""The fair held-out rule (each digit in place in >= 2 other two-digit training numbers with >= 20
training sequences between them) and the seen/unseen table's per-number coverage and accuracy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fake_runs import FakeTrial, md_table, write_sweep, write_trial

from jersey_ray.config import DataConfig
from jersey_ray.data.index import DataError, Sequence, parse_label
from jersey_ray.data.split import (
    assign_splits,
    choose_heldout,
    coverage,
    coverage_text,
    is_fair,
    train_sequences,
)
from jersey_ray.results import collect


def make(tracks: dict[str, int], seqs_per_track: int = 10) -> list[Sequence]:
    return [
        Sequence(j, f"{j}/t{t}", f"{j}/t{t}/s{s}", None, ("f",), *parse_label(j))
        for j, n in tracks.items()
        for t in range(n)
        for s in range(seqs_per_track)
    ]


# A hand-built index: training sequences per number (1 track of 10 sequences -> all train)
COUNTS = {"21": 15, "27": 10, "13": 12, "43": 9, "50": 3, "18": 30, "7": 50, "23": 40, "58": 8}


def test_coverage_lists_the_numbers_holding_each_digit_in_place():
    assert coverage_text("23", COUNTS) == "tens 2 in 21,27 (25 seq); ones 3 in 13,43 (21 seq)"
    assert coverage_text("58", COUNTS) == "tens 5 in 50 (3 seq); ones 8 in 18 (30 seq)"
    assert is_fair("23", COUNTS) and not is_fair("58", COUNTS)
    # numbers held out with it do not count as training coverage
    assert coverage_text("23", COUNTS, held=["27"]) == (
        "tens 2 in 21 (15 seq); ones 3 in 13,43 (21 seq)"
    )
    assert not is_fair("23", COUNTS, held=["27"])
    # a one-digit number (blank tens) is no composition; 7 in the ones place of "7" does not count
    assert coverage("7", COUNTS) == () and not is_fair("7", COUNTS)
    assert coverage_text("17", COUNTS) == "tens 1 in 13,18 (42 seq); ones 7 in 27 (10 seq)"
    # exactly at the thresholds: 2 numbers, 20 sequences
    edge = {"31": 10, "32": 10, "13": 10, "23": 10}
    assert is_fair("33", edge)
    assert not is_fair("33", {**edge, "32": 9})


def test_training_sequences_come_from_the_track_split():
    seqs = make({"21": 10, "7": 1}, seqs_per_track=3)  # 10 tracks -> 8 train; 1 track -> train
    assert train_sequences(seqs, 42) == {"21": 24, "7": 3}


def grid(seqs_per_track: int = 10) -> list[Sequence]:
    """Numbers 10-99 with 3 tracks each (1 training track) plus 0-9."""
    numbers = [str(n) for n in range(10)] + [str(n) for n in range(10, 100)]
    return make(dict.fromkeys(numbers, 3), seqs_per_track)


def test_the_automatic_choice_is_fair_seeded_and_about_a_fifth():
    seqs = grid()
    counts = train_sequences(seqs, 1)
    data = DataConfig(split="heldout", split_seed=1)
    _, first = assign_splits(seqs, data)
    _, again = assign_splits(seqs, data)
    assert first == again and len(first.heldout_numbers) == 18
    for number in first.heldout_numbers:
        assert is_fair(number, counts, first.heldout_numbers), number


def test_only_fair_numbers_are_drawn_even_when_fewer_than_the_target():
    # 23 is fair (2 in 21,27; 3 in 13,43 with 10 training sequences each); 58, 21, 27, 13, 43,
    # 50 and 18 are not (their other digit sits in place in one other number at most)
    seqs = make({n: 1 for n in ("21", "27", "13", "43", "50", "18", "7", "23", "58")})
    counts = train_sequences(seqs, 42)
    for seed in range(5):
        assert choose_heldout(sorted(counts), seed, counts) == ["23"]


def test_without_any_fair_number_the_choice_falls_back_with_a_warning(caplog):
    seqs = make({"4": 3, "8": 3, "44": 3, "48": 3, "84": 3, "88": 3}, seqs_per_track=1)
    with caplog.at_level(logging.WARNING, "jersey_ray.data.split"):
        _, resolved = assign_splits(seqs, DataConfig(split="heldout"))
    assert len(resolved.heldout_numbers) == 1  # the covered rule still holds out one
    assert "no two-digit number is fair" in caplog.text
    (number,) = resolved.heldout_numbers
    assert f"held-out number {number} fails the fair rule" in caplog.text


def test_an_explicit_unfair_number_is_a_warning_naming_its_coverage(caplog):
    seqs = make({n: 1 for n in ("21", "27", "13", "43", "50", "18", "7", "23", "58")})
    with caplog.at_level(logging.WARNING, "jersey_ray.data.split"):
        assignment, resolved = assign_splits(
            seqs, DataConfig(split="heldout", heldout_numbers=("23", "58"))
        )
    assert resolved.heldout_numbers == ("23", "58")
    assert {s for t, s in assignment.items() if t.startswith(("23/", "58/"))} == {"unseen"}
    assert "held-out number 58 fails the fair rule" in caplog.text
    assert "tens 5 in 50 (10 seq); ones 8 in 18 (10 seq)" in caplog.text
    assert "held-out number 23 fails" not in caplog.text


def test_a_digit_never_seen_in_place_is_still_an_error():
    seqs = make({n: 1 for n in ("21", "27", "13", "43", "7", "23", "58")})
    with pytest.raises(DataError, match=r"held-out number 58 .* a 5 in the tens place"):
        assign_splits(seqs, DataConfig(split="heldout", heldout_numbers=("58",)))


# ------------------------------------------------------------------ the table

PER_CLASS = {
    n: {"train": {"sequences": c}, "test": {"sequences": 2}, "unseen": {"sequences": 0}}
    for n, c in COUNTS.items()
    if n not in ("23", "58")
}
PER_CLASS |= {
    "23": {"train": {"sequences": 0}, "test": {"sequences": 0}, "unseen": {"sequences": 6}},
    "58": {"train": {"sequences": 0}, "test": {"sequences": 0}, "unseen": {"sequences": 4}},
}
MODELS = {  # seen pattern, unseen pattern over u0-u5 (23) and u6-u9 (58)
    "seq_bgru_mp": ("1111111111", "1100000000"),
    "seq_blstm_mp": ("1111111110", "1111111100"),
}


def unseen_rows(pattern: str) -> list[tuple[str, str, int]]:
    return [(f"u{i}", "23" if i < 6 else "58", int(c)) for i, c in enumerate(pattern)]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    root = tmp_path_factory.mktemp("fair")
    run = root / "runs" / "fair"
    data = {"root": "data/fake", "cache": "nowhere", "split": "heldout",
            "heldout_numbers": ["23", "58"], "per_class": PER_CLASS}  # fmt: skip
    write_sweep(run, phase="fair", reference="seq_bgru_mp", models=list(MODELS), data=data)
    for model, (seen, unseen) in MODELS.items():
        for seed in (42, 123, 456):
            trial = FakeTrial(
                model, seed, [0.5, 0.6], (seen.count("1") / 10, 1.0, 1.0),
                predictions=[(f"t{i}", "21", int(c)) for i, c in enumerate(seen)],
                unseen=(unseen.count("1") / 10, 1.0, 1.0),
                unseen_predictions=unseen_rows(unseen),
            )  # fmt: skip
            write_trial(run, trial)
    out = root / "results" / "fair"
    summary = collect.collect(run, out)
    return (out / "table.md").read_text(encoding="utf-8"), summary


def test_the_table_lists_each_number_with_its_coverage_and_accuracy(table):
    text, summary = table
    cover = {c["number"]: c for c in summary["heldout"]["coverage"]}
    assert cover["23"]["fair"] is True and cover["58"]["fair"] is False
    per = summary["heldout"]["per_number"]
    assert per["seq_bgru_mp"] == {"23": pytest.approx(2 / 6), "58": 0.0}
    assert per["seq_blstm_mp"] == {"23": 1.0, "58": 0.5}
    header, rows = md_table(text, "| Number | In-place coverage")
    assert header[3:] == ["`seq_bgru_mp`", "`seq_blstm_mp`"]
    assert rows == [
        ["23", "tens 2 in 21,27 (25 seq); ones 3 in 13,43 (21 seq)", "yes", "0.333", "1.000"],
        ["58", "tens 5 in 50 (3 seq); ones 8 in 18 (30 seq)", "**no**", "0.000", "0.500"],
    ]


def test_unseen_accuracy_is_compared_with_the_reference(table):
    text, summary = table
    (entry,) = summary["heldout"]["unseen_vs_reference"]
    assert entry["model"] == "seq_blstm_mp" and entry["reference"] == "seq_bgru_mp"
    assert entry["delta"] == pytest.approx(0.6)
    assert entry["ci"][0] > 0 and entry["p_holm"] == entry["p"] < 0.05
    _, rows = md_table(text, "| Model | Saw renders")
    by_model = {r[0]: r for r in rows}
    assert by_model["`seq_blstm_mp`"][1:4] == ["—", "0.8000", "+0.6000"]
    assert by_model["`seq_bgru_mp`"][3] == "—"


def test_a_table_without_counts_says_the_coverage_is_unknown(tmp_path: Path):
    run = tmp_path / "runs" / "bare"
    data = {"split": "heldout", "heldout_numbers": ["23"], "cache": "nowhere"}
    write_sweep(run, phase="bare", reference="", models=["seq_bgru_mp"], data=data)
    write_trial(run, FakeTrial("seq_bgru_mp", 42, [0.5], (1.0, 1.0, 1.0), unseen=(0.0, 0, 0),
                               unseen_predictions=unseen_rows("000000")))  # fmt: skip
    summary = collect.collect(run, tmp_path / "out")
    assert summary["heldout"]["coverage"][0]["coverage"] == "unknown"
    assert summary["heldout"]["unseen_vs_reference"] == []
