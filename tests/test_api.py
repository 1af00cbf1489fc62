"""The sweep from Python (``jersey_ray.sweep.run`` / ``collect``), the options both the API and
the command line build (:class:`RunOptions`), ``sweep --set``, and the console's notebook bar.

Everything here runs without Ray except the one end-to-end run (a real, tiny Tune sweep).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from fake_runs import standard_run

from jersey_ray import metrics
from jersey_ray.config import SweepSpec
from jersey_ray.data import synth
from jersey_ray.errors import UserError
from jersey_ray.results.runs import choose_on_validation, read_run
from jersey_ray.sweep import launch
from jersey_ray.sweep.__main__ import build_parser, main, options_from_args
from jersey_ray.sweep.options import RunOptions
from jersey_ray.sweep.settings import FULL, load_sweep, resolve

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- import, options


def test_import_is_light():
    code = (
        "import sys; import jersey_ray.sweep; "
        "print(sorted(m for m in ('ray', 'torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_run_is_the_function_whatever_was_imported():
    import jersey_ray.sweep.execute  # noqa: F401  # the submodule that runs a resolved sweep
    from jersey_ray import sweep
    from jersey_ray.sweep.execute import finish

    assert callable(finish) and callable(sweep.run)
    assert (sweep.run.__module__, sweep.collect.__module__) == ("jersey_ray.sweep.api",) * 2
    assert sys.modules["jersey_ray.sweep.execute"].finish is finish


def test_options_from_python_are_parsed_as_the_flags_are():
    opts = RunOptions.from_kwargs(
        models="basic_mv3s,basic_sv2",
        seeds=[1, 2],
        epochs=3,
        size=(32, 16),
        numbers=["4", "48"],
        data="some/root",
        gpus_per_trial=0,
        overrides={"lr": 1e-3},
    )
    assert opts.models == ("basic_mv3s", "basic_sv2") and opts.seeds == (1, 2)
    assert opts.size == (32, 16) and opts.numbers == ("4", "48") and opts.epochs == 3
    assert opts.data == Path("some/root") and opts.gpus_per_trial == 0.0
    assert opts.overrides == {"lr": 1e-3} and opts.max_failures == RunOptions.max_failures
    # the command line gives the same options
    args = build_parser().parse_args(
        ["phaseB", "--models", "basic_mv3s,basic_sv2", "--seeds", "1,2", "--epochs", "3",
         "--size", "32x16", "--numbers", "4,48", "--data", "some/root", "--gpus-per-trial", "0",
         "--set", "lr=1e-3"]
    )  # fmt: skip
    assert options_from_args(args) == opts


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epoch": 3}, "unknown sweep option(s) epoch; valid:"),
        ({"epochs": 0}, "epochs=0: expected a whole number >= 1"),
        ({"seeds": "a,b"}, "seeds='a,b': expected integers"),
        ({"size": (4, 4)}, "size=(4, 4): size must be at least 8x8"),
        ({"models": ""}, "models='': expected model ids"),
        ({"quick": True, "demo": True}, "quick and demo are two presets"),
        ({"quick": "yes"}, "quick='yes': expected True or False"),
        ({"gpus_per_trial": "half"}, "gpus_per_trial='half': expected a number"),
        ({"overrides": ["lr=1"]}, "expected a dict of TrainConfig keys"),
        ({"overrides": {"epochs": 2}}, "overrides['epochs']: use the option epochs= instead"),
        ({"overrides": {"seed": 2}}, "overrides['seed']: use the option seeds= instead"),
        ({"overrides": {"max_frames": 2}}, "use the option max_frames= instead"),
    ],
)
def test_bad_python_options_are_user_errors(kwargs, message):
    with pytest.raises(UserError) as err:
        RunOptions.from_kwargs(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- --set


def test_set_is_the_command_line_layer():
    args = build_parser().parse_args(
        ["phaseB", "--models", "basic_mv3s", "--set", "deterministic=false", "--set", "lr=1e-3",
         "--epochs", "2"]
    )  # fmt: skip
    settings = resolve(load_sweep("phaseB"), FULL, options_from_args(args))
    cfg = settings.train["basic_mv3s"]
    assert (cfg.deterministic, cfg.lr, cfg.epochs) == (False, 1e-3, 2)
    assert settings.overrides["deterministic"] is False  # every trial gets it
    assert settings.sources["train.deterministic"] == "command line"
    assert settings.sources["train.lr"] == "command line"


@pytest.fixture
def no_data_work(monkeypatch, tmp_path):
    """Fail the test if a sweep gets past its cheap checks (no Ray, no data, no cache)."""
    monkeypatch.chdir(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the sweep went past its cheap checks")

    monkeypatch.setattr(launch, "with_root", refuse)
    monkeypatch.setattr(launch.preflight, "check_experiment", refuse)
    yield tmp_path
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "no_such_key=1"], "command line: unknown TrainConfig key(s) no_such_key"),
        (["--set", "lr=fast"], "command line: lr must be float, got 'fast'"),
        (["--set", "lr"], "--set 'lr': expected key=value"),
        (["--set", "lr=1", "--set", "lr=2"], "--set lr given twice"),
        (["--set", "epochs=2"], "--set epochs: use --epochs instead"),
        (["--set", "seed=2"], "--set seed: use --seeds instead"),
        (["--set", "model=basic_r18"], "--set model: use --models instead"),
        (["--set", "device=cuda"], "--set device: use --gpus-per-trial instead"),
        (["--set", "size=[8,8]"], "--set size: use --size instead"),
        (["--gpus-per-trial", "2"], "a trial trains on one device; use a fraction <= 1"),
        (["--gpus-per-trial", "-1"], "must be a fraction of one GPU (0 to 1), got -1"),
    ],
)
def test_bad_set_and_gpu_share_fail_in_one_line_before_data(no_data_work, capsys, extra, message):
    assert main(["phaseB", "--quick", "--storage", str(no_data_work / "runs"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_set_on_a_sweep_axis_is_refused(no_data_work):
    spec = SweepSpec(name="lrs", phase="x", models=("basic_mv3s",), axes={"lr": (1e-3, 3e-3)})
    with pytest.raises(UserError, match=r"lr: an axis of sweep 'lrs'"):
        resolve(spec, FULL, RunOptions(overrides={"lr": 1e-3}))


# --------------------------------------------------------------------------- API errors


@pytest.mark.parametrize(
    "sweep, kwargs, message",
    [
        ("no_such_sweep", {}, "no sweep 'no_such_sweep'"),
        ("all", {}, "sweep.run runs one sweep"),
        ("phaseB", {"bogus": 1}, "unknown sweep option(s) bogus"),
        ("phaseB", {"quick": True, "gpus_per_trial": 2}, "a trial trains on one device"),
        ("phaseB", {"quick": True, "models": "nope"}, "unknown model id 'nope'"),
        ("phaseB", {"quick": True, "overrides": {"nope": 1}}, "unknown TrainConfig key(s) nope"),
        ("phaseB", {"data": "no/such/folder"}, "no/such/folder is not a folder"),
        ("missing.py", {}, "missing.py"),
    ],
)
def test_api_errors_are_user_errors_not_exits(no_data_work, sweep, kwargs, message):
    from jersey_ray import sweep as api

    with pytest.raises(UserError) as err:
        api.run(sweep, storage=str(no_data_work / "runs"), **kwargs)
    assert message in str(err.value)


# --------------------------------------------------------------------------- collect


def test_collect_reads_a_finished_run_without_ray(tmp_path, monkeypatch):
    from jersey_ray import sweep

    run_dir = standard_run(tmp_path / "run")
    chosen = run_dir / "seq_ugru_fs-seed42"  # best on validation (0.995); worst on test
    (chosen / "checkpoint_000002").mkdir()
    (chosen / "checkpoint_000002" / "best.pt").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "ray", None)  # any import of Ray fails
    monkeypatch.chdir(tmp_path)
    result = sweep.collect("run", out="out")  # relative folders: the result names them absolute

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert result.records == summary["models"] and len(result.records) == 5
    expected = choose_on_validation(read_run(run_dir).trials)
    assert result.best is not None and result.best.trial == expected.dir == chosen.name
    assert result.best.best_val_acc_number == 0.995 and result.best.best_epoch == 2
    assert result.best.path == chosen
    assert result.best.checkpoint == chosen / "checkpoint_000002" / "best.pt"
    assert result.run_dir == run_dir and result.out_dir == tmp_path / "out"
    assert result.table_md == tmp_path / "out" / "table.md" and result.table_md.is_file()
    assert result.summary_json == tmp_path / "out" / "summary.json"
    assert tmp_path / "out" / "learning_curves.png" in result.figures
    assert result.complete is False  # the fabricated run has failed trials

    frame = result.dataframe()
    assert list(frame["config"]) == [r["config"] for r in result.records]
    assert frame["test_acc_number.mean"].iloc[0] == result.records[0]["test_acc_number"]["mean"]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas: pip install pandas"):
        result.to_pandas()


def test_collect_of_a_folder_without_a_sweep_is_a_user_error(tmp_path):
    from jersey_ray import sweep

    with pytest.raises(UserError, match=r"holds no sweep\.json"):
        sweep.collect(tmp_path)


# --------------------------------------------------------------------------- notebook bar


def test_console_bar_is_tqdm_auto_in_a_notebook(monkeypatch, capsys):
    from jersey_ray.progress import redraws
    from jersey_ray.sweep.console import Console, in_notebook

    console = Console(4)
    console.setup()
    assert not in_notebook() and not redraws(console._bar)  # captured stderr: log-file lines
    console.on_experiment_end([])

    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert in_notebook()
    console = Console(4)
    console.setup()
    assert redraws(console._bar), "a notebook bar redraws in place"
    console.on_experiment_end([])
    shell.config = {}  # a terminal IPython is no notebook
    assert not in_notebook()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_api_run_end_to_end_and_tunes_best_result_is_the_products(tmp_path, monkeypatch):
    """A real tiny sweep from Python: 1 model, 2 seeds (a choice to make), 1 epoch."""
    import ray
    from ray import tune

    from jersey_ray import sweep
    from jersey_ray.sweep.trainable import run_trial

    root = tmp_path / "data"
    synth.generate(root, sequences=48, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    try:
        result = sweep.run(
            "phaseB",
            quick=True,
            data=root,
            size=(32, 16),
            models="basic_mv3s",
            seeds=[1, 2],
            epochs=1,
            storage=tmp_path / "runs",
            name="api",
            overrides={"deterministic": True},
        )
    finally:
        print(f"sweep.run wall time: {time.perf_counter() - start:.1f} s")
    assert not ray.is_initialized(), "the API shuts down the Ray it started"
    summary = json.loads((tmp_path / "results" / "api" / "summary.json").read_text())
    assert result.records == summary["models"] and result.records[0]["n_finished"] == 2
    assert result.run_dir == tmp_path / "runs" / "api" and result.complete
    assert result.table_md.is_file() and result.summary_json.is_file()
    assert all(p.is_file() for p in result.figures) and result.figures
    run = read_run(result.run_dir)
    chosen = choose_on_validation(run.trials)
    assert result.best is not None and result.best.trial == chosen.dir
    assert result.best.checkpoint is not None and result.best.checkpoint.is_file()
    assert result.best.params["deterministic"] is True
    record = json.loads((result.run_dir / "sweep.json").read_text())
    assert record["settings"]["sources"]["train.deterministic"] == "command line"

    # Tune's own choice, with the TuneConfig the sweep gave it, is the product's
    try:
        grid = tune.Tuner.restore(str(result.run_dir), trainable=run_trial).get_results()
        analysis = grid._experiment_analysis  # the TuneConfig's metric and mode, restored
        assert (analysis.default_metric, analysis.default_mode) == (
            metrics.BEST_VAL_ACC_NUMBER,
            "max",
        )
        best = grid.get_best_result()
        value = chosen.last[metrics.BEST_VAL_ACC_NUMBER]
        assert best.metrics[metrics.BEST_VAL_ACC_NUMBER] == value
        tied = [t.dir for t in run.trials if t.last[metrics.BEST_VAL_ACC_NUMBER] == value]
        # the same trial; on a tie (equal best validation values, both best on validation)
        # Tune takes the first of its own list, the product the first by folder name
        assert Path(best.path).name == chosen.dir or Path(best.path).name in tied[1:]
    finally:
        ray.shutdown()
