"""The sweep runner end to end on CPU: table, resume after SIGINT, retry after a fault,
refusal to overwrite, preflight errors, and a two-node cluster on one machine.

Each Tune run here is tiny (32x16 frames, a few dozen sequences, 1-2 epochs) but real: Ray
starts, trials run in worker processes, checkpoints and result files are written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from jersey_ray import metrics
from jersey_ray.data import synth
from jersey_ray.sweep.__main__ import main
from jersey_ray.sweep.settings import load_sweep
from jersey_ray.sweep.tuner import trial_dirname, trial_name

MODELS = "attn_ugru_gate,basic_sv2"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    synth.generate(root, sequences=48, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    return root


def sweep_args(root: Path, storage: Path, name: str, *extra: str) -> list[str]:
    return [
        "phaseB", "--data", str(root), "--size", "32x16", "--pretrained", "none",
        "--storage", str(storage), "--name", name, "--models", MODELS, *extra,
    ]  # fmt: skip


def run_cli(args: list[str], cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "jersey_ray.sweep", *args],
        cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw,
    )  # fmt: skip


def results(exp: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(exp.glob("*/result.json")):
        out[path.parent.name] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def finished(rows: list[dict]) -> bool:
    return bool(rows) and metrics.TEST_ACC_NUMBER in rows[-1]


def test_sweep_end_to_end_writes_the_table(tiny_root, tmp_path):
    args = sweep_args(tiny_root, tmp_path / "runs", "e2e", "--seeds", "1,2", "--epochs", "2")
    proc = run_cli(args, tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    exp = tmp_path / "runs" / "e2e"
    rows = results(exp)
    assert sorted(rows) == [
        "attn_ugru_gate-seed1", "attn_ugru_gate-seed2", "basic_sv2-seed1", "basic_sv2-seed2",
    ]  # fmt: skip
    assert all(finished(r) and [x[metrics.EPOCH] for x in r] == [1, 2] for r in rows.values())
    assert "tensorboard --logdir" in out and "| UniGRU + gate (softmax) |" in out
    summary = json.loads((tmp_path / "results" / "e2e" / "summary.json").read_text())
    by_id = {m["id"]: m for m in summary["models"]}
    assert by_id["basic_sv2"]["n_finished"] == 2
    values = sorted(r[-1][metrics.TEST_ACC_NUMBER] for k, r in rows.items() if "basic_sv2" in k)
    assert sorted(by_id["basic_sv2"]["test_acc_number"]["values"]) == pytest.approx(values)
    record = json.loads((exp / "sweep.json").read_text())
    assert record["finished"] and record["models"] == MODELS.split(",")
    events = list((exp / "basic_sv2-seed1").glob("events.out.tfevents.*"))
    assert len(events) == 1, "the trial's own TensorBoard events, not Tune's duplicates too"
    assert "Checkpoint successfully created" not in out
    # the console callback speaks for the sweep; Tune's own boxes only with --verbose
    assert "Configuration for experiment" not in out and "Trial status" not in out, out
    assert "done   phaseB/basic_sv2/seed1, best val acc_number" in out, out
    assert "Last sync command failed" not in out  # Tune's driver sync racing a staged file
    assert (exp / "basic_sv2-seed1" / "progress.csv").is_file()
    checkpoints = list((exp / "basic_sv2-seed1").glob("checkpoint_*/best.pt"))
    assert len(checkpoints) == 1 and not list(exp.glob("*/checkpoint_*/last.pt"))


def test_rerun_without_resume_refuses_and_keeps_files(tiny_root, tmp_path):
    storage = tmp_path / "runs"
    (storage / "taken").mkdir(parents=True)
    (storage / "taken" / "tuner.pkl").write_bytes(b"x")
    proc = run_cli(sweep_args(tiny_root, storage, "taken"), tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "already holds sweep 'taken'; continue it with --resume" in out
    assert (storage / "taken" / "tuner.pkl").read_bytes() == b"x"


@pytest.mark.slow
def test_resume_after_sigint_keeps_finished_trials(tiny_root, tmp_path):
    storage = tmp_path / "runs"
    args = sweep_args(tiny_root, storage, "cut", "--seeds", "1,2", "--epochs", "2",
                      "--max-concurrent", "1")  # fmt: skip
    proc = run_cli(args, tmp_path, start_new_session=True)
    exp = storage / "cut"
    deadline = time.time() + 300
    while time.time() < deadline and not any(finished(r) for r in results(exp).values()):
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    before = {k: (exp / k / "result.json").read_bytes() for k, r in results(exp).items()
              if finished(r)}  # fmt: skip
    assert 1 <= len(before) < 4, out
    proc = run_cli([*args, "--resume"], tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "Failed to fetch metrics" not in out, "trials not yet started are no failure"
    after = results(exp)
    assert len(after) == 4 and all(finished(r) for r in after.values()), out
    for key, raw in before.items():
        assert (exp / key / "result.json").read_bytes() == raw, f"{key} was re-run"


@pytest.mark.slow
def test_injected_fault_is_retried_from_the_checkpoint(tiny_root, tmp_path):
    args = sweep_args(tiny_root, tmp_path / "runs", "faulty", "--seeds", "1", "--epochs", "2",
                      "--models", "basic_sv2")  # fmt: skip
    proc = run_cli(args, tmp_path, env={"JERSEY_RAY_FAIL_AT_EPOCH": "2"})
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    trial = tmp_path / "runs" / "faulty" / "basic_sv2-seed1"
    assert (trial / ".fault_injected").exists()
    rows = results(trial.parent)["basic_sv2-seed1"]
    assert finished(rows) and rows[-1][metrics.EPOCH] == 2
    attempts = (trial / "placement.jsonl").read_text().splitlines()
    assert len(attempts) == 2, "one failed attempt, one retry"
    from jersey_ray.results import predictions, runs

    skipped: list = []  # the retried trial's predictions agree with what it reported
    found = predictions.read_trial(runs.read_run(trial.parent).trials[0], "test", skipped)
    assert found is not None and skipped == [], skipped


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--models", "nope"], "unknown model id 'nope'"),
        (["--data", "/no/such/folder"], "--data /no/such/folder is not a folder"),
        (["--pretrained", "imagenet"], "--pretrained none"),
    ],
)
def test_preflight_errors_are_one_line(tiny_root, tmp_path, extra, message):
    args = sweep_args(tiny_root, tmp_path / "runs", "bad") + extra
    env = {"TORCH_HOME": str(tmp_path / "empty-torch-home"), "HF_HUB_OFFLINE": "1"}
    proc = run_cli(args, tmp_path, env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out
    assert "Traceback" not in out
    assert not (tmp_path / "runs" / "bad" / "tuner.pkl").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--models", "basic_r18,foo"], "unknown model id 'foo'"),
        (["--epochs", "0"], "--epochs: expected a whole number >= 1"),
        (["--gpus-per-trial", "1.5"], "a trial trains on one device; use a fraction <= 1"),
        (["--gpus-per-trial", "2"], "--gpus-per-trial 2: a trial trains on one device"),
        (["--set", "no_such_key=1"], "command line: unknown TrainConfig key(s) no_such_key"),
        (["--gpus-per-trial", "0.5"], "this machine has no GPU"),
        (["--set-nothing"], "unrecognized arguments"),
    ],
)
def test_cheap_checks_come_before_the_synthetic_data(tmp_path, extra, message):
    """Without --data the sweep would generate data first: a bad option must fail before."""
    if "0.5" in extra and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    proc = run_cli(["phaseB", "--quick", "--storage", str(tmp_path / "runs"), *extra], tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out
    assert not (tmp_path / "results").exists(), "no data was generated, no cache built"


def test_corrupt_cache_is_refused_before_any_trial(tiny_root, tmp_path):
    def args(name: str) -> list[str]:
        return sweep_args(tiny_root, tmp_path / "runs", name, "--seeds", "1", "--epochs", "1",
                          "--models", "basic_sv2")  # fmt: skip

    # the cache the sweep would build, built here (cheaper than a first sweep); the reuse is
    # asserted: the sweep must refuse this very cache, not build another beside it
    from jersey_ray.cache.build import build_cache
    from jersey_ray.cache.plan import cache_location
    from jersey_ray.sweep.__main__ import build_parser, options_from_args
    from jersey_ray.sweep.launch import with_root
    from jersey_ray.sweep.settings import FULL, resolve

    opts = options_from_args(build_parser().parse_args(args("second")))
    data = with_root(resolve(load_sweep("phaseB"), FULL, opts), opts).data
    cache = build_cache(data, cache_location(data, str(tmp_path / "results" / "cache")),
                        progress=False)  # fmt: skip
    shard = next(Path(cache.path).glob("train/*.parquet"))
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    out, _ = (proc := run_cli(args("second"), tmp_path)).communicate(timeout=300)
    assert proc.returncode == 2, out
    assert shard.name in out and "Traceback" not in out
    assert [p.name for p in (tmp_path / "results" / "cache").iterdir()] == [Path(cache.path).name]
    assert not (tmp_path / "runs" / "second" / "tuner.pkl").exists()


@pytest.mark.slow
def test_two_node_cluster_spreads_trials(tiny_root, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        args = sweep_args(tiny_root, tmp_path / "runs", "twonode", "--seeds", "1,2",
                          "--epochs", "1", "--models", "basic_sv2",
                          "--address", cluster.address)  # fmt: skip
        proc = run_cli(args, tmp_path)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        exp = tmp_path / "runs" / "twonode"
        rows = results(exp)
        assert len(rows) == 2 and all(finished(r) for r in rows.values()), out
        nodes = {json.loads(p.read_text().splitlines()[0])["node_id"]
                 for p in exp.glob("*/placement.jsonl")}  # fmt: skip
        assert len(nodes) == 2, "each node ran one trial"
    finally:
        cluster.shutdown()


def test_sweeps_are_data_and_trial_names_are_readable():
    spec = load_sweep("phaseB")
    assert spec.phase == "phaseB" and len(spec.models) == 6 and spec.seeds[0] == 42

    trial = SimpleNamespace(config={"model": "attn_bgru_luong", "seed": 42, "lr": 0.001})
    assert trial_name(trial, "phaseB", ()) == "phaseB/attn_bgru_luong/seed42"
    assert trial_dirname(trial, ("lr",)) == "attn_bgru_luong-lr=0.001-seed42"
    # an axis over runs to start from: no "/" in a folder name, two runs named alike kept apart
    runs = ("results/runs/synth", "/data/other/runs/synth")
    names = {
        trial_dirname(
            SimpleNamespace(config={"model": "m", "seed": 1, "pretrained": r}), ("pretrained",)
        )
        for r in runs
    }
    assert names == {
        "m-pretrained=results_runs_synth-seed1",
        "m-pretrained=data_other_runs_synth-seed1",
    }
    assert main(["no_such_sweep"]) == 2


def test_gpu_share_that_cannot_hold_a_trial_is_refused():
    from jersey_ray.errors import UserError
    from jersey_ray.sweep.preflight import check_gpu_share
    from jersey_ray.sweep.resources import Plan

    gb = 10**9
    check_gpu_share(Plan(4, 0.25, 4), 15 * gb, (80 * gb, 80 * gb))  # 20 GB share holds 15 GB
    check_gpu_share(Plan(1, 0.0, 2), 15 * gb, None)  # CPU trials: nothing to check
    with pytest.raises(UserError, match=r"gives 10\.0 GB per trial .* needs about 15\.0 GB"):
        check_gpu_share(Plan(4, 0.125, 8), 15 * gb, (80 * gb, 80 * gb))
    with pytest.raises(UserError, match=r"5\.0 GB of 80\.0 GB is free"):
        check_gpu_share(Plan(4, 0.25, 4), 1 * gb, (5 * gb, 80 * gb))


def test_ray_that_does_not_start_is_one_line(monkeypatch):
    import ray

    from jersey_ray.errors import UserError
    from jersey_ray.sweep import tuner

    def overloaded(**_: object) -> None:
        raise Exception("The current node timed out during startup. This could happen ...")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", overloaded)
    with pytest.raises(UserError, match=r"did not start in time.*ray start --head"):
        tuner.init_ray(None)

    def other(**_: object) -> None:
        raise Exception("something else")

    monkeypatch.setattr(ray, "init", other)
    with pytest.raises(Exception, match="something else"):
        tuner.init_ray(None)


def test_every_built_in_sweep_file_loads_and_names_a_reference_it_runs():
    import itertools

    from jersey_ray.models import REGISTRY
    from jersey_ray.results.runs import Trial, _assign_configs
    from jersey_ray.sweep.settings import available_sweeps

    names = available_sweeps()
    assert {"compositional", "synth_pretrain", "synth_to_real", "phaseB"} <= set(names)
    for name in names:
        spec = load_sweep(name)
        assert spec.models and all(m in REGISTRY for m in spec.models), name
        if spec.search != "grid" or not spec.reference or spec.reference.startswith("best:"):
            continue  # a search names configurations by sampled values; best:<phase> is a run
        combos = list(itertools.product(*spec.axes.values()))
        trials = [
            Trial(
                "t",
                Path("."),
                {"model": m, "seed": 1, **dict(zip(spec.axes, c, strict=True))},
                m,
                1,
                [],
                None,
            )
            for m in spec.models
            for c in combos
        ]
        _assign_configs(trials)
        assert spec.reference in {t.config for t in trials}, name
