"""The collector on a held-out sweep (data.split "heldout"): seen vs unseen accuracy per model,
their difference with a bootstrap paired over seeds, the unseen per-digit accuracy, the figure.

The fabricated run: held-out numbers 17 and 71; 3 seeds per model, every seed of a model right
on the same tracks. Seen (test) split: 10 one-sequence tracks; unseen split: 10 tracks.
seq_bgru_mp: seen 1.0, unseen 0.2 (right on u0, u1); the ones head fails (unseen tens 0.9,
ones 0.2). seq_blstm_mp: seen 0.9, unseen 0.8. With identical seeds the seed draw changes
nothing; the tracks of each set are drawn on their own: unseen - seen = K / 10 - seen with
K ~ Bin(10, unseen accuracy) (seen is fixed for bgru: right everywhere).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fake_runs import FakeTrial, md_table, standard_run, track_rows, write_sweep, write_trial

from jersey_ray.results import collect

SEEDS = (42, 123, 456)
PER_CLASS = {
    "7": {"train": {"sequences": 50}, "test": {"sequences": 10}, "unseen": {"sequences": 0}},
    "17": {"train": {"sequences": 0}, "test": {"sequences": 0}, "unseen": {"sequences": 6}},
    "71": {"train": {"sequences": 0}, "test": {"sequences": 0}, "unseen": {"sequences": 4}},
}
MODELS = {
    # seen pattern, unseen pattern, (seen tens, ones), (unseen tens, ones)
    "seq_bgru_mp": ("1111111111", "1100000000", (1.0, 1.0), (0.9, 0.2)),
    "seq_blstm_mp": ("1111111110", "1111111100", (0.95, 0.95), (0.8, 1.0)),
}


def heldout_sweep(run: Path) -> None:
    data = {
        "root": "data/fake",
        "cache": "nowhere",
        "split": "heldout",
        "heldout_numbers": ["17", "71"],
        "per_class": PER_CLASS,
    }
    write_sweep(run, phase="holdout", reference="", models=list(MODELS), data=data)


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("heldout")
    run = root / "runs" / "holdout"
    heldout_sweep(run)
    for model, (seen, unseen, seen_digits, unseen_digits) in MODELS.items():
        seen_acc, unseen_acc = seen.count("1") / 10, unseen.count("1") / 10
        for seed in SEEDS:
            trial = FakeTrial(
                model,
                seed,
                [0.5, 0.6],
                (seen_acc, *seen_digits),
                predictions=track_rows(seen),
                unseen=(unseen_acc, *unseen_digits),
                unseen_predictions=track_rows(unseen, prefix="u", jersey="17"),
            )
            write_trial(run, trial)
    out = root / "results" / "holdout"
    return out, collect.collect(run, out)


def _model(summary: dict, config: str) -> dict:
    return next(m for m in summary["models"] if m["config"] == config)


def test_seen_and_unseen_statistics_per_model(held: tuple[Path, dict]) -> None:
    _, summary = held
    bgru = _model(summary, "seq_bgru_mp")
    assert bgru["test_acc_number_seen"] == {
        "mean": 1.0,
        "std": 0.0,
        "n": 3,
        "values": [1.0, 1.0, 1.0],
    }
    assert bgru["test_acc_number_unseen"]["mean"] == pytest.approx(0.2)
    assert bgru["test_acc_number_unseen"]["n"] == 3
    assert bgru["unseen_acc_ones"]["mean"] == pytest.approx(0.2)
    assert summary["heldout"]["numbers"] == ["17", "71"]


def test_unseen_minus_seen_with_the_paired_bootstrap(held: tuple[Path, dict]) -> None:
    _, summary = held
    gaps = {c["model"]: c for c in summary["heldout"]["comparisons"]}
    bgru, lstm = gaps["seq_bgru_mp"], gaps["seq_blstm_mp"]
    assert bgru["method"] == "bootstrap_paired_seeds"
    assert bgru["n_seeds"] == 3 and bgru["n_tracks"] == {"seen": 10, "unseen": 10}
    # K ~ Bin(10, 0.2): P(K = 0) = 0.107 > 2.5%, P(K <= 4) = 0.967 < 97.5% <= P(K <= 5) = 0.994
    assert bgru["delta"] == pytest.approx(-0.8)
    assert bgru["ci"] == [pytest.approx(-1.0), pytest.approx(-0.5)]
    assert bgru["p"] == pytest.approx(2 / 10_001)  # never >= 0: unseen can at most tie at 1.0
    assert lstm["delta"] == pytest.approx(-0.1)
    assert bgru["p_holm"] == pytest.approx(2 * bgru["p"])
    assert lstm["p_holm"] == pytest.approx(max(lstm["p"], 2 * bgru["p"]))
    assert bgru["significant"] is True and lstm["significant"] is False


def test_heldout_table_and_figure(held: tuple[Path, dict]) -> None:
    out, summary = held
    text = (out / "table.md").read_text()
    assert "## Seen vs unseen numbers (held out of training: 17, 71)" in text
    header, rows = md_table(text, "| Model | id | n | Seen acc number")
    row = {r[1].strip("`"): dict(zip(header, r, strict=True)) for r in rows[:-1]}
    bgru = row["seq_bgru_mp"]
    assert bgru["Seen acc number"] == "1.0000 ± 0.0000"
    assert bgru["Unseen acc number"] == "0.2000 ± 0.0000"
    assert bgru["Δ unseen − seen"] == "-0.8000" and bgru["95% CI"] == "[-1.0000, -0.5000]"
    assert bgru["Verdict"] == "lower (significant)"
    assert bgru["Unseen acc tens"] == "0.9000 ± 0.0000"
    assert bgru["Unseen acc ones"] == "0.2000 ± 0.0000"
    assert bgru["Larger drop"] == "ones (-0.1000 tens, -0.8000 ones)"
    # the majority class "7": 10 of 10 seen test sequences, none of the unseen; its ones
    # digit 7 is the ones digit of "17" (6 of 10 unseen sequences)
    majority = dict(zip(header, rows[-1], strict=True))
    assert majority["Model"] == "Majority class: always 7 (chance)"
    assert (majority["Seen acc number"], majority["Unseen acc number"]) == ("1.0000", "0.0000")
    assert majority["Unseen acc ones"] == "0.6000"
    assert "seen_vs_unseen.png" in summary["figures"]
    assert (out / "seen_vs_unseen.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "table.csv").open() as fh:
        csv_rows = {r["config"]: r for r in csv.DictReader(fh)}
    unseen = _model(summary, "seq_bgru_mp")["test_acc_number_unseen"]["mean"]
    assert csv_rows["seq_bgru_mp"]["test_acc_number_unseen_mean"] == repr(unseen)
    assert csv_rows["seq_bgru_mp"]["unseen_minus_seen"] == repr(
        summary["heldout"]["comparisons"][0]["delta"]
    )


def test_without_predictions_the_gap_is_a_seed_only_paired_t(tmp_path: Path) -> None:
    run = tmp_path / "run"
    heldout_sweep(run)
    for seed, unseen in zip(SEEDS, (0.4, 0.5, 0.3), strict=True):
        trial = FakeTrial("seq_bgru_mp", seed, [0.5], (0.9, 0.9, 0.9), unseen=(unseen, 1, 1))
        write_trial(run, trial)
    summary = collect.collect(run, tmp_path / "out")
    (gap,) = summary["heldout"]["comparisons"]
    # differences -0.5, -0.4, -0.6: mean -0.5, sd 0.1, t = -8.660254 on 2 df
    assert gap["method"] == "paired_t_seeds" and "paired t" in gap["note"]
    assert gap["delta"] == pytest.approx(-0.5)
    assert gap["p"] == pytest.approx(0.0130718, abs=1e-6)
    assert gap["ci"][0] == pytest.approx(-0.5 - 4.3026527 * 0.1 / 3**0.5)


def test_other_sweeps_have_no_heldout_section(tmp_path: Path) -> None:
    summary = collect.collect(standard_run(tmp_path / "run"), tmp_path / "out" / "phaseA")
    assert "heldout" not in summary
    assert all("test_acc_number_seen" not in m for m in summary["models"])
    assert "Seen vs unseen" not in (tmp_path / "out" / "phaseA" / "table.md").read_text()
    with (tmp_path / "out" / "phaseA" / "table.csv").open() as fh:
        assert "test_acc_number_seen_mean" not in next(csv.reader(fh))
