"""The processes of ``bench gpu``: each part's command in a session of its own, under a time
limit, its output in a log file; and the check's state (budget, folders, the result so far)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jersey_ray.bench.gpu_report import write_report

STOP_GRACE_S = 15.0  # between SIGINT (Tune and Ray shut down cleanly) and SIGKILL


@dataclass
class Outcome:
    status: str  # ok | failed | timeout
    rc: int | None
    seconds: float


class Running:
    """A part's process, its output in a log file, in a session of its own (so that a time-out
    ends it and everything it started, and nothing else)."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path, env: dict[str, str]) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log.open("wb")
        self.log.write(f"$ {' '.join(cmd)}\n".encode())
        self.log.flush()
        self.start = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self, limit_s: float) -> Outcome:
        try:
            rc = self.proc.wait(timeout=max(self.start + limit_s - time.monotonic(), 0.1))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            self._stop()
            rc, status = None, "timeout"
        finally:
            self.log.close()
        return Outcome(status, rc, time.monotonic() - self.start)

    def _stop(self) -> None:
        for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=grace)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


@dataclass
class Check:
    out: Path
    budget_s: float
    root: Path  # the project (tests/, sweeps/)
    env: dict[str, str]
    cache: str | None = None  # the data part's cache (or --cache)
    data_root: str | None = None  # the data part's data set, for the sweep
    result: dict[str, Any] = field(default_factory=dict)
    start: float = field(default_factory=lambda: time.monotonic())

    @property
    def work(self) -> Path:
        return self.out / "work"

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def run(self, name: str, cmd: list[str], limit: float, cwd: Path | None = None) -> Outcome:
        log = self.out / "logs" / f"{name}.log"
        return Running(cmd, log, cwd or self.root, self.env).wait(limit)

    def save(self) -> None:
        self.result["elapsed_s"] = time.monotonic() - self.start
        write_report(self.result, self.out)


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


def status_of(outcome: Outcome, limit: float, **extra: Any) -> dict[str, Any]:
    reason = {"ok": "", "failed": f"exit code {outcome.rc}", "timeout": "ran out of time"}
    return {
        "status": outcome.status,
        "seconds": outcome.seconds,
        "limit_s": limit,
        "reason": reason[outcome.status],
        **extra,
    }


def skipped(reason: str, limit: float = 0.0) -> dict[str, Any]:
    return {"status": "skipped", "seconds": 0.0, "limit_s": limit, "reason": reason}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
