"""Seed-aware ASHA interrupted mid-rung, for real: the sweep driver is SIGKILLed while a
configuration's seed waits (PAUSED) at a rung for its sibling, with another configuration
already judged there; ``--resume`` ends with the same decisions (``pruned.json``, the
scheduler's whole record) and the same finished rows as an uninterrupted run of the same sweep
(CPU training is seeded and deterministic). ``--max-concurrent 1`` makes seeds arrive one by
one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from local_cluster import MARKER, marked_pids

from jersey_ray import metrics
from jersey_ray.data import synth
from jersey_ray.sweep.asha import PRUNED_FILE, STATE_FILE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
SWEEP_FILE = """
from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="asha_cut", phase="asha_cut", models=("basic_mv3s",), seeds=(1, 2),
    axes={"lr": (3e-2, 1e-3)}, scheduler="asha", grace_period=1, reduction_factor=2,
)
"""
EPOCHS = 2  # one rung, at epoch 1
# Measured: lr 3e-2 learns something by epoch 1 on this data, 1e-3 nothing (0.0 on both seeds),
# so 3e-2 is judged first and kept, and 1e-3 is pruned at epoch 1 once its second seed arrives.
# Tune's bookkeeping and wall-clock figures: the rest of a row is the trial's own result
VOLATILE = {
    "timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "pid", "hostname",
    "node_ip", "date", "training_iteration", "iterations_since_restore", "checkpoint_dir_name",
    "done", "trial_id", "config", metrics.FRAMES_PER_S, metrics.EPOCH_TIME_S,
    metrics.GPU_MEM_GB,
}  # fmt: skip


def _sweep(tmp_path: Path, root: Path, name: str, marker: str, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "jersey_ray.sweep", str(tmp_path / "asha_cut.py"),
        "--data", str(root), "--size", "32x16", "--pretrained", "none",
        "--epochs", str(EPOCHS), "--max-concurrent", "1",
        "--storage", str(tmp_path / "runs"), "--name", name, *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", MARKER: marker}
    return subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def _finished_rows(exp: Path) -> dict[str, dict]:
    """Each trial's last result.json row, without Tune's bookkeeping and timings."""
    out = {}
    for path in sorted(exp.glob("*/result.json")):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        out[path.parent.name] = {k: v for k, v in rows[-1].items() if k not in VOLATILE}
    return out


def _waiting(state: dict) -> list[tuple[str, str, list[str]]]:
    """(rung, config, seeds there) for every config with a seed waiting at a rung, once an
    earlier config was judged there (the decision the waiting one will be compared with)."""
    if not any(state["decisions"].values()):
        return []
    return [
        (rung, group, sorted(seeds))
        for rung, groups in state["recorded"].items()
        for group, seeds in groups.items()
        if group not in state["decisions"][rung] and len(seeds) < 2
    ]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not there yet (or, on a local copy, caught mid-replace)


def test_sigkill_while_a_seed_waits_then_resume_matches_an_uninterrupted_run(tmp_path):
    root = tmp_path / "data"
    synth.generate(root, sequences=96, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    (tmp_path / "asha_cut.py").write_text(SWEEP_FILE)
    marker = uuid.uuid4().hex
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.monotonic()
        procs.append(proc := _sweep(tmp_path, root, "whole", marker))
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        whole_s = time.monotonic() - t0
        whole = tmp_path / "runs" / "whole"

        procs.append(proc := _sweep(tmp_path, root, "cut", marker))
        cut = tmp_path / "runs" / "cut"
        deadline = time.monotonic() + 400
        while not ((state := _read(cut / STATE_FILE)) and _waiting(state)):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no seed ever waited at a rung"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.communicate(timeout=60)
        waiting = _waiting(state)
        done_before = {k for k, row in _finished_rows(cut).items() if metrics.TEST_ACC_NUMBER
                       in row}  # fmt: skip
        for pid in marked_pids(marker):  # what outlived its session: killed, as a crash would
            os.kill(pid, signal.SIGKILL)

        t0 = time.monotonic()
        procs.append(proc := _sweep(tmp_path, root, "cut", marker, "--resume"))
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        resume_s = time.monotonic() - t0

        assert json.loads((cut / PRUNED_FILE).read_text()) == json.loads(
            (whole / PRUNED_FILE).read_text()
        ), out
        resumed, reference = (
            json.loads((cut / STATE_FILE).read_text()),
            json.loads((whole / STATE_FILE).read_text()),
        )
        assert resumed["decisions"] == reference["decisions"]
        assert resumed["recorded"] == reference["recorded"]
        rows, expected = _finished_rows(cut), _finished_rows(whole)
        assert rows == expected
        finished = {k for k, row in expected.items() if metrics.TEST_ACC_NUMBER in row}
        assert finished and len(finished) == 2 * (2 - len(reference["pruned"]))
        assert reference["pruned"], "the scenario lost its pruning: pick a worse lr"
        assert any(g in reference["pruned"] for _, g, _ in waiting), "the waiting config"
        print(
            f"\nuninterrupted {whole_s:.0f} s; killed with {waiting} waiting, "
            f"{len(done_before)} trial(s) finished; resume {resume_s:.0f} s; "
            f"pruned {sorted(reference['pruned'])}"
        )
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for pid in marked_pids(marker):
            os.kill(pid, signal.SIGKILL)
