"""A real S3 protocol server on the loopback for the object-storage tests: moto's standalone
server (``python -m moto.server``) in its own process, on 127.0.0.1 and a free port.

:func:`s3_server` starts it, creates an IAM user allowed ``s3:*`` and a bucket, then switches
moto's authentication on (``/moto-api/reset-auth``), so a wrong secret key is refused as a real
S3 refuses it. The product, pyarrow and Ray's workers reach it through the standard AWS
variables only (:meth:`S3Server.env`). The server always stops (``finally``), and its request
log (one line per HTTP request) lets a test count what was downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUCKET = "jersey-runs"
REGION = "us-east-1"
LOOPBACK = "127.0.0.1"
REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
"""werkzeug's access log line: ``"GET /bucket/key HTTP/1.1" 200``."""
ANSI = re.compile(r"\x1b\[[0-9;]*m")
"""werkzeug colours some lines (errors, partial content)."""


@dataclass(frozen=True)
class S3Server:
    url: str
    """The endpoint, ``http://127.0.0.1:<port>``."""
    bucket: str
    key_id: str
    secret: str
    log: Path
    """moto's request log."""

    def env(self, **changes: str) -> dict[str, str]:
        """The AWS variables that point a process (and the Ray workers it starts) here; local
        AWS configuration files are kept out."""
        values = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        values.update(changes)
        return values

    def filesystem(self):
        """A pyarrow file system on the server, whatever this process's environment says."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=self.key_id,
            secret_key=self.secret,
            endpoint_override=self.url,
            region=REGION,
        )

    def requests(self, method: str | None = None) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of every request the server has answered so far."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = REQUEST_LINE.search(ANSI.sub("", line))
            if m and (method is None or m["method"] == method):
                found.append((m["method"], m["path"], int(m["status"])))
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto server not up after {timeout:.0f} s: {log.read_text()}")


def _set_up(url: str) -> tuple[str, str]:
    """A bucket and a user allowed s3:*, then authentication on; returns the user's key."""
    import boto3

    setup = {
        "endpoint_url": url,
        "region_name": REGION,
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="jersey")
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}  # fmt: skip
    iam.put_user_policy(UserName="jersey", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="jersey")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
    # from the next request on, every request is authenticated (moto's default is none)
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", method="POST",
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    urllib.request.urlopen(req, timeout=10).close()
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[S3Server]:
    """moto's server on the loopback with a bucket and credentials; stopped on exit."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log = workdir / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            start_new_session=True,
        )
    try:
        _wait_until_up(url, proc, log)
        key_id, secret = _set_up(url)
        yield S3Server(url, BUCKET, key_id, secret, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
