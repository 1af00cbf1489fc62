"""Object storage on a real S3 protocol server on the loopback (moto's server, tests/s3_server.py).

The fast tests: the storage check (wrong secret key, missing bucket) as one line before any
work, from Python and from the sweep's command line; the collector reading a run in the bucket
without its checkpoints (moto's request log says what was downloaded). The slow test runs a
sweep with ``--storage s3://...`` on its own Ray cluster, SIGKILLs the driver mid-sweep,
resumes from the bucket, and reads the run back with ``results`` and ``predict``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from fake_runs import standard_run
from s3_server import S3Server, s3_server

from jersey_ray.errors import UserError
from jersey_ray.results.__main__ import main as collect_main
from jersey_ray.results.collect import collect
from jersey_ray.sweep.preflight import check_storage

MISSING_BUCKET = "no-such-bucket"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process points at the server (pyarrow reads the variables per file system)."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def objects(server: S3Server, prefix: str) -> dict[str, int]:
    """Object key (relative to ``prefix``) -> size."""
    fs, base = server.filesystem(), f"{server.bucket}/{prefix}"
    found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1 :]: i.size for i in found if i.type == pafs.FileType.File}


def upload(local: Path, uri: str) -> None:
    fs, base = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(local), base, destination_filesystem=fs)


# --------------------------------------------------------------------------- the storage check


def test_storage_check_passes_and_leaves_nothing(s3_env: S3Server) -> None:
    check_storage(f"s3://{s3_env.bucket}/check")
    assert objects(s3_env, "check") == {}, "the write check removes its object"
    check_storage("relative/local/folder")  # local storage: nothing to check here


def test_storage_check_refuses_a_wrong_secret_key(
    s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(UserError) as err:
        check_storage(f"s3://{s3_env.bucket}/runs")
    text = str(err.value)
    assert text.startswith(f"s3://{s3_env.bucket}/runs: cannot access it (") and "\n" not in text
    assert "ACCESS_DENIED" in text and "AWS_SECRET_ACCESS_KEY" in text, text


def test_storage_check_refuses_a_missing_bucket(s3_env: S3Server) -> None:
    with pytest.raises(UserError, match=f"bucket '{MISSING_BUCKET}' does not exist; create it"):
        check_storage(f"s3://{MISSING_BUCKET}/runs")


@pytest.mark.parametrize(
    "bucket, env, message",
    [
        (MISSING_BUCKET, {}, f"bucket '{MISSING_BUCKET}' does not exist"),
        # the same check as above from Python; here the CLI path, in the slow set
        pytest.param(
            None, {"AWS_SECRET_ACCESS_KEY": "wrong"}, "cannot access it (", marks=pytest.mark.slow
        ),
    ],
    ids=["missing-bucket", "wrong-secret"],
)
def test_sweep_refuses_bad_storage_before_any_work(
    s3: S3Server, tmp_path: Path, bucket: str | None, env: dict, message: str
) -> None:
    storage = f"s3://{bucket or s3.bucket}/refused"
    proc = subprocess.run(
        [sys.executable, "-m", "jersey_ray.sweep", "phaseB", "--quick", "--storage", storage],
        cwd=tmp_path, env={**os.environ, **s3.env(**env)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out
    assert "Traceback" not in out and ("ACCESS_DENIED" in out) == bool(env)
    assert not (tmp_path / "results").exists(), "no data generated, no cache built"
    assert objects(s3, "refused") == {}


# --------------------------------------------------------------------------- reading a run


def _fake_checkpoints(run_dir: Path) -> list[str]:
    """Two checkpoints (an older and the latest) and a TensorBoard file in every trial
    folder: what the readers must leave in the bucket. Returns the checkpoint keys."""
    keys = []
    for trial in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for n in (1, 2):
            ckpt = trial / f"checkpoint_00000{n}"
            ckpt.mkdir()
            (ckpt / "best.pt").write_bytes(os.urandom(4096))
            keys.append(f"{trial.name}/{ckpt.name}/best.pt")
        (trial / "events.out.tfevents.1.host").write_bytes(b"\0" * 1024)
    return keys


def _gets(server: S3Server, prefix: str) -> list[str]:
    start = f"/{server.bucket}/{prefix}/"
    return [p[len(start) :] for m, p, _ in server.requests("GET") if p.startswith(start)]


def test_results_read_an_s3_run_without_its_checkpoints(s3_env: S3Server, tmp_path: Path) -> None:
    run_dir = standard_run(tmp_path / "runs" / "phaseA")
    checkpoints = _fake_checkpoints(run_dir)
    uri = f"s3://{s3_env.bucket}/fake/phaseA"
    upload(run_dir, uri)
    local = collect(run_dir, tmp_path / "local" / "phaseA")
    assert collect_main([uri, "--out", str(tmp_path / "remote" / "phaseA")]) == 0
    remote = json.loads((tmp_path / "remote" / "phaseA" / "summary.json").read_text())
    assert remote["run_dir"] == uri
    for key in ("models", "comparisons", "failed", "unfinished", "skipped", "compute"):
        assert remote[key] == local[key], key
    table = (tmp_path / "remote" / "phaseA" / "table.md").read_text()
    assert table.replace(uri, "RUN") == (tmp_path / "local" / "phaseA" / "table.md").read_text(
    ).replace(run_dir.as_posix(), "RUN")  # fmt: skip
    gets = _gets(s3_env, "fake/phaseA")
    # the collector fetched the chosen trial's latest checkpoint for its figures, nothing else
    fetched = [g for g in gets if "checkpoint_" in g]
    assert fetched == ["seq_ugru_fs-seed42/checkpoint_000002/best.pt"], gets
    assert set(fetched) < set(checkpoints)
    assert not [g for g in gets if "tfevents" in g], gets


def test_results_of_a_missing_s3_run_is_one_line(s3_env: S3Server, capsys) -> None:
    assert collect_main([f"s3://{s3_env.bucket}/nothing/here"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: s3://{s3_env.bucket}/nothing/here/sweep.json not found: pass a sweep's run "
        "folder (<storage>/<name>)"
    )


def test_results_with_wrong_credentials_is_one_line(
    s3_env: S3Server, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert collect_main([f"s3://{s3_env.bucket}/fake/phaseA"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: s3://{s3_env.bucket}/fake/phaseA: cannot read it (") and (
        "\n" not in err
    ), err


# --------------------------------------------------------------------------- end to end

E2E_NAME = "s3cut"
E2E_SEEDS = (1, 2, 3)
E2E_MODEL = "basic_sv2"
E2E_EPOCHS = 2
TRIAL_FILES = ("result.json", "test_predictions.csv", "params.json")
"""What a finished trial left that must not change when the sweep resumes."""


def _rows(fs: pafs.FileSystem, path: str) -> list[dict]:
    try:
        with fs.open_input_stream(path) as src:
            text = src.read().decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _tested(rows: list[dict]) -> bool:
    return bool(rows) and "test_acc_number" in rows[-1]


def _alive_actors(cluster) -> list[str]:
    """The trial actors alive on the cluster (Ray Data's detached system actors, named
    ``_...``, outlive the job that started them by design)."""
    table = cluster.global_state.actor_table(None)
    return [
        f"{a['ActorClassName']} pid {a['Pid']} job {a['JobID']}"
        for a in table.values()
        if a.get("State") == "ALIVE" and not a["ActorClassName"].startswith("_")
    ]


def _wait(
    what: str, check, proc: subprocess.Popen | None, timeout: float, log: Path, state=None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended ({proc.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            more = f"\nstate: {state()}" if state else ""
            pytest.fail(f"no {what} after {timeout:.0f} s:{more}\n{log.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def s3_sweep(s3: S3Server, tmp_path_factory: pytest.TempPathFactory):
    """A sweep on S3, its driver SIGKILLed mid-sweep, then resumed: everything the slow tests
    look at (finished trials' files before the kill, times, request-log marks)."""
    from ray.cluster_utils import Cluster

    from jersey_ray.data import synth

    work = tmp_path_factory.mktemp("s3sweep")
    root = work / "data"
    synth.generate(root, sequences=48, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    # a private Ray temp folder: Ray records the newest cluster's address there, and another
    # process's bare ray.init() on this machine must not find (and join) this test's cluster
    ray_tmp = Path(tempfile.mkdtemp(prefix="jr-s3-ray-", dir="/tmp"))
    env = {
        **s3.env(),
        "RAY_TMPDIR": str(ray_tmp),
        # Ray on Linux resolves 127.0.0.1 to the machine's address; this switch (Ray's own,
        # for one-machine clusters) keeps every Ray address on the loopback
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PYTHONUNBUFFERED": "1",
    }
    storage = f"s3://{s3.bucket}/runs"
    exp = f"{s3.bucket}/runs/{E2E_NAME}"
    fs = s3.filesystem()
    record: dict = {"root": root, "work": work, "storage": storage, "exp": exp, "env": env}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():  # the raylet, hence every trial, inherits these
            mp.setenv(key, value)
        import ray._private.ray_constants as ray_constants  # read at import: set it here too

        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "include_dashboard": False,
                            "node_ip_address": "127.0.0.1"},
        )  # fmt: skip
        try:
            args = [
                sys.executable, "-m", "jersey_ray.sweep", "phaseB", "--data", str(root),
                "--size", "32x16", "--pretrained", "none", "--storage", storage,
                "--name", E2E_NAME, "--models", E2E_MODEL,
                "--seeds", ",".join(map(str, E2E_SEEDS)), "--epochs", str(E2E_EPOCHS),
                "--max-concurrent", "1", "--address", cluster.address,
            ]  # fmt: skip
            first_log = work / "first.log"
            started = time.monotonic()
            with open(first_log, "w") as out:
                proc = subprocess.Popen(
                    args,
                    cwd=work,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                trial = {s: f"{exp}/{E2E_MODEL}-seed{s}" for s in E2E_SEEDS}

                def one_done_one_running() -> bool:
                    rows = {s: _rows(fs, f"{trial[s]}/result.json") for s in E2E_SEEDS}
                    done = [s for s in E2E_SEEDS if _tested(rows[s])]
                    running = [s for s in E2E_SEEDS if rows[s] and not _tested(rows[s])]
                    record["done_before"], record["running_at_kill"] = done, running
                    return bool(done) and bool(running)

                _wait("a finished and a running trial in S3", one_done_one_running, proc, 300,
                      first_log)  # fmt: skip
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
            record["killed_after_s"] = time.monotonic() - started
            # what the finished trials left, read now (the killed driver may have been
            # writing; the files of a finished trial must not change from here on)
            record["before"] = {}
            for s in record["done_before"]:
                for name in TRIAL_FILES:
                    with fs.open_input_stream(f"{trial[s]}/{name}") as src:
                        record["before"][f"seed{s}/{name}"] = src.read()
            # the killed driver's trial actors go with its job; wait until they are gone
            _wait("end of the killed driver's trials", lambda: not _alive_actors(cluster),
                  None, 60, first_log, lambda: _alive_actors(cluster))  # fmt: skip
            resume_log = work / "resume.log"
            started = time.monotonic()
            with open(resume_log, "w") as out:
                resumed = subprocess.run(
                    [*args, "--resume"],
                    cwd=work,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=600,
                )
            record["resume_s"] = time.monotonic() - started
            record["resume_rc"], record["resume_out"] = resumed.returncode, resume_log.read_text()
            record["first_out"] = first_log.read_text()
            record["trial"] = trial
            print(f"s3 sweep: driver killed {record['killed_after_s']:.0f} s after its start "
                  f"(seeds finished {record['done_before']}, running {record['running_at_kill']})"
                  f"; --resume took {record['resume_s']:.0f} s")  # fmt: skip
        finally:
            cluster.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    yield record


def _intervals(rows: list[dict], after: float) -> tuple[float, float] | None:
    """(start, end) wall seconds of a trial's rows reported after ``after``."""
    late = [r for r in rows if r["timestamp"] > after]
    if not late:
        return None
    return late[0]["timestamp"] - late[0]["time_this_iter_s"], late[-1]["timestamp"]


@pytest.mark.slow
def test_s3_sweep_resumes_after_sigkill_with_finished_trials_unchanged(
    s3: S3Server, s3_sweep: dict
) -> None:
    rec, fs = s3_sweep, s3.filesystem()
    assert rec["resume_rc"] == 0, rec["resume_out"]
    assert rec["done_before"] and rec["running_at_kill"], rec["first_out"]
    rows = {s: _rows(fs, f"{rec['trial'][s]}/result.json") for s in E2E_SEEDS}
    assert all(_tested(r) and r[-1]["epoch"] == E2E_EPOCHS for r in rows.values()), rows
    for key, raw in rec["before"].items():
        seed, name = key.split("/")
        with fs.open_input_stream(f"{rec['exp']}/{E2E_MODEL}-{seed}/{name}") as src:
            assert src.read() == raw, f"{key} changed on resume"
    # the table is complete, written locally, from the run in the bucket
    summary = json.loads((rec["work"] / "results" / E2E_NAME / "summary.json").read_text())
    assert summary["run_dir"] == f"{rec['storage']}/{E2E_NAME}"
    (model,) = summary["models"]
    assert model["n_finished"] == len(E2E_SEEDS) and model["seeds"]["missing"] == []
    assert summary["unfinished"] == [] and summary["failed"] == []
    assert f"| {model['display']} |" in rec["resume_out"]
    assert not (rec["work"] / "results" / "runs").exists(), "no local copy of the run"
    # the cache was built beside the runs and read from there by every trial attempt
    assert not (rec["work"] / "results" / "cache").exists()
    manifests = [k for k in objects(s3, "runs/_cache") if k.endswith("/manifest.json")]
    assert len(manifests) == 1, manifests
    cache = f"/{s3.bucket}/runs/_cache/{manifests[0].split('/')[0]}/train/"
    train_gets = [p for m, p, _ in s3.requests("GET") if p.startswith(cache)]
    attempts = sum(
        len(fs.open_input_stream(f"{t}/placement.jsonl").read().splitlines())
        for t in rec["trial"].values()
    )
    assert attempts >= len(E2E_SEEDS) + 1 and len(train_gets) >= attempts, train_gets
    # the resumed sweep kept --max-concurrent 1 (Tune #40652): no two trials ran at once
    resumed_from = max(r[-1]["timestamp"] for s, r in rows.items() if s in rec["done_before"])
    spans = sorted(i for r in rows.values() if (i := _intervals(r, resumed_from)))
    assert len(spans) >= 2, spans
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 1, f"trials overlapped after the resume: {spans}"


def _run_timed(args: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    return proc, time.monotonic() - started


def _checkpoint_gets(s3: S3Server, exp: str, since: int) -> list[str]:
    start = f"/{exp}/"
    return [
        p[len(start) :]
        for m, p, _ in s3.requests()[since:]
        if m == "GET" and p.startswith(start) and "/checkpoint_" in p
    ]


def _chosen_trial(summary_path: Path) -> str:
    notes = json.loads(summary_path.read_text())["figure_notes"]
    return next(n for n in notes if n.startswith("Analysis run:")).split("`")[1]


@pytest.mark.slow
def test_results_cli_reads_the_s3_run_and_only_the_chosen_checkpoint(
    s3: S3Server, s3_sweep: dict
) -> None:
    rec = s3_sweep
    uri, out = f"{rec['storage']}/{E2E_NAME}", rec["work"] / "collected"
    mark = len(s3.requests())
    proc, seconds = _run_timed(
        [sys.executable, "-m", "jersey_ray.results", uri, "--out", str(out)], rec["work"],
        rec["env"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"results {uri}: {seconds:.1f} s")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_dir"] == uri and summary["models"][0]["n_finished"] == len(E2E_SEEDS)
    chosen = _chosen_trial(out / "summary.json")
    fetched = _checkpoint_gets(s3, rec["exp"], mark)
    assert len(fetched) == 1 and fetched[0].startswith(f"{chosen}/checkpoint_"), fetched
    in_bucket = [k for k in objects(s3, f"runs/{E2E_NAME}") if k.endswith("/best.pt")]
    assert len(in_bucket) == len(E2E_SEEDS), "one checkpoint per trial left in the bucket"
    assert not list(out.rglob("*.pt")), "nothing of a checkpoint among the outputs"


@pytest.mark.slow
def test_predict_run_fetches_only_the_chosen_checkpoint(s3: S3Server, s3_sweep: dict) -> None:
    rec = s3_sweep
    uri, out = f"{rec['storage']}/{E2E_NAME}", rec["work"] / "pred" / "predictions.csv"
    mark = len(s3.requests())
    proc, seconds = _run_timed(
        [sys.executable, "-m", "jersey_ray.predict", "--run", uri, str(rec["root"]),
         "--out", str(out), "--no-progress", "--device", "cpu"], rec["work"], rec["env"],
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    print(f"predict --run {uri}: {seconds:.1f} s")
    chosen = next(line for line in text.splitlines() if line.startswith("model: "))
    fetched = _checkpoint_gets(s3, rec["exp"], mark)
    assert len(fetched) == 1 and chosen.split()[1] == fetched[0].split("/")[0], (fetched, chosen)
    cache_gets = [p for m, p, _ in s3.requests()[mark:] if "/_cache/" in p]
    assert cache_gets == [], "predict reads frames from ROOT, not the cache"
    assert len(out.read_text().splitlines()) > 1 and "predicted " in text
