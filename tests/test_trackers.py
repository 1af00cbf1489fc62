"""--mlflow and --wandb: the option wiring, the one-line errors, and a tiny real Tune experiment
(stub trainable) logged to a local MLflow file store and to W&B in offline mode, read back."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jersey_ray.errors import UserError
from jersey_ray.sweep import trackers
from jersey_ray.sweep.__main__ import build_parser
from jersey_ray.sweep.__main__ import main as sweep_main

needs_trackers = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("mlflow", "wandb")),
    reason="needs jersey-ray[mlflow,wandb] (both in the dev extra)",
)


def parse(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["phaseB", *extra])


# --- options ---------------------------------------------------------------------------------


@needs_trackers
def test_options_take_a_uri_or_folder_and_a_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = parse("--mlflow", "results/mlruns", "--wandb", "jersey")
    assert args.mlflow == (tmp_path / "results" / "mlruns").as_uri()
    assert args.wandb == "jersey"
    assert parse("--mlflow", "http://mlflow.lab:5000").mlflow == "http://mlflow.lab:5000"
    assert parse().mlflow is None and parse().wandb is None
    with pytest.raises(UserError, match="not an MLflow tracking URI"):
        parse("--mlflow", "ftp://host/x")
    with pytest.raises(UserError, match="not a W&B project name"):
        parse("--wandb", "team/project")


@pytest.mark.parametrize(
    ("flag", "value", "extra"), [("--mlflow", "x", "mlflow"), ("--wandb", "p", "wandb")]
)
def test_a_missing_package_fails_before_any_data_work(monkeypatch, capsys, flag, value, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == extra else real(name, *a)
    )
    import jersey_ray.sweep.__main__ as cli

    def no_data_work(*args, **kwargs):
        raise AssertionError("the sweep went past the command line")

    monkeypatch.setattr(cli, "resolve", no_data_work)
    assert sweep_main(["phaseB", flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pip install 'jersey-ray[{extra}]'" in err
    assert err.startswith("error: argument " + flag)


def test_trial_tags_group_the_seeds_of_one_configuration():
    config = {"model": "attn_bgru_hc", "seed": 7, "lr": 0.001, "epochs": 3}
    tags = trackers.trial_tags(config, "phaseB", ("lr",))
    assert tags == {
        "sweep": "phaseB",
        "model": "attn_bgru_hc",
        "seed": "7",
        "lr": "0.001",
        "group": "phaseB/attn_bgru_hc/lr=0.001",
    }
    assert trackers.trial_tags({**config, "seed": 8}, "phaseB", ("lr",))["group"] == tags["group"]


def test_no_tracker_no_callback():
    assert trackers.tracker_callbacks(argparse.Namespace(), "phaseB") == []
    assert trackers.tracker_callbacks(argparse.Namespace(mlflow=None, wandb=None), "x") == []


@needs_trackers
def test_wandb_without_a_login_is_a_one_line_error(tmp_path, monkeypatch):
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_SETUP_API_KEY_HOOK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with pytest.raises(UserError, match=r"^--wandb: ValueError: No WandB API key found"):
        trackers.tracker_callbacks(argparse.Namespace(wandb="jersey"), "phaseB")


# --- a tiny real Tune experiment -------------------------------------------------------------


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run file (LevelDB log format: 7-byte file header, 32 KiB
    blocks of chunks with a 7-byte header each), decoded with W&B's own protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, records, pending = path.read_bytes(), 7, [], b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, size, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + size]
        pos += 7 + size
        if kind in (1, 4):  # a FULL record, or the LAST chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Two models x two seeds, two epochs each, logged to MLflow (file store) and W&B
    (offline) through the callbacks the sweep passes to its Tuner."""
    if not all(importlib.util.find_spec(m) for m in ("mlflow", "wandb")):
        pytest.skip("needs jersey-ray[mlflow,wandb] (both in the dev extra)")
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    root = tmp_path_factory.mktemp("tracked")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wb"), "WANDB_SILENT": "true"}
    # tracker_callbacks opts the driver into MLflow's file store: restored with the rest
    keys = [*env, "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "MLFLOW_ALLOW_FILE_STORE"]
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(env, TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1")
    (root / "wb").mkdir()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        def stub_trial(config):  # nested: Ray pickles it by value (workers can't import tests)
            for epoch in range(1, 3):
                tune.report({"val_acc": config["seed"] / 10 + epoch / 100, "epoch": epoch})

        args = parse("--mlflow", str(root / "mlruns"), "--wandb", "jersey")
        callbacks = trackers.tracker_callbacks(args, "demo", ())
        tuner = tune.Tuner(
            tune.with_resources(stub_trial, {"cpu": 0.5}),
            param_space={
                "model": tune.grid_search(["m1", "m2"]),
                "seed": tune.grid_search([1, 2]),
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
            run_config=tune.RunConfig(
                name="demo",
                storage_path=str(root / "runs"),
                callbacks=[JsonLoggerCallback(), *callbacks],  # as the sweep's Tuner has them
                verbose=0,
            ),
        )
        assert tuner.fit().num_errors == 0
    finally:
        if started:
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return root


@pytest.mark.slow
def test_mlflow_file_store_gets_a_tagged_run_per_trial(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((tracked / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("demo")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    seen = set()
    for run in runs:
        tags, params = run.data.tags, run.data.params
        assert tags["sweep"] == "demo" and tags["group"] == f"demo/{tags['model']}"
        assert (params["model"], params["seed"]) == (tags["model"], tags["seed"])
        history = client.get_metric_history(run.info.run_id, "val_acc")
        seed = int(tags["seed"])
        assert [(m.step, m.value) for m in history] == [
            (1, seed / 10 + 0.01),
            (2, seed / 10 + 0.02),
        ]
        assert not any(k.startswith("config") for k in run.data.metrics)
        seen.add((tags["model"], tags["seed"]))
    assert seen == {("m1", "1"), ("m1", "2"), ("m2", "1"), ("m2", "2")}


def finished_wandb_runs(folder: Path, n: int, timeout_s: float = 120) -> list[list]:
    """The records of the ``n`` offline runs, once each ends with its exit record: W&B's own
    service process finishes writing them after Tune's logging actors are gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [wandb_records(p) for p in sorted(folder.glob("offline-run-*/run-*.wandb"))]
        done = [r for r in runs if r and r[-1].WhichOneof("record_type") == "exit"]
        if len(done) == n or time.monotonic() > deadline:
            return done
        time.sleep(1)


@pytest.mark.slow
def test_wandb_offline_gets_a_grouped_run_per_trial(tracked):
    runs = finished_wandb_runs(tracked / "wb" / "wandb", 4)
    assert len(runs) == 4
    groups = {}
    for records in runs:
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert run.project == "jersey"
        config = {
            (u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in run.config.update
        }
        assert set(run.tags) == {"sweep:demo", f"model:{config['model']}", f"seed:{config['seed']}"}
        assert run.run_group == f"demo/{config['model']}"
        groups.setdefault(run.run_group, []).append(config["seed"])
        history = [
            {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
        assert [h["epoch"] for h in history] == [1, 2]
        assert history[-1]["val_acc"] == pytest.approx(config["seed"] / 10 + 0.02)
    assert {g: sorted(s) for g, s in groups.items()} == {"demo/m1": [1, 2], "demo/m2": [1, 2]}


@pytest.mark.slow
def test_a_restored_sweep_finds_the_callbacks_by_name(tracked):
    """Tuner.restore unpickles tuner.pkl in a new driver: the callbacks must load there."""
    pkl = tracked / "runs" / "demo" / "tuner.pkl"
    code = (
        "import sys, ray.cloudpickle as p; state = p.loads(open(sys.argv[1], 'rb').read()); "
        "print(sorted(type(c).__name__ for c in state['_run_config'].callbacks))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(pkl)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TaggedMLflowLoggerCallback" in out.stdout and "TaggedWandbLoggerCallback" in out.stdout
