"""A lost worker node, for real: a two-node Ray cluster on this machine (``ray start --head``
and ``ray start --address``, one CPU each), the sweep driving it with ``--address``; the
worker's raylet is SIGKILLed while a trial trains there. The trial is retried on the head from
its last checkpoint; no trial is lost or finishes twice; the table is complete.

Placement: each node has one CPU and each trial needs one, so the sweep's two seeds run one per
node; the one on the worker is found by the node id its attempt recorded (placement.jsonl). Its
retry waits for the head's CPU, i.e. for the head's own trial to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from local_cluster import LocalCluster, marked_pids

from jersey_ray import metrics
from jersey_ray.data import synth

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
# Enough work per trial that the worker's trial is still training when its raylet dies, on an
# idle machine too (96 sequences and 3 epochs ended in 16 s there, before the kill).
EPOCHS = 4
SEQUENCES = 480


class Lines:
    """A subprocess's output lines, each with the monotonic time it arrived."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.rows: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.rows.append((time.monotonic(), line.rstrip("\n")))

    def join(self) -> None:
        self._thread.join(timeout=30)

    def first(self, text: str) -> float | None:
        return next((t for t, line in self.rows if text in line), None)

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.rows)


def _wait(what: str, check, timeout_s: float, proc: subprocess.Popen, lines: Lines):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline or proc.poll() is not None:
            time.sleep(0.5)  # the last lines
            raise AssertionError(f"no {what} (exit code {proc.poll()}):\n{lines.text}")
        time.sleep(0.1)
    return found


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def _rows_so_far(path: Path) -> list[dict]:
    """The complete lines of a file being appended to."""
    text = path.read_text() if path.is_file() else ""
    return [json.loads(x) for x in text.splitlines(keepends=True) if x.endswith("\n")]


def test_lost_worker_node_retries_its_trial_on_the_head(tmp_path):
    root = tmp_path / "data"
    synth.generate(root, sequences=SEQUENCES, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    cluster = LocalCluster()
    proc = None
    try:
        cluster.start_head(num_cpus=1)
        cluster.add_worker("worker", num_cpus=1)
        nodes = cluster.wait_for_nodes(2)
        exp = tmp_path / "runs" / "lost"
        args = [
            sys.executable, "-m", "jersey_ray.sweep", "phase0", "--quick", "--data", str(root),
            "--size", "32x16", "--models", "basic_mv3s", "--seeds", "1,2",
            "--epochs", str(EPOCHS), "--pretrained", "none", "--address", cluster.address,
            "--storage", str(tmp_path / "runs"), "--name", "lost",
        ]  # fmt: skip
        env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines = Lines(proc)

        def on_worker() -> str | None:
            # the trial training on the worker, by its node id (in its folder on that node:
            # the storage gets it with its first checkpoint)
            for path in cluster.root.glob("**/placement.jsonl"):
                rows = path.read_text().splitlines()
                if rows and json.loads(rows[0])["node_id"] == nodes["worker"]:
                    return path.parent.name
            return None

        trial = _wait("a trial on the worker", on_worker, 300, proc, lines)
        name = f"phase0/basic_mv3s/seed{trial.rsplit('seed', 1)[1]}"

        def staged() -> list[dict]:  # its result.json as the driver writes it, row by row
            found = list((cluster.root / "head").glob(f"**/driver_artifacts/{trial}/result.json"))
            return _rows_so_far(found[0]) if found else []

        # an epoch the driver has processed: its checkpoint is the trial's latest for Tune
        first = _wait(f"{trial}'s first epoch", staged, 120, proc, lines)
        killed_at = time.monotonic()
        cluster.kill_raylet("worker")
        lost_pid = first[0]["pid"]
        retried = _wait(
            "the retried trial's next epoch",
            lambda: [r for r in staged() if r["pid"] != lost_pid],
            300, proc, lines,
        )  # fmt: skip
        recovered_at = time.monotonic()
        proc.wait(timeout=300)
        lines.join()
        assert proc.returncode == 0, lines.text
        # the driver joined the cluster on the loopback, not at the machine's network address
        assert f"Connecting to existing Ray cluster at address: {cluster.address}" in lines.text
        noticed = lines.first(f"retry  {name}")
        restarted = lines.first(f"resume {name}")
        assert noticed is not None and restarted is not None, lines.text
        # every trial finished once, every epoch reported once: the retry resumed, not restarted
        results = {p.parent.name: _rows(p) for p in exp.glob("*/result.json")}
        assert sorted(results) == ["basic_mv3s-seed1", "basic_mv3s-seed2"], lines.text
        for folder, rows in results.items():
            assert [r[metrics.EPOCH] for r in rows] == list(range(1, EPOCHS + 1)), folder
            assert sum(metrics.TEST_ACC_NUMBER in r for r in rows) == 1, folder
            assert sum(bool(r.get("done")) for r in rows) <= 1, folder
            history = _rows(exp / folder / "metrics.jsonl")
            assert [r[metrics.EPOCH] for r in history] == list(range(1, EPOCHS + 1)), folder
        # the lost attempt's epochs, then the retry's from the next one: resumed, not restarted
        pids = [r["pid"] for r in results[trial]]
        k = pids.index(retried[0]["pid"])
        assert k >= 1 and set(pids[:k]) == {lost_pid} and set(pids[k:]) == {retried[0]["pid"]}
        assert len(list((exp / trial).glob("checkpoint_*"))) == 1
        summary = json.loads((tmp_path / "results" / "lost" / "summary.json").read_text())
        (model,) = summary["models"]
        assert model["n_finished"] == 2, model
        print(
            f"\nkilled after epoch {k}: failure noticed {noticed - killed_at:.1f} s, retry "
            f"started {restarted - killed_at:.1f} s, epoch {k + 1} reported "
            f"{recovered_at - killed_at:.1f} s after the kill"
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        left = cluster.stop()
        assert not left, f"cluster processes left: {left}"
    assert not marked_pids(cluster.marker)
