"""The collector on a fabricated run folder (tests/fake_runs.py).

The standard run is a Phase A sweep over 3 seeds with: the reference seq_bgru_mp (test
acc_number 0.90, 0.92, 0.97); seq_blstm_mp (0.92, 0.94, 0.99; one malformed result line);
seq_urnn_fs pruned at epoch 2 (pruned.json); seq_ugru_fs with 2 finished seeds and a failed one;
seq_brnn_mp with 1 finished seed, 1 failed and 1 failed without result.json; seq_ulstm_fs
declared but absent. Expected numbers below are computed by hand.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from fake_runs import FakeTrial, md_table, standard_run, write_sweep, write_trial

from jersey_ray import metrics
from jersey_ray.results import collect, compare, reference, runs, stats, tables
from jersey_ray.results.__main__ import main as collect_main
from jersey_ray.results.runs import choose_on_validation, read_run
from jersey_ray.results.stats import t_quantile


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("collect")
    run_dir = standard_run(root / "runs" / "phaseA")
    out = root / "results" / "phaseA"
    summary = collect.collect(run_dir, out)
    return run_dir, out, summary


def _model(summary: dict, config: str) -> dict:
    return next(m for m in summary["models"] if m["config"] == config)


def _plain(cell: str) -> str:
    return cell.replace("**", "")


MAJORITY = "Majority class"


def model_rows(rows: list[list[str]]) -> list[list[str]]:
    """The main table's configuration rows: every row but the majority-class baseline."""
    assert rows[-1][0].startswith(MAJORITY), "the main table ends with the majority-class row"
    return rows[:-1]


# --------------------------------------------------------------------------- reading a run


def test_run_reader_names_match_metrics_and_import_no_torch() -> None:
    # runs.py takes these names from jersey_ray.metrics, which loads torch only to count
    assert (runs.EPOCH, runs.TEST_ACC_NUMBER, runs.BEST_VAL_ACC_NUMBER) == (
        metrics.EPOCH,
        metrics.TEST_ACC_NUMBER,
        metrics.BEST_VAL_ACC_NUMBER,
    )
    code = (
        "import sys, jersey_ray.results.runs; assert 'jersey_ray.metrics' in sys.modules; "
        "sys.exit('torch' in sys.modules or 'ray' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_config_key_flattens_and_drops_the_seed() -> None:
    key = runs.config_key({"seed": 1, "opt": {"lr": 0.1}, "model": "m", "size": [64, 32]})
    assert key == "model=m,opt/lr=0.1,size=[64, 32]"


def test_config_key_reads_tuples_as_json_lists_and_leaves_strings_alone() -> None:
    # Tune gives the scheduler grid values as declared (tuples); params.json holds lists
    as_tuple = runs.config_key({"model": "m", "size": (64, 32), "numbers": ((1,), "7")})
    as_json = runs.config_key({"model": "m", "size": [64, 32], "numbers": [[1], "7"]})
    assert as_tuple == as_json == "model=m,numbers=[[1], '7'],size=[64, 32]"
    assert runs.config_key({"model": "m", "cache": "c(1),2)"}) == "cache=c(1),2),model=m"


# --------------------------------------------------------------------------- reference


def test_sample_std_from_report_population_std() -> None:
    assert reference.sample_std(0.0038) == pytest.approx(0.0038 * 1.1180340, abs=1e-9)
    assert reference.report_row("seq_bgru_mp").mean["acc_number"] == 0.9763
    assert reference.report_row("no_such_model") is None
    assert [r.model_id for r in reference.phase_rows("phaseB")][:2] == [
        "attn_bgru_bahdanau",
        "attn_bgru_luong",
    ]
    assert reference.phase_rows("holdout") == []


# --------------------------------------------------------------------------- table arithmetic


def test_table_arithmetic_by_hand(collected: tuple[Path, Path, dict]) -> None:
    _, _, summary = collected
    ref = _model(summary, "seq_bgru_mp")
    assert ref["test_acc_number"]["mean"] == pytest.approx(0.93)
    assert ref["test_acc_number"]["std"] == pytest.approx(0.0360555128, abs=1e-9)
    assert ref["test_acc_number"]["values"] == [0.90, 0.92, 0.97]
    assert ref["test_acc_tens"]["mean"] == pytest.approx(0.98)
    assert ref["test_acc_tens"]["std"] == pytest.approx(0.01)
    assert ref["best_epoch_mean"] == pytest.approx(8 / 3)  # best epochs 2, 3, 3
    assert ref["train_minutes_mean"] == pytest.approx(12.0)  # (600 + 720 + 840) / 3 s
    assert ref["params"] == 11674965
    lstm = _model(summary, "seq_blstm_mp")  # one malformed line: the row is still complete
    assert lstm["test_acc_number"]["mean"] == pytest.approx(0.95)
    assert lstm["test_acc_ones"]["mean"] == pytest.approx(0.9566667, abs=1e-7)
    assert lstm["test_acc_ones"]["std"] == pytest.approx(0.0305505, abs=1e-7)
    assert lstm["test_acc_tens"]["std"] == pytest.approx(0.0)
    ugru = _model(summary, "seq_ugru_fs")
    assert ugru["test_acc_number"] == {
        "mean": pytest.approx(0.81),
        "std": pytest.approx(0.0141421356, abs=1e-9),
        "n": 2,
        "values": [0.80, 0.82],
    }
    assert (ugru["n_finished"], ugru["n_pruned"], ugru["n_failed"]) == (2, 0, 1)
    brnn = _model(summary, "seq_brnn_mp")
    assert brnn["test_acc_number"]["std"] is None
    assert (brnn["n_finished"], brnn["n_pruned"], brnn["n_failed"]) == (1, 0, 2)
    assert summary["std"] == "sample (ddof=1)"
    assert summary["n_seeds_declared"] == 3
    assert summary["phase"] == "phaseA"
    assert summary["name"] == "phaseA-test"
    assert summary["unfinished"] == []  # the stopped seq_urnn_fs trials have a pruning record


def test_n_and_na_shown_in_markdown(collected: tuple[Path, Path, dict]) -> None:
    _, out, _ = collected
    text = (out / "table.md").read_text()
    assert "mean ± sample std (ddof=1) over n seeds" in text
    header, rows = md_table(text, "| Model |")
    by_id = {r[1].strip("`"): r for r in rows}
    n_col, acc_col = header.index("n"), header.index("Acc number")
    assert by_id["seq_brnn_mp"][n_col] == "1"
    assert by_id["seq_brnn_mp"][acc_col] == "0.8500 ± n/a"
    assert by_id["seq_ugru_fs"][n_col] == "2"


def test_pruned_not_mixed_into_finished_statistics(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    urnn = _model(summary, "seq_urnn_fs")
    assert (urnn["n_finished"], urnn["n_pruned"], urnn["n_failed"]) == (0, 3, 0)
    assert urnn["test_acc_number"]["n"] == 0
    assert urnn["pruned"] == {
        "epoch": 2,
        "rung_acc": 0.55,
        "seeds": [42, 123, 456],
        "source": "pruned.json",
    }
    text = (out / "table.md").read_text()
    _, rows = md_table(text, "| Model |")
    assert "`seq_urnn_fs`" not in [r[1] for r in rows]
    _, pruned = md_table(text, "| Model | id | Seeds |")
    assert pruned == [
        ["UniRNN (final state)", "`seq_urnn_fs`", "42, 123, 456", "2", "0.5500", "pruned.json"]
    ]
    # the failed seq_ugru_fs seed's val 0.999 and the pruned vals enter no statistic
    assert _model(summary, "seq_ugru_fs")["best_val_acc_number"]["values"] == [0.995, 0.96]


def test_pruned_without_pruned_json_uses_last_epoch(tmp_path: Path) -> None:
    write_sweep(tmp_path / "run", scheduler="fifo")
    write_trial(tmp_path / "run", FakeTrial("seq_bgru_mp", 42, [0.5, 0.6], None))
    write_trial(tmp_path / "run", FakeTrial("seq_bgru_mp", 123, [0.5, 0.7, 0.8], None))
    summary = collect.collect(tmp_path / "run", tmp_path / "results" / "phaseA")
    pruned = summary["models"][0]["pruned"]
    assert pruned["epoch"] == 3
    assert pruned["rung_acc"] == pytest.approx(0.7)  # mean of 0.6 and 0.8
    assert pruned["source"] == collect.NO_PRUNING_RECORD
    # no pruning record: the sweep reports them as unfinished (resumable)
    assert [u["trial"] for u in summary["unfinished"]] == [
        "seq_bgru_mp-seed42",
        "seq_bgru_mp-seed123",
    ]
    assert (
        "No configuration has a finished trial."
        in (tmp_path / "results/phaseA/table.md").read_text()
    )


def test_failed_trials_listed(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    failed = {f["trial"]: f for f in summary["failed"]}
    assert set(failed) == {"seq_brnn_mp-seed123", "seq_brnn_mp-seed456", "seq_ugru_fs-seed456"}
    oom = failed["seq_ugru_fs-seed456"]
    assert oom["error_first_line"] == "Failure # 1 (occurred at 2026-01-01_00-10-00)"
    assert oom["error_last_line"] == "RuntimeError: CUDA out of memory"
    text = (out / "table.md").read_text()
    assert "## Failed trials (3)" in text
    assert "| `seq_ugru_fs-seed456` | 456 | 1 | Failure # 1 (occurred" in text


def test_malformed_and_missing_inputs_are_counted_skips(
    collected: tuple[Path, Path, dict],
) -> None:
    _, out, summary = collected
    paths = {s["path"] for s in summary["skipped"]}
    assert paths == {"seq_blstm_mp-seed123/result.json:2", "seq_brnn_mp-seed456/result.json"}
    text = (out / "table.md").read_text()
    assert "- Skipped inputs: 2." in text
    assert "`seq_blstm_mp-seed123/result.json:2`: malformed result line" in text
    assert "Declared in sweep.json but no trial folder: seq_ulstm_fs." in text


def test_bad_params_and_pruned_keys_are_skipped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_sweep(run)
    write_trial(run, FakeTrial("seq_bgru_mp", 42, [0.5], (0.9, 0.9, 0.9)))
    (run / "junk").mkdir()
    (run / "junk" / "params.json").write_text("{not json")
    (run / "pruned.json").write_text(json.dumps({"model=gone": {"epoch": 1}}))
    loaded = read_run(run)
    assert [t.model for t in loaded.trials] == ["seq_bgru_mp"]
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    assert {s["path"] for s in summary["skipped"]} == {"junk/params.json", "pruned.json:model=gone"}


def _scheduler_pruned_json(run: Path, searched: list[dict]) -> dict:
    """pruned.json as the seed-aware ASHA writes it, for trials with these evaluated_params:
    the first configuration reaches rung 1 with 0.8, the second with 0.2 and is pruned (its
    last seed ended before the rung: judged without it, named as missing)."""
    from ray.tune.experiment import Trial as TuneTrial

    from jersey_ray.sweep.asha import SeedAwareASHA

    class Controller:  # the two controller calls the scheduler makes
        def __init__(self) -> None:
            self.trials: list[TuneTrial] = []

        def get_trials(self) -> list[TuneTrial]:
            return self.trials

        def stop_trial(self, trial: TuneTrial) -> None:
            trial.set_status(TuneTrial.TERMINATED)

    sched, ctl = SeedAwareASHA(max_t=3, grace_period=1, reduction_factor=3), Controller()
    for params in searched:
        config = {**params, "epochs": 3, "lr_scheme": "uniform"}  # fixed: never in the key
        ctl.trials.append(TuneTrial("__fake", config=config, evaluated_params=params, stub=True))
        sched.on_trial_add(ctl, ctl.trials[-1])
    ctl.trials[3].set_status(TuneTrial.TERMINATED)
    for trial, acc in zip(ctl.trials[:3], (0.8, 0.8, 0.2), strict=True):
        sched.on_trial_result(ctl, trial, {metrics.EPOCH: 1, metrics.VAL_ACC_NUMBER: acc})
    sched.write_pruned(run / "pruned.json")
    return json.loads((run / "pruned.json").read_text())


def test_pruned_json_written_by_the_scheduler_matches(tmp_path: Path) -> None:
    # Tune's evaluated_params: every grid axis (a one-value axis too, tuples as declared)
    axes = {"lr": [0.001], "loss_weights": [(1.0, 1.0), (1.0, 2.0)]}
    searched = [
        {"model": "seq_bgru_mp", "lr": 0.001, "loss_weights": weights, "seed": seed}
        for weights in axes["loss_weights"]
        for seed in (42, 123)
    ]
    run = tmp_path / "run"
    write_sweep(run, axes=axes, models=["seq_bgru_mp"], seeds=[42, 123])
    pruned = _scheduler_pruned_json(run, searched)
    assert list(pruned) == ["loss_weights=[1.0, 2.0],lr=0.001,model=seq_bgru_mp"]
    for params in searched:
        model, seed = params["model"], params["seed"]
        extra = {k: v for k, v in params.items() if k not in ("model", "seed")}
        if params["loss_weights"] == (1.0, 1.0):
            trial = FakeTrial(model, seed, [0.8, 0.9], (0.9, 0.9, 0.9), params=extra)
        else:  # seed 42 reported the losing rung value; seed 123 was stopped before it ran
            trial = FakeTrial(model, seed, [0.2] if seed == 42 else [], params=extra)
        write_trial(run, trial)
    summary = collect.collect(run, tmp_path / "out" / "phaseA")
    bad = _model(summary, "seq_bgru_mp/loss_weights=[1.0, 2.0]")
    assert bad["pruned"] == {
        "epoch": 1,
        "rung_acc": 0.2,
        "seeds": [42],
        "missing": [123],
        "source": "pruned.json",
    }
    assert _model(summary, "seq_bgru_mp/loss_weights=[1.0, 1.0]")["n_finished"] == 2
    assert summary["skipped"] == [] and summary["unfinished"] == []


def test_no_sweep_json_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert collect_main([str(tmp_path)]) == 2
    assert "sweep.json not found" in capsys.readouterr().err
    (tmp_path / "sweep.json").write_text("[1, 2")
    assert collect_main([str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------- agreement


def _fmt_stat(stat: dict) -> str:
    if not stat["n"]:
        return "—"
    std = "n/a" if stat["std"] is None else f"{stat['std']:.4f}"
    return f"{stat['mean']:.4f} ± {std}"


def test_csv_markdown_json_agree(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["table_md"] == (out / "table.md").as_posix()
    with (out / "table.csv").open() as fh:
        csv_rows = {r["config"]: r for r in csv.DictReader(fh)}
    assert set(csv_rows) == {m["config"] for m in summary["models"]}
    header, md_rows = md_table((out / "table.md").read_text(), "| Model |")
    md_by_id = {r[1].strip("`"): r for r in model_rows(md_rows)}
    assert set(md_by_id) == {m["config"] for m in summary["models"] if m["n_finished"]}
    for m in summary["models"]:
        row = csv_rows[m["config"]]
        for key in tables.TEST_KEYS:
            for part in ("mean", "std"):
                value = m[key][part]
                assert row[f"{key}_{part}"] == ("" if value is None else repr(value))
            assert int(row[f"{key}_n"]) == m[key]["n"]
        assert row["params"] == str(m["params"])
        assert row["report_acc_number_mean"] == repr(m["report"]["acc_number_mean"])
        if m["config"] not in md_by_id:
            continue
        cells = [_plain(c) for c in md_by_id[m["config"]]]
        assert cells[header.index("Acc number")] == _fmt_stat(m["test_acc_number"])
        assert cells[header.index("Acc tens")] == _fmt_stat(m["test_acc_tens"])
        assert cells[header.index("Acc ones")] == _fmt_stat(m["test_acc_ones"])
        assert cells[header.index("Params")] == f"{m['params']:,}"
        assert cells[header.index("n")] == str(m["test_acc_number"]["n"])
        assert cells[-1] == f"{m['n_finished']} / {m['n_pruned']} / {m['n_failed']}"
        assert float(cells[header.index("Train min/trial (mean)")]) == round(
            m["train_minutes_mean"], 1
        )


def test_bold_marks_the_best(collected: tuple[Path, Path, dict]) -> None:
    _, out, _ = collected
    header, rows = md_table((out / "table.md").read_text(), "| Model |")
    bold = {
        col: [r[1].strip("`") for r in rows if r[header.index(col)].startswith("**")]
        for col in ("Acc number", "Acc tens", "Acc ones", "Params", "Train min/trial (mean)")
    }
    assert bold == {
        "Acc number": ["seq_blstm_mp"],  # 0.95 > 0.93 > 0.85 > 0.81
        "Acc tens": ["seq_blstm_mp"],
        "Acc ones": ["seq_blstm_mp"],
        "Params": ["seq_brnn_mp"],  # fewest parameters
        "Train min/trial (mean)": ["seq_blstm_mp"],  # 5.0 minutes
    }
    report_cols = [i for i, name in enumerate(header) if name == "Report"]
    assert report_cols == [5, 7, 9]
    assert all(not r[i].startswith("**") for r in rows for i in report_cols)


# --------------------------------------------------------------------------- recomputation


def _recompute(run_dir: Path) -> dict[str, dict]:
    """Independently of the collector: last valid result row per trial, grouped by model."""
    groups: dict[str, dict] = {}
    for params_path in run_dir.rglob("params.json"):
        model = json.loads(params_path.read_text())["model"]
        rows = []
        result = params_path.parent / "result.json"
        for line in result.read_text().splitlines() if result.exists() else []:
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
        last = rows[-1] if rows else {}
        g = groups.setdefault(model, {"done": [], "pruned": 0, "failed": 0, "params": set()})
        g["params"].update(r["n_params"] for r in rows)
        if "test_acc_number" in last:
            g["done"].append(last)
        elif (params_path.parent / "error.txt").exists():
            g["failed"] += 1
        else:
            g["pruned"] += 1
    return groups


def _fmt(values: list[float]) -> str:
    std = f"{statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"
    return f"{statistics.fmean(values):.4f} ± {std}"


def test_every_number_in_table_md_recomputes_from_the_run_folder(
    collected: tuple[Path, Path, dict],
) -> None:
    run_dir, out, _ = collected
    groups = _recompute(run_dir)
    with (Path(collect.__file__).parent / "report_tables.csv").open() as fh:
        report = {r["model_id"]: r for r in csv.DictReader(fh)}
    _header, rows = md_table((out / "table.md").read_text(), "| Model |")
    rows = model_rows(rows)
    assert len(rows) == 4
    for row in rows:
        cells = [_plain(c) for c in row]
        g = groups[cells[1].strip("`")]
        done = g["done"]
        rep = report[cells[1].strip("`")]
        (params,) = g["params"]
        expected = [
            f"{params:,}",
            str(len(done)),
            _fmt([r["test_acc_number"] for r in done]),
            f"{float(rep['acc_number_mean']):.4f} ± {float(rep['acc_number_std']):.4f}",
            _fmt([r["test_acc_tens"] for r in done]),
            f"{float(rep['acc_tens_mean']):.4f} ± {float(rep['acc_tens_std']):.4f}",
            _fmt([r["test_acc_ones"] for r in done]),
            f"{float(rep['acc_ones_mean']):.4f} ± {float(rep['acc_ones_std']):.4f}",
            f"{statistics.fmean(r['best_epoch'] for r in done):.1f}",
            f"{statistics.fmean(r['time_total_s'] for r in done) / 60:.1f}",
            f"{len(done)} / {g['pruned']} / {g['failed']}",
        ]
        assert cells[2:] == expected, cells[1]


# --------------------------------------------------------------------------- comparisons


def _comparison(summary: dict, config: str) -> dict | None:
    return next((c for c in summary["comparisons"] if c["model"] == config), None)


def test_comparison_with_the_reference(collected: tuple[Path, Path, dict]) -> None:
    # the standard run has no test_predictions.csv (an old run): seed-only Welch, with a note
    _, out, summary = collected
    assert _comparison(summary, "seq_bgru_mp") is None
    assert _comparison(summary, "seq_brnn_mp") is None  # n = 1
    lstm = _comparison(summary, "seq_blstm_mp")
    assert lstm["reference"] == "seq_bgru_mp"
    assert lstm["source"] == "this run"
    assert lstm["method"] == "welch_seeds" and "test_predictions.csv" in lstm["note"]
    welch_lstm = lstm["welch_seeds"]
    assert welch_lstm["diff"] == lstm["delta"] == pytest.approx(0.02)
    assert (welch_lstm["ci_low"], welch_lstm["ci_high"]) == (
        pytest.approx(-0.0617363, abs=1e-6),
        pytest.approx(0.1017363, abs=1e-6),
    )
    assert lstm["ci"] == [welch_lstm["ci_low"], welch_lstm["ci_high"]]
    assert lstm["significant"] is False
    # 0.81 +- 0.01414 (n 2) vs 0.93 +- 0.03606 (n 3): se^2 = 1e-4 + 4.3333e-4, df = 2.738
    ugru = _comparison(summary, "seq_ugru_fs")
    assert ugru["welch_seeds"]["df"] == pytest.approx(2.73797, abs=1e-4)
    half = t_quantile(0.975, ugru["welch_seeds"]["df"]) * math.sqrt(1e-4 + 0.0013 / 3)
    assert ugru["welch_seeds"]["ci_high"] == pytest.approx(-0.12 + half)
    # t = -0.12 / 0.0230940 = -5.19615 on 2.738 df: p = 0.017307; Holm over 2 comparisons
    assert ugru["p"] == pytest.approx(0.0173070, abs=1e-6)
    assert ugru["p_holm"] == pytest.approx(2 * 0.0173070, abs=2e-6)
    assert lstm["p_holm"] == pytest.approx(lstm["p"]) == pytest.approx(0.534186, abs=1e-5)
    assert ugru["significant"] is True
    assert (ugru["n_seeds"], ugru["n_seeds_reference"], ugru["n_tracks"]) == (2, 3, None)
    text = (out / "table.md").read_text()
    header, rows = md_table(text, "| Model | id | n | Tracks | Δ")
    assert rows[1] == [
        "BiLSTM (mean pool)",
        "`seq_blstm_mp`",
        "3",
        "—",
        "+0.0200",
        "[-0.0617, +0.1017]",
        "0.5342",
        "0.5342",
        "not significant",
        "seed-only Welch",
        "[-0.0617, +0.1017]",
        "4.0",
        "0.5342",
    ]
    assert rows[0][header.index("Verdict")] == "lower (significant)"
    assert "Welch's t interval" in text
    assert "Not compared (no predictions and n < 2): `seq_brnn_mp`." in text


def test_reference_absent_from_run_says_so(tmp_path: Path) -> None:
    run = standard_run(tmp_path / "runs" / "x", reference="attn_bgru_luong")
    summary = collect.collect(run, tmp_path / "results" / "phaseA")
    assert summary["comparisons"] == []
    assert summary["reference"]["source"] is None
    text = (tmp_path / "results" / "phaseA" / "table.md").read_text()
    assert "Reference `attn_bgru_luong` is not in this run" in text


def test_reference_from_another_phase_summary(tmp_path: Path) -> None:
    results = tmp_path / "results"
    collect.collect(standard_run(tmp_path / "runs" / "a"), results / "phaseA")
    run_b = tmp_path / "runs" / "b"
    write_sweep(run_b, phase="phaseB", reference="seq_bgru_mp", models=["attn_bgru_luong"])
    for seed, acc in ((42, 0.96), (123, 0.97), (456, 0.98)):
        write_trial(run_b, FakeTrial("attn_bgru_luong", seed, [0.9], (acc, 0.99, acc)))
    summary = collect.collect(run_b, results / "phaseB")
    (cmp,) = summary["comparisons"]
    assert cmp["model"] == "attn_bgru_luong"
    assert cmp["source"].startswith("phaseA/summary.json")
    assert cmp["delta"] == pytest.approx(0.97 - 0.93)
    index = (results / "README.md").read_text()
    assert "[table](phaseA/table.md)" in index and "[table](phaseB/table.md)" in index


def test_unreadable_other_summary_is_a_counted_skip(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for name, text in (("broken", "{not json"), ("odd", "[1, 2]")):
        (results / name).mkdir(parents=True)
        (results / name / "summary.json").write_text(text)
    run = tmp_path / "runs" / "b"
    write_sweep(run, phase="phaseB", reference="seq_bgru_mp", models=["attn_bgru_luong"])
    write_trial(run, FakeTrial("attn_bgru_luong", 42, [0.9], (0.9, 0.9, 0.9)))
    summary = collect.collect(run, results / "phaseB")
    assert summary["reference"]["source"] is None
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert skipped["broken/summary.json"].startswith("unreadable summary (JSONDecodeError")
    assert skipped["odd/summary.json"] == "not a phase summary (no 'models' list)"
    assert len(skipped) == 2
    assert "- Skipped inputs: 2." in (results / "phaseB" / "table.md").read_text()
    index = (results / "README.md").read_text()
    assert "Unreadable summaries (skipped): broken, odd." in index


def test_report_check_phase_b(tmp_path: Path) -> None:
    check = collect.report_check("phaseB")
    assert check["baseline"] == "seq_bgru_mp"
    rows = {r["id"]: r for r in check["rows"]}
    assert len(rows) == 6
    luong = rows["attn_bgru_luong"]
    # 0.9787 +- 0.0068 vs 0.9763 +- 0.0038 (population sds, n 5): sample sds x sqrt(5/4)
    se = math.sqrt((0.0068**2 + 0.0038**2) * 1.25 / 5)
    assert luong["diff"] == pytest.approx(0.0024)
    assert luong["df"] == pytest.approx(6.27628, abs=1e-4)
    assert luong["ci_high"] - luong["ci_low"] == pytest.approx(2 * t_quantile(0.975, 6.27628) * se)
    assert luong["significant"] is False
    assert (check["higher_mean"], check["significantly_higher"]) == (2, 0)  # Luong, UniGRU-HC


def test_report_check_phase_a_in_markdown(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    urnn = next(r for r in summary["report_check"]["rows"] if r["id"] == "seq_urnn_fs")
    # 0.9691 +- 0.0011 vs 0.9763 +- 0.0038: se = 0.0019780, df = 4.6657
    assert urnn["df"] == pytest.approx(4.66569, abs=1e-4)
    assert urnn["ci_high"] == pytest.approx(
        -0.0072 + t_quantile(0.975, 4.66569) * 0.0019780, abs=1e-6
    )
    # Welch's p 0.0168 is the smallest of Phase A's 5: Holm x 5 = 0.0841, not significant
    assert urnn["p_holm"] == pytest.approx(5 * urnn["p"]) and urnn["significant"] is False
    text = (out / "table.md").read_text()
    assert "sqrt(5/4) = ×1.1180" in text
    _, rows = md_table(text, "| Model (report) |")
    assert rows[1][0] == "UniRNN (final state)"
    assert rows[1][2:] == [
        "-0.0072", "[-0.0124, -0.0020]", "4.7", "0.0168", "0.0841", "not significant",
    ]  # fmt: skip
    assert "0 of 5 models have a higher mean than the baseline; 0 of them significantly." in text


def test_report_check_absent_for_phase0() -> None:
    assert collect.report_check("phase0") is None


def test_report_check_without_its_baseline_row_is_a_packaging_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(reference.REPORT_BASELINE, "phaseA", "no_such_model")
    with pytest.raises(RuntimeError, match=r"report_tables\.csv has no row for no_such_model"):
        collect.report_check("phaseA")


def test_confidence_level_comes_from_stats(
    collected: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out, summary = collected
    text = (out / "table.md").read_text()
    assert "| 95% CI |" in text and "with a 95% Welch's" in text
    monkeypatch.setattr(stats, "CONFIDENCE", 0.9)
    text = tables.render_markdown(summary)
    assert "95%" not in text
    assert text.count("| 90% CI |") == 2 and "with a 90% Welch's" in text


# --------------------------------------------------------------------------- choice on validation


def test_choice_on_validation_ignores_test_metrics(collected: tuple[Path, Path, dict]) -> None:
    run_dir, _, _ = collected
    run = read_run(run_dir)
    chosen = choose_on_validation(run.trials)
    # seq_ugru_fs seed 42: best val 0.995 but the worst test acc_number (0.80); the failed
    # seed with val 0.999 is not finished and must not be chosen
    assert (chosen.model, chosen.seed) == ("seq_ugru_fs", 42)
    best_test = max(
        (t for t in run.trials if t.status == "finished"), key=lambda t: t.last["test_acc_number"]
    )
    assert (best_test.model, best_test.seed) == ("seq_blstm_mp", 456)
    for t in run.trials:  # raising every other trial's test metric changes nothing
        if t is not chosen and t.status == "finished":
            t.rows[-1]["test_acc_number"] = 1.0
    assert choose_on_validation(run.trials) is chosen
    assert choose_on_validation([t for t in run.trials if t.status != "finished"]) is None


def test_best_configuration_on_validation(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    # mean best val: seq_ugru_fs (0.995 + 0.96) / 2 = 0.9775 beats seq_bgru_mp (0.8 + 0.8 + 0.9) / 3
    # although its test acc_number is the lowest
    assert runs.best_config_on_validation(summary) == "seq_ugru_fs"
    assert runs.best_config_on_validation(json.loads((out / "summary.json").read_text())) == (
        "seq_ugru_fs"
    )
    assert runs.best_config_on_validation({"models": []}) is None


def test_analysis_skipped_without_checkpoint_is_a_note(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    assert summary["figure_notes"] == [
        "Analysis figures skipped: no checkpoint_*/best.pt in `seq_ugru_fs-seed42` (the trial "
        "chosen on validation)"
    ]
    assert "Analysis figures skipped" in (out / "table.md").read_text()


# --------------------------------------------------------------------------- index, CLI, axes


def test_results_index(collected: tuple[Path, Path, dict]) -> None:
    _, out, summary = collected
    index = (out.parent / "README.md").read_text()
    # (600+720+840) + 3*300 + 3*100 + (1200+1200+50) + 360 = 6170 s at 0.5 GPU per trial
    assert summary["compute"]["hours"] == pytest.approx(6170 * 0.5 / 3600)
    assert "0.86 GPU h (0.5/trial)" in index
    assert "64×32" in index and "42, 123, 456" in index and "1x test GPU" in index
    assert "100 sequences: train 80 / val 10 / test 10" in index


def test_cli_default_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run = standard_run(tmp_path / "runs" / "a")
    monkeypatch.chdir(tmp_path)
    assert collect_main([str(run)]) == 0
    assert "5 configurations, 9 finished trials, 3 failed, 2 skipped inputs" in (
        capsys.readouterr().out
    )
    assert (tmp_path / "results" / "phaseA" / "table.md").is_file()
    assert (tmp_path / "results" / "README.md").is_file()


def test_extra_axes_make_separate_configurations(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_sweep(run)
    for lr, acc in ((0.001, 0.9), (0.0003, 0.8)):
        for seed in (42, 123):
            write_trial(
                run, FakeTrial("seq_bgru_mp", seed, [0.5], (acc, 1.0, acc), params={"lr": lr})
            )
    summary = collect.collect(run, tmp_path / "results" / "phaseA")
    assert [m["config"] for m in summary["models"]] == [
        "seq_bgru_mp/lr=0.0003",
        "seq_bgru_mp/lr=0.001",
    ]
    assert [m["test_acc_number"]["mean"] for m in summary["models"]] == [0.8, 0.9]


def test_best_of_phase_reference_is_chosen_on_validation(tmp_path: Path) -> None:
    results = tmp_path / "results"
    phase_a = {
        "phase": "phaseA",
        "models": [
            # best on test, worse on validation: must not be chosen
            {"id": "seq_blstm_mp", "config": "seq_blstm_mp",
             "best_val_acc_number": {"mean": 0.80, "n": 3},
             metrics.TEST_ACC_NUMBER: {"mean": 0.99, "std": 0.01, "n": 3}},
            {"id": "seq_bgru_mp", "config": "seq_bgru_mp",
             "best_val_acc_number": {"mean": 0.90, "n": 3},
             metrics.TEST_ACC_NUMBER: {"mean": 0.70, "std": 0.01, "n": 3}},
        ],
    }  # fmt: skip
    (results / "phaseA").mkdir(parents=True)
    (results / "phaseA" / "summary.json").write_text(json.dumps(phase_a))
    skipped: list[dict[str, str]] = []
    ref, how = compare.resolve_reference("best:phaseA", results / "phaseB", skipped)
    assert ref == "seq_bgru_mp" and "on validation" in how and not skipped
    assert compare.resolve_reference("seq_ugru_fs", results / "phaseB", skipped) == (
        "seq_ugru_fs", "",
    )  # fmt: skip
    ref, how = compare.resolve_reference("best:phase9", results / "phaseB", skipped)
    assert ref == "" and "run phase9 first" in how
