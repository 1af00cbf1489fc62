"""A full disk: cache builds and trial checkpoints that run out of space.

Two ways to run out, both real: a small tmpfs (mounted by the test where this machine lets it:
root, no container restriction; otherwise that variant is skipped), and ``RLIMIT_FSIZE`` in a
child process (SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing
the process), which works everywhere. The guarantees asserted: a one-line error that names the
path and the space it needed; nothing half-written under a name a later run trusts (no
manifest of a partial cache, no truncated checkpoint, no temporary files left); what was there
before is byte-identical and still loads; the next run, given space, rebuilds or resumes from
the last good checkpoint.

Caches are built with the serial pipeline (tests/serial_cache.py): the same decode, shard
writing, hashing and install as a Ray build, without Ray.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from serial_cache import use_serial_build

from jersey_ray.cache import build as B
from jersey_ray.cache import store as S
from jersey_ray.cache.__main__ import main as cache_main
from jersey_ray.config import DataConfig
from jersey_ray.data import synth
from jersey_ray.disk_space import (
    NoSpaceError,
    check_free,
    disk_full_errno,
    no_space_message,
    write_bytes_atomic,
)
from jersey_ray.storage import write_json
from jersey_ray.train import __main__ as TRAIN
from jersey_ray.train import checkpoint as CK
from jersey_ray.train import loop as L

TESTS = Path(__file__).parent
MB = r"~?\d+(\.\d)? MB"
LINE = re.compile(
    rf"^error: (no space left|file size limit \(ulimit -f\) reached) writing (?P<path>\S+): "
    rf"needed {MB}(, {MB} free)?; .+$"
)
"""The one-line error, as the command line prints it."""


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size)`` mounts a tmpfs of ``size`` bytes and returns its folder; ``grow(size)``
    remounts it larger (the user frees space). Skipped where mounting is not permitted;
    unmounted at teardown, also when the test fails."""
    mounted: list[Path] = []

    class Mount:
        def mount(self, size: int) -> Path:
            where = tmp_path / f"tmpfs{len(mounted)}"
            where.mkdir()
            proc = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
            mounted.append(where)
            return where

        def grow(self, where: Path, size: int) -> None:
            subprocess.run(
                ["mount", "-o", f"remount,size={size}", str(where)], check=True, capture_output=True
            )

    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    yield Mount()
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def limited(limit: int):
    """``preexec_fn`` of a child whose files may not grow past ``limit`` bytes (EFBIG)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run_child(args: list[str], cwd: Path, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, preexec_fn=limited(limit),
    )  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    synth.generate(out, sequences=48, size=(32, 16), frames=(2, 4), seed=3, workers=1,
                   progress=False)  # fmt: skip
    return out


def data(root: Path, size=(32, 16)) -> DataConfig:
    return DataConfig(root=str(root), size=size, max_frames=4)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def error_line(err: str) -> re.Match:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line, no traceback
    match = LINE.match(lines[0])
    assert match, lines[0]
    return match


def no_ray(address):
    raise AssertionError("the free-space check must fail before Ray starts")


# ------------------------------------------------------------------ the pieces


def test_disk_full_is_recognized_through_wrappers():
    class TaskError(Exception):  # Ray's RayTaskError keeps the worker's exception as .cause
        def __init__(self, cause):
            super().__init__("task failed")
            self.cause = cause

    assert disk_full_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert disk_full_errno(TaskError(OSError(errno.EFBIG, "x"))) == errno.EFBIG
    # pyarrow and torch lose the errno but keep the text
    arrow = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert disk_full_errno(arrow) == errno.ENOSPC
    try:
        try:
            raise OSError(errno.EDQUOT, "quota")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert disk_full_errno(outer) == errno.EDQUOT
    assert disk_full_errno(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_errno(ValueError("no")) is None


def test_the_message_names_the_path_and_the_space(tmp_path):
    line = no_space_message(tmp_path / "x" / "best.pt", 3_500_000, errno.ENOSPC)
    free = shutil.disk_usage(tmp_path).free / 1e6
    assert line.startswith(f"no space left writing {tmp_path / 'x' / 'best.pt'}: needed ~3.5 MB, ")
    assert re.search(r", (\d+(\.\d)?) MB free; free space or use --out/--storage elsewhere$", line)
    shown = float(re.search(r", (\S+) MB free", line).group(1))
    assert shown == pytest.approx(free, rel=0.01)
    efbig = no_space_message("s3://b/c", None, errno.EFBIG, hint="raise it")
    assert efbig == "file size limit (ulimit -f) reached writing s3://b/c; raise it"
    check_free(tmp_path, 1)  # plenty
    with pytest.raises(NoSpaceError, match=rf"writing {tmp_path}: needed ~\d+ MB, .* MB free"):
        check_free(tmp_path, 10 * shutil.disk_usage(tmp_path).total)


def test_atomic_writers_keep_the_old_file_on_a_full_disk(tmpfs):
    disk = tmpfs.mount(1 << 20)
    old = disk / "ckpt.bin"
    write_bytes_atomic(old, b"good" * 1000)
    write_json(disk / "rows.json", {"epoch": 1})
    with pytest.raises(NoSpaceError, match=rf"^no space left writing {old}: needed ~2\.0 MB"):
        write_bytes_atomic(old, b"x" * 2_000_000)
    with pytest.raises(NoSpaceError, match=rf"^no space left writing {disk / 'rows.json'}"):
        write_json(disk / "rows.json", {"epoch": 2, "pad": "y" * 2_000_000})
    assert old.read_bytes() == b"good" * 1000
    assert json.loads((disk / "rows.json").read_text()) == {"epoch": 1}
    assert sorted(p.name for p in disk.iterdir()) == ["ckpt.bin", "rows.json"]  # no temporaries


# ------------------------------------------------------------------ cache builds


def test_cache_build_fails_fast_and_keeps_the_cache_beside_it(root, tmpfs, monkeypatch, capsys):
    use_serial_build(monkeypatch)
    disk = tmpfs.mount(2 << 20)
    good = B.build_cache(data(root), disk / "good", progress=False)
    before = snapshot(disk / "good")
    monkeypatch.setattr(B, "_start_ray", no_ray)
    big = data(root, size=(96, 96))  # ~4 MB of frames: more than the 2 MB disk holds
    needed = B.estimate_bytes(B.make_plan(big))
    assert needed > 2 << 20
    argv = ["build", str(root), "--out", str(disk / "big"), "--size", "96x96", "--max-frames", "4"]
    (disk / "big.tmp-0123456789ab").mkdir()  # a killed build's leftover: named in the error
    assert cache_main(argv) == 2
    match = error_line(capsys.readouterr().err)
    assert match["path"] == str(disk / "big")
    assert f"interrupted builds left {disk / 'big.tmp-0123456789ab'}: delete them" in match[0]
    # nothing started, nothing new left
    assert sorted(p.name for p in disk.iterdir()) == ["big.tmp-0123456789ab", "good"]
    assert snapshot(disk / "good") == before
    assert S.verify_cache(disk / "good")["fingerprint"] == good.manifest["fingerprint"]


def test_cache_build_that_fills_the_disk_leaves_no_cache_then_rebuilds(root, tmpfs, monkeypatch):
    use_serial_build(monkeypatch)
    disk = tmpfs.mount(2 << 20)
    B.build_cache(data(root), disk / "good", progress=False)
    before = snapshot(disk / "good")
    monkeypatch.setattr(B, "estimate_bytes", lambda plan: 1)  # the check passes; the disk fills
    with pytest.raises(NoSpaceError) as caught:
        B.build_cache(data(root, size=(96, 96)), disk / "big", progress=False)
    line = str(caught.value)
    assert line.startswith(f"no space left writing {disk / 'big'}: needed ~") and "\n" not in line
    assert sorted(p.name for p in disk.iterdir()) == ["good"]  # no manifest, no partial shards
    with pytest.raises(S.CacheError, match="not a cache"):
        S.read_manifest(disk / "big")
    assert snapshot(disk / "good") == before and S.verify_cache(disk / "good")
    tmpfs.grow(disk, 16 << 20)  # space freed: the next run builds it
    rebuilt = B.build_cache(data(root, size=(96, 96)), disk / "big", progress=False)
    assert not rebuilt.reused and S.verify_cache(disk / "big")["sequences"] == 48


def test_cache_build_past_a_file_size_limit(root, tmp_path):
    """RLIMIT_FSIZE in a child: works without root. A shard outgrows the limit mid-build."""
    out = tmp_path / "big"
    code = (
        "import sys, serial_cache; serial_cache.patch_for_subprocess(); "
        "from jersey_ray.cache.__main__ import main; "
        f"sys.exit(main(['build', {str(root)!r}, '--out', {str(out)!r}, '--size', '96x96', "
        "'--max-frames', '4', '--no-progress']))"
    )
    proc = run_child(["-c", code], tmp_path, limit=1 << 20)  # each shard is ~1.3-1.6 MB
    assert proc.returncode == 2, proc.stderr
    match = error_line(proc.stderr)
    assert match.group(1) == "file size limit (ulimit -f) reached"
    assert match["path"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no cache, no *.tmp-* folder


# ------------------------------------------------------------------ trial checkpoints


@pytest.fixture(scope="module")
def first_epoch(root, tmp_path_factory):
    """A cache and a run of a small model stopped after epoch 1 of 2 (its best.pt and last.pt),
    on a normal disk."""
    with pytest.MonkeyPatch.context() as mp:
        use_serial_build(mp)
        cache = B.build_cache(data(root), tmp_path_factory.mktemp("c") / "cache", progress=False)
    run = tmp_path_factory.mktemp("first") / "run"
    with pytest.MonkeyPatch.context() as mp:  # stopped after epoch 1 of 2, as by a crash
        mp.setenv(L.FAIL_ENV, "2")
        with pytest.raises(RuntimeError, match="injected fault"):
            TRAIN.main(train_args(cache.path, run, epochs=2))
    assert CK.load_checkpoint(run / "last.pt")["epoch"] == 1
    return Path(cache.path), run


def train_args(cache, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "--model", "basic_sv2", "--pretrained", "none", "--device", "cpu", "--cache", str(cache),
        "--out", str(out), "--epochs", str(epochs), "--set", "batch_size=8", *extra,
    ]  # fmt: skip


def rows(run: Path) -> list[dict]:
    timing = {"frames_per_s", "epoch_time_s", "gpu_mem_gb"}
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in timing} for x in lines]


def checkpoints(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in ("best.pt", "last.pt")}


def test_the_local_reporter_keeps_both_old_files_when_the_new_ones_do_not_fit(tmpfs, tmp_path):
    """The reporter's guarantee alone, in milliseconds: the new best.pt fits, the new last.pt
    does not, and neither old file is replaced (never a new best.pt beside an old last.pt)."""
    disk = tmpfs.mount(4 << 20)
    reporter = CK.LocalReporter(disk)
    old = {"best.pt": b"b" * 1_000_000, "last.pt": b"l" * 1_000_000}
    for name, raw in old.items():
        (disk / name).write_bytes(raw)
    staged = tmp_path / "epoch2"
    staged.mkdir()
    (staged / "best.pt").write_bytes(b"B" * 1_000_000)
    (staged / "last.pt").write_bytes(b"L" * 2_500_000)
    with pytest.raises(NoSpaceError) as caught:
        reporter({}, staged)
    line = str(caught.value)
    assert line.startswith(f"no space left writing {disk / 'last.pt'}: needed ~3.5 MB, ")
    assert {p.name: p.read_bytes() for p in disk.iterdir()} == old  # no temporaries either


@pytest.mark.slow  # two short CPU trainings: about a minute on a loaded 2-core box
def test_a_checkpoint_that_does_not_fit_keeps_the_last_good_one(first_epoch, tmpfs, capsys):
    cache, first = first_epoch
    used = sum(len(b) for b in snapshot(first).values())
    ckpt = sum(len(b) for b in checkpoints(first).values())
    disk = tmpfs.mount(used + ckpt // 2)  # epoch 1 fits; staging epoch 2's files beside it not
    run = disk / "run"
    shutil.copytree(first, run)
    good = checkpoints(run)
    capsys.readouterr()
    assert TRAIN.main(train_args(cache, run, 2, "--resume")) == 2
    captured = capsys.readouterr()
    match = error_line(captured.err)
    assert match.group(1) == "no space left" and match["path"].startswith(str(run))
    assert "the last good checkpoint is kept" in captured.err
    assert checkpoints(run) == good  # not truncated, not replaced by half of epoch 2
    assert not list(run.glob(".*.tmp*"))  # no staged leftovers
    assert CK.load_checkpoint(run / "last.pt")["epoch"] == 1
    tmpfs.grow(disk, used + 4 * ckpt)  # space freed: --resume continues from epoch 1
    assert TRAIN.main(train_args(cache, run, 2, "--resume")) == 0
    assert [r["epoch"] for r in rows(run)] == [1, 2]
    assert rows(run)[0] == rows(first)[0]  # epoch 1 is the one that was saved, not redone
    assert CK.load_checkpoint(run / "last.pt")["epoch"] == 2


@pytest.mark.slow  # a child process that imports torch and trains, then a resume
def test_a_checkpoint_past_a_file_size_limit_keeps_the_last_good_one(first_epoch, tmp_path):
    """RLIMIT_FSIZE in a child: the checkpoint's staging write (TMPDIR) fails with EFBIG."""
    cache, first = first_epoch
    run = tmp_path / "run"
    shutil.copytree(first, run)
    good = checkpoints(run)
    limit = min(len(b) for b in good.values()) // 2  # metrics, events, config.json stay below
    args = ["-m", "jersey_ray.train", *train_args(cache, run, 2, "--resume")]
    proc = run_child(args, tmp_path, limit=limit)
    assert proc.returncode == 2, proc.stderr
    match = error_line(proc.stderr)
    assert match.group(1) == "file size limit (ulimit -f) reached"
    assert match["path"].endswith(".pt")
    assert "TMPDIR" in proc.stderr  # where the checkpoint is staged, and what to do
    assert checkpoints(run) == good and not list(run.glob(".*.tmp*"))
    with contextlib.suppress(FileNotFoundError):
        staged = Path(match["path"]).parent
        assert not staged.exists()  # the staging folder is cleaned up
    assert TRAIN.main(train_args(cache, run, 2, "--resume")) == 0  # no limit: it goes on
    assert [r["epoch"] for r in rows(run)] == [1, 2] and rows(run)[0] == rows(first)[0]


def test_a_sweep_trial_whose_checkpoint_upload_fills_the_storage(tmp_path, monkeypatch):
    """Under Tune the checkpoint is copied into the storage by tune.report: a full disk there is
    the same one-line error (in the trial's error.txt; the retry resumes from the checkpoint
    Tune last registered), any other failure stays as it was."""
    from types import SimpleNamespace

    from jersey_ray.sweep import trainable

    staged = tmp_path / "ckpt"
    staged.mkdir()
    (staged / "last.pt").write_bytes(b"x" * 3_000_000)
    trial = tmp_path / "runs" / "s" / "trial"
    monkeypatch.setattr(trainable.tune, "get_context", lambda: SimpleNamespace(
        get_trial_dir=lambda: str(trial)))  # fmt: skip
    failure = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    def report(values, checkpoint):
        raise failure

    monkeypatch.setattr(trainable.tune, "report", report)
    with pytest.raises(NoSpaceError) as caught:
        trainable._report({"epoch": 1}, staged)
    line = str(caught.value)
    assert line.startswith(f"no space left writing {trial}: needed ~3.0 MB, ")
    assert line.endswith("--resume the sweep with --storage elsewhere (its last good checkpoints "
                         "are kept)")  # fmt: skip
    failure = OSError(errno.EACCES, "Permission denied")
    with pytest.raises(OSError, match="Permission denied"):
        trainable._report({"epoch": 1}, staged)


@pytest.mark.slow  # starts Ray: the shards are written by Ray Data tasks in worker processes
def test_a_ray_build_that_fills_the_disk(root, tmpfs, monkeypatch):
    """The real pipeline: the worker's ENOSPC reaches the driver wrapped by Ray (and Ray Data),
    and is still the one-line error, with no partial cache left."""
    ray = pytest.importorskip("ray")
    disk = tmpfs.mount(2 << 20)
    monkeypatch.setattr(B, "estimate_bytes", lambda plan: 1)  # the check passes; the disk fills
    started = not ray.is_initialized()  # reuse a session another module left running
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(NoSpaceError) as caught:
            B.build_cache(data(root, size=(96, 96)), disk / "big", progress=False)
    finally:
        if started:
            ray.shutdown()
    assert str(caught.value).startswith(f"no space left writing {disk / 'big'}: needed ~")
    assert list(disk.iterdir()) == []
