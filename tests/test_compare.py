"""The collector's comparisons on fabricated run folders with per-sequence predictions
(tests/fake_runs.py): the paired bootstrap against the reference with Holm, its fallbacks, the
majority-class row, the reference read from the summary it was chosen from, and pruned
configurations kept out of the statistics.

The prediction run: 10 test tracks of one sequence each, 3 seeds per model, every seed of a
model right on the same tracks (zero variance over seeds: Welch has no interval). The reference
seq_bgru_mp is right on t0-t7 (0.8); seq_blstm_mp on t0-t8 (0.9: one track more); seq_ugru_fs
on all (1.0: two more); seq_brnn_mp on t0-t1 (0.2: six fewer). Pairing on tracks, a model's
delta is K / 10 with K ~ Bin(10, d / 10) the draws of the d tracks where the two differ.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from fake_runs import FakeTrial, md_table, track_rows, write_sweep, write_trial

from jersey_ray.results import collect, runs

SEEDS = (42, 123, 456)
PATTERNS = {
    "seq_bgru_mp": "1111111100",
    "seq_blstm_mp": "1111111110",
    "seq_ugru_fs": "1111111111",
    "seq_brnn_mp": "1100000000",
}
PER_CLASS = {
    # majority: "7" (50 training sequences); test: 4 x "7", 3 x "17", 3 x "71"
    "7": {"train": {"tracks": 5, "sequences": 50}, "test": {"tracks": 2, "sequences": 4}},
    "17": {"train": {"tracks": 3, "sequences": 30}, "test": {"tracks": 1, "sequences": 3}},
    "71": {"train": {"tracks": 2, "sequences": 20}, "test": {"tracks": 1, "sequences": 3}},
}


def trial(model: str, seed: int, pattern: str | None = None, **kw) -> FakeTrial:
    pattern = PATTERNS[model] if pattern is None else pattern
    acc = pattern.count("1") / len(pattern)
    val = kw.pop("val", [0.5, 0.6, 0.7])
    return FakeTrial(model, seed, val, (acc, 1.0, acc), predictions=track_rows(pattern), **kw)


def prediction_run(run_dir: Path, models: tuple[str, ...] = tuple(PATTERNS), **sweep) -> Path:
    data = {"root": "data/fake", "cache": "nowhere", "size": [64, 32], "per_class": PER_CLASS}
    write_sweep(run_dir, models=list(models), data=data, **sweep)
    for model in models:
        for seed in SEEDS:
            write_trial(run_dir, trial(model, seed))
    return run_dir


def by_model(summary: dict) -> dict[str, dict]:
    return {c["model"]: c for c in summary["comparisons"]}


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("compare")
    out = root / "results" / "phaseA"
    return out, collect.collect(prediction_run(root / "runs" / "phaseA"), out)


# --------------------------------------------------------------------------- the bootstrap


def test_paired_bootstrap_against_the_reference(compared: tuple[Path, dict]) -> None:
    _, summary = compared
    cmp = by_model(summary)
    assert set(cmp) == {"seq_blstm_mp", "seq_ugru_fs", "seq_brnn_mp"}
    for c in cmp.values():
        assert c["method"] == "paired_bootstrap" and c["note"] is None
        assert (c["n_seeds"], c["n_seeds_reference"], c["n_tracks"]) == (3, 3, 10)
        assert c["reference"] == "seq_bgru_mp"
        # zero variance over seeds on both sides: seed-only Welch has no interval and no p
        assert c["welch_seeds"]["ci_low"] is None and c["welch_seeds"]["p"] is None
    lstm, ugru, brnn = cmp["seq_blstm_mp"], cmp["seq_ugru_fs"], cmp["seq_brnn_mp"]
    assert lstm["delta"] == pytest.approx(0.1)
    assert lstm["ci"] == [pytest.approx(0.0), pytest.approx(0.3)]  # Bin(10, 0.1) / 10
    assert lstm["p"] == pytest.approx(2 * 0.9**10, abs=0.03)
    assert ugru["delta"] == pytest.approx(0.2)
    assert ugru["p"] == pytest.approx(2 * 0.8**10, abs=0.02)
    # six tracks differ: delta >= 0 only when none of them is drawn (0.4^10 = 1e-4)
    assert brnn["delta"] == pytest.approx(-0.6)
    assert brnn["p"] < 0.002
    # Holm over the 3: brnn x 3, ugru x 2, lstm x 1, each at least the one before
    assert brnn["p_holm"] == pytest.approx(3 * brnn["p"])
    assert ugru["p_holm"] == pytest.approx(2 * ugru["p"])
    assert lstm["p_holm"] == pytest.approx(max(lstm["p"], 2 * ugru["p"]))
    assert [c["significant"] for c in (lstm, ugru, brnn)] == [False, False, True]


def test_comparison_table_shows_the_same(compared: tuple[Path, dict]) -> None:
    out, summary = compared
    text = (out / "table.md").read_text()
    header, rows = md_table(text, "| Model | id | n | Tracks | Δ")
    row = {r[1].strip("`"): dict(zip(header, r, strict=True)) for r in rows}
    for model, c in by_model(summary).items():
        cells = row[model]
        assert cells["Tracks"] == "10" and cells["n"] == "3"
        assert cells["Δ acc_number"] == f"{c['delta']:+.4f}"
        assert cells["95% CI"] == f"[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]"
        assert cells["p"] == f"{c['p']:.4f}" and cells["p (Holm)"] == f"{c['p_holm']:.4f}"
        assert cells["Method"] == "paired bootstrap"
        assert cells["Seed-only Welch 95% CI"] == "n/a" and cells["Welch p"] == "n/a"
    assert row["seq_brnn_mp"]["Verdict"] == "lower (significant)"
    assert row["seq_ugru_fs"]["Verdict"] == "not significant"
    assert "paired hierarchical bootstrap, 10,000 replicates (seed 0)" in text
    assert "Holm" in text
    assert summary["reference"]["p_adjust"] == "holm"
    with (out / "table.csv").open() as fh:
        csv_rows = {r["config"]: r for r in csv.DictReader(fh)}
    ugru = by_model(summary)["seq_ugru_fs"]
    assert csv_rows["seq_ugru_fs"]["p_holm"] == repr(ugru["p_holm"])
    assert csv_rows["seq_ugru_fs"]["method"] == "paired_bootstrap"
    assert csv_rows["seq_bgru_mp"]["p_holm"] == ""


def test_predictions_survive_a_retry(tmp_path: Path) -> None:
    # seed 123 of seq_blstm_mp failed once (error.txt, a staging file left behind) and was
    # retried from its checkpoint: result.json holds both attempts, and the final test of the
    # retry wrote test_predictions.csv; the collector uses it like any other
    run = prediction_run(tmp_path / "run", models=("seq_bgru_mp", "seq_blstm_mp"))
    trial_dir = run / "seq_blstm_mp-seed123"
    (trial_dir / "error.txt").write_text("Failure # 1\nRuntimeError: injected fault\n")
    (trial_dir / ".test_predictions.csv.tmp").write_text("seq_id,track\n")
    rows = (trial_dir / "result.json").read_text().splitlines()
    (trial_dir / "result.json").write_text("\n".join([*rows[:2], *rows[1:]]) + "\n")
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    lstm = summary["models"][1]
    assert (lstm["n_finished"], lstm["n_failed"]) == (3, 0)
    (c,) = summary["comparisons"]
    assert (c["method"], c["n_seeds"], c["note"]) == ("paired_bootstrap", 3, None)
    assert summary["skipped"] == []


def test_stale_and_malformed_predictions_are_counted_skips(tmp_path: Path) -> None:
    run = prediction_run(tmp_path / "run", models=("seq_bgru_mp", "seq_blstm_mp", "seq_ugru_fs"))
    # a stale file: right on 8 tracks while the trial reported 0.9
    stale = run / "seq_blstm_mp-seed123" / "test_predictions.csv"
    stale.write_text(stale.read_text().replace(",1\n", ",0\n", 1))
    bad = run / "seq_ugru_fs-seed456" / "test_predictions.csv"
    bad.write_text(bad.read_text().replace(",1\n", ",yes\n", 1))
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert skipped.keys() == {
        "seq_blstm_mp-seed123/test_predictions.csv",
        "seq_ugru_fs-seed456/test_predictions.csv",
    }
    assert (
        "predictions give 0.800000 correct but the trial reported"
        in skipped["seq_blstm_mp-seed123/test_predictions.csv"]
    )
    assert skipped["seq_ugru_fs-seed456/test_predictions.csv"].startswith("malformed predictions")
    cmp = by_model(summary)
    assert (
        cmp["seq_blstm_mp"]["n_seeds"] == 2
        and "model seeds 123 lack" in cmp["seq_blstm_mp"]["note"]
    )
    assert cmp["seq_ugru_fs"]["method"] == "paired_bootstrap"
    text = (tmp_path / "out" / "phaseA" / "table.md").read_text()
    assert "- Skipped inputs: 2." in text


def test_a_model_without_predictions_falls_back_to_seed_only_welch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_sweep(run, models=["seq_bgru_mp", "seq_blstm_mp"])
    for seed, acc in zip(SEEDS, (0.8, 0.9, 0.7), strict=True):
        write_trial(run, trial("seq_bgru_mp", seed))
        write_trial(run, FakeTrial("seq_blstm_mp", seed, [0.5], (acc, 1.0, acc)))
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    (c,) = summary["comparisons"]
    assert c["method"] == "welch_seeds" and "no usable test_predictions.csv" in c["note"]
    # the reference has zero variance, the model 0.1: Welch df = n - 1 = 2 of the model
    assert c["welch_seeds"]["df"] == pytest.approx(2.0)
    assert c["p"] == c["welch_seeds"]["p"] == pytest.approx(c["p_holm"])
    text = (tmp_path / "out" / "phaseA" / "table.md").read_text()
    assert "| seed-only Welch |" in text and "no usable test_predictions.csv" in text


# --------------------------------------------------------------------------- majority class


def test_majority_class_row_by_hand(compared: tuple[Path, dict]) -> None:
    out, summary = compared
    maj = summary["majority_class"]
    assert (maj["available"], maj["number"], maj["train_sequences"]) == (True, "7", 50)
    # 4 of 10 test sequences are "7"; its blank tens digit: only "7" (4); its ones digit 7:
    # "7" and "17" (7 of 10)
    assert maj["test"] == {
        "sequences": 10,
        "acc_number": pytest.approx(0.4),
        "acc_tens": pytest.approx(0.4),
        "acc_ones": pytest.approx(0.7),
    }
    _, rows = md_table((out / "table.md").read_text(), "| Model |")
    assert rows[-1] == [
        "Majority class: always 7 (chance)",
        "—",
        "—",
        "—",
        "0.4000",
        "—",
        "0.4000",
        "—",
        "0.7000",
        "—",
        "—",
        "—",
        "—",
    ]


def test_majority_class_unavailable_in_old_runs_and_from_a_manifest(tmp_path: Path) -> None:
    from jersey_ray.cache.store import CACHE_FORMAT, MANIFEST
    from jersey_ray.results.majority import majority_class

    old = majority_class({"data": {"cache": "results/cache/gone"}})
    assert old["available"] is False and "no per-class counts" in old["reason"]
    cache = tmp_path / "cache"
    cache.mkdir()
    manifest = {"format": CACHE_FORMAT, "counts": {"per_class": PER_CLASS}}
    (cache / MANIFEST).write_text(json.dumps(manifest))
    found = majority_class({"data": {"cache": str(cache)}})
    assert found["source"] == f"cache manifest {cache}" and found["number"] == "7"
    tie = {
        "1": {"train": {"sequences": 5}, "test": {"sequences": 1}},
        "10": {"train": {"sequences": 5}, "test": {"sequences": 1}},
    }
    assert majority_class({"data": {"per_class": tie}})["tied_with"] == ["10"]
    run = tmp_path / "run"
    write_sweep(run)
    write_trial(run, FakeTrial("seq_bgru_mp", 42, [0.5], (0.9, 0.9, 0.9)))
    collect.collect(run, tmp_path / "out" / "phaseA")
    _, rows = md_table((tmp_path / "out" / "phaseA" / "table.md").read_text(), "| Model |")
    assert rows[-1][0].startswith("Majority class (unavailable: sweep.json has no per-class")


# --------------------------------------------------------------------------- the reference


def test_best_of_reference_comes_from_the_summary_it_was_chosen_from(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run_a = prediction_run(tmp_path / "runs" / "a", models=("seq_bgru_mp", "seq_blstm_mp"))
    for seed in SEEDS:  # seq_bgru_mp is the best Phase A model on validation
        shutil.rmtree(run_a / f"seq_bgru_mp-seed{seed}")
        write_trial(run_a, trial("seq_bgru_mp", seed, val=[0.9, 0.95, 0.99]))
    collect.collect(run_a, results / "phaseA")
    # a decoy: phase0 sorts first and has seq_bgru_mp with other numbers
    decoy = {
        "phase": "phase0",
        "run_dir": "elsewhere",
        "models": [
            {
                "id": "seq_bgru_mp",
                "config": "seq_bgru_mp",
                "best_val_acc_number": {"mean": 0.5, "n": 3},
                "test_acc_number": {"mean": 0.1, "std": 0.01, "n": 3},
            }
        ],
    }
    (results / "phase0").mkdir()
    (results / "phase0" / "summary.json").write_text(json.dumps(decoy))
    run_b = tmp_path / "runs" / "b"
    write_sweep(run_b, phase="phaseB", reference="best:phaseA", models=["attn_bgru_luong"])
    for seed in SEEDS:
        write_trial(run_b, trial("attn_bgru_luong", seed, pattern="1111111111"))
    summary = collect.collect(run_b, results / "phaseB")
    ref = summary["reference"]
    assert ref["id"] == "seq_bgru_mp" and "best phaseA model on validation" in ref["chosen"]
    assert ref["source"].startswith("phaseA/summary.json")
    (c,) = summary["comparisons"]
    # phaseA's 0.8, not the decoy's 0.1; paired on phaseA's predictions
    assert c["delta"] == pytest.approx(0.2)
    assert (c["method"], c["n_tracks"], c["n_seeds_reference"]) == ("paired_bootstrap", 10, 3)


def test_reference_run_folder_gone_falls_back_with_a_note(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run_a = prediction_run(tmp_path / "runs" / "a", models=("seq_bgru_mp",))
    collect.collect(run_a, results / "phaseA")
    (run_a / "sweep.json").unlink()
    run_b = tmp_path / "runs" / "b"
    write_sweep(run_b, phase="phaseB", reference="best:phaseA", models=["attn_bgru_luong"])
    for seed, acc in zip(SEEDS, (0.9, 1.0, 0.9), strict=True):
        pattern = "1" * int(acc * 10) + "0" * (10 - int(acc * 10))
        write_trial(run_b, trial("attn_bgru_luong", seed, pattern=pattern))
    (c,) = collect.collect(run_b, results / "phaseB")["comparisons"]
    assert c["method"] == "welch_seeds" and "run folder" in c["note"]


# --------------------------------------------------------------------------- pruned configurations


def test_a_pruned_configuration_contributes_no_finished_row(tmp_path: Path) -> None:
    run = prediction_run(tmp_path / "run", models=("seq_bgru_mp", "seq_ugru_fs"))
    # seq_blstm_mp is in pruned.json, yet its seed 42 ran to its test (and has the best
    # validation of the run); seed 123 stopped at the rung, seed 456 failed
    write_trial(run, trial("seq_blstm_mp", 42, val=[0.99, 0.999, 0.9999]))
    write_trial(run, FakeTrial("seq_blstm_mp", 123, [0.3]))
    write_trial(run, FakeTrial("seq_blstm_mp", 456, [0.3], error="RuntimeError: boom"))
    record = {"epoch": 1, "rung_acc": 0.3, "seeds": [42, 123], "missing": [456]}
    (run / "pruned.json").write_text(json.dumps({"model=seq_blstm_mp": record}))
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    lstm = next(m for m in summary["models"] if m["config"] == "seq_blstm_mp")
    assert (lstm["n_finished"], lstm["n_pruned"], lstm["n_failed"]) == (0, 2, 1)
    assert lstm["test_acc_number"]["n"] == 0 and lstm["best_val_acc_number"]["n"] == 0
    assert lstm["pruned"]["missing"] == [456]
    assert "seq_blstm_mp" not in by_model(summary)
    assert summary["unfinished"] == []
    text = (tmp_path / "out" / "phaseA" / "table.md").read_text()
    _, rows = md_table(text, "| Model |")
    assert "`seq_blstm_mp`" not in [r[1] for r in rows]
    assert "| 42, 123 (judged without 456) |" in text
    loaded = runs.read_run(run)
    assert runs.choose_on_validation(loaded.trials).model != "seq_blstm_mp"
    assert {t.status for t in loaded.trials if t.model == "seq_blstm_mp"} == {"pruned", "failed"}


def test_the_table_names_the_seeds_a_row_lacks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_sweep(run, models=["seq_bgru_mp", "seq_ugru_fs"], seeds=[42, 123, 456, 789])
    for seed in (42, 123, 456, 789):
        write_trial(run, trial("seq_bgru_mp", seed))
    write_trial(run, trial("seq_ugru_fs", 42))
    write_trial(run, trial("seq_ugru_fs", 123))
    write_trial(run, FakeTrial("seq_ugru_fs", 456, [0.5], error="RuntimeError: boom"))
    # seed 789 of seq_ugru_fs has no trial folder
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    ugru = next(m for m in summary["models"] if m["config"] == "seq_ugru_fs")
    assert ugru["seeds"] == {"finished": [42, 123], "pruned": [], "failed": [456], "missing": [789]}
    text = (tmp_path / "out" / "phaseA" / "table.md").read_text()
    assert "Rows with fewer than the 4 declared seeds (42, 123, 456, 789):" in text
    assert "- `seq_ugru_fs`: seed 456 failed, seed 789 no trial folder." in text
    assert "- `seq_bgru_mp`: seed" not in text


def test_one_seed_a_side_is_compared_over_the_tracks_and_says_so(tmp_path: Path) -> None:
    """A --quick run (one seed): the bootstrap still draws the test tracks (the test set's own
    noise), seed-only Welch has nothing to say, and the note says what the interval holds."""
    run = tmp_path / "runs" / "phaseA"
    write_sweep(run, models=["seq_bgru_mp", "seq_brnn_mp"], seeds=[42],
                data={"root": "d", "cache": "nowhere", "size": [64, 32]})  # fmt: skip
    for model in ("seq_bgru_mp", "seq_brnn_mp"):
        write_trial(run, trial(model, 42))
    summary = collect.collect(run, tmp_path / "results" / "phaseA")
    [c] = summary["comparisons"]
    assert (c["model"], c["method"], c["n_seeds"], c["n_tracks"]) == (
        "seq_brnn_mp", "paired_bootstrap", 1, 10,
    )  # fmt: skip
    assert c["delta"] == pytest.approx(-0.6) and c["p"] < 0.002 and c["significant"]
    assert "test set's noise (tracks) only" in c["note"]
    assert c["welch_seeds"]["p"] is None
