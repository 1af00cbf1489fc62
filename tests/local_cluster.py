"""A real multi-node Ray cluster on this machine, for tests: ``ray start --head`` and ``ray start
--address`` as separate processes, loopback only, on free ports and a private temp folder.

Every process of the cluster (the daemons ``ray start`` leaves behind and the workers they spawn)
inherits a marker in its environment, unique to this cluster: :meth:`LocalCluster.stop` kills
exactly those, never another Ray running on the machine (no global ``ray stop``), and
:meth:`LocalCluster.kill_raylet` finds one node's raylet the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

MARKER = "JERSEY_RAY_TEST_CLUSTER"
NODE = "JERSEY_RAY_TEST_NODE"
RAY = Path(sys.executable).parent / "ray"


WORKER_START = (
    "import sys\n"
    "import ray._private.services as services\n"
    "from ray.scripts.scripts import main\n"
    "# joining the head at 127.0.0.1 as given, not at the machine's network address\n"
    "services.resolve_ip_for_localhost = lambda host: host\n"
    "sys.argv = ['ray', *sys.argv[1:]]\n"
    "main()\n"
)
"""``ray start`` for a worker node that stays on the loopback (Ray resolves a 127.0.0.1
``--address`` to the machine's network address on multi-node clusters)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_pids(marker: str, node: str | None = None) -> dict[int, str]:
    """PID -> process name of every live process whose environment carries ``marker``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue  # gone, or not ours to read
        if f"{MARKER}={marker}".encode() not in env:
            continue
        if node is not None and f"{NODE}={node}".encode() not in env:
            continue
        if (entry / "stat").read_text().split(") ")[-1].startswith("Z"):
            continue  # a zombie: dead already
        found[int(entry.name)] = name
    return found


class LocalCluster:
    """A head node and named worker nodes, each with its own CPUs; ``env`` for drivers."""

    def __init__(self) -> None:
        self.marker = uuid.uuid4().hex
        # short: Ray's Unix sockets live under it (a path limit of ~107 characters)
        self.root = Path(tempfile.mkdtemp(prefix="jr-cl-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Token auth follows ~/.ray/auth_token, which another Ray on the machine may write at
        # any time: every process of this cluster states its mode instead.
        # Ray on Linux turns 127.0.0.1 into the machine's network address unless this switch
        # (Ray's own, for one-machine clusters) is 0: every driver and the head stay on the
        # loopback. A worker's `ray start --address` needs it 1, hence WORKER_START.
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            MARKER: self.marker,
        }
        self.log = self.root / "ray-start.log"

    def _start(self, node: str, *args: str, worker: bool = False) -> None:
        env = {**self.env, NODE: node}
        ray_start = [str(RAY), "start"]
        if worker:
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
            ray_start = [sys.executable, "-c", WORKER_START, "start"]
        cmd = [
            *ray_start, *args, "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
            "--temp-dir", str(self.root / node), "--disable-usage-stats",
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
        ]  # fmt: skip
        with open(self.log, "a") as log:
            subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120,
                           check=True)  # fmt: skip

    def start_head(self, num_cpus: int) -> None:
        self._start(
            "head", "--head", "--port", str(self.port), "--num-cpus", str(num_cpus),
            "--include-dashboard=false", "--ray-client-server-port", str(free_port()),
        )  # fmt: skip

    def add_worker(self, node: str, num_cpus: int) -> None:
        self._start(node, "--address", self.address, "--num-cpus", str(num_cpus), worker=True)

    def wait_for_nodes(self, n: int, timeout_s: float = 60) -> dict[str, str]:
        """Until ``n`` nodes are alive (asked from a separate driver process); returns each
        node's name -> Ray node id (which ``ray.get_runtime_context().get_node_id()`` gives)."""
        probe = (
            "import json, ray, sys, time\n"
            f"ray.init(address='{self.address}', include_dashboard=False, log_to_driver=False)\n"
            f"deadline = time.monotonic() + {timeout_s}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {n}:\n"
            "    assert time.monotonic() < deadline, ray.nodes()\n"
            "    time.sleep(0.2)\n"
            "print(json.dumps({n['RayletSocketName']: n['NodeID'] for n in ray.nodes()}))\n"
        )
        done = subprocess.run([sys.executable, "-c", probe], env=self.env, check=True,
                              timeout=timeout_s + 60, capture_output=True, text=True)  # fmt: skip
        sockets = json.loads(done.stdout.strip().splitlines()[-1])
        # a node's raylet socket lives in its own temp folder, self.root / <name>
        return {Path(s).relative_to(self.root).parts[0]: i for s, i in sockets.items()}

    def kill_raylet(self, node: str) -> int:
        """SIGKILL ``node``'s raylet (the node is lost: Ray sees it only by its missing
        heartbeats); returns its PID."""
        raylets = [p for p, name in marked_pids(self.marker, node).items() if name == "raylet"]
        assert len(raylets) == 1, f"{node}: raylets {raylets}"
        os.kill(raylets[0], signal.SIGKILL)
        return raylets[0]

    def stop(self) -> list[int]:
        """Kill every process of this cluster (TERM, then KILL); returns those still alive."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in marked_pids(self.marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while marked_pids(self.marker) and time.monotonic() < deadline:
                time.sleep(0.2)
        left = list(marked_pids(self.marker))
        shutil.rmtree(self.root, ignore_errors=True)
        return left
