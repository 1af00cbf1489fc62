"""A run folder in object storage (``s3://bucket/runs/<name>``), read without its checkpoints.

The collector and ``predict`` read a few small files per trial; a trial folder also holds its
checkpoints (megabytes each) and TensorBoard events. :func:`mirror_run` lists the run once and
copies only the small files (``*.json``, ``*.csv``, ``*.txt`` at the run's top level and in its
trial folders, never inside a ``checkpoint_*`` folder) to a local folder that lives as long as
the process; :func:`fetch_file` brings one checkpoint file when a reader chose it.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from jersey_ray.errors import UserError
from jersey_ray.storage import CREDENTIALS_HINT, filesystem, storage_problem

log = logging.getLogger(__name__)

SMALL_SUFFIXES = (".json", ".csv", ".txt")
"""What a reader of a run may need: records, results, predictions, error texts."""
CHECKPOINT_BEST = "best.pt"
"""The one checkpoint file readers load (:func:`jersey_ray.train.checkpoint.load_model`)."""
PARALLEL_GETS = 8
"""Small files fetched at once: object stores answer each GET with some latency."""


@dataclass(frozen=True)
class Mirror:
    """The local copy of a run's small files and what the run holds besides."""

    local: Path
    """The local folder: the run's layout, small files only."""
    checkpoints: dict[str, tuple[str, ...]]
    """Trial folder (relative) -> its ``checkpoint_*/best.pt`` paths (relative to the trial
    folder, sorted: the names are zero-padded), left in storage until fetched."""
    files: int
    """Small files copied."""
    bytes: int
    """Their bytes."""


def _storage_error(uri: str, err: OSError) -> UserError:
    return UserError(f"{uri}: cannot read it ({storage_problem(err)}); {CREDENTIALS_HINT}")


def _scratch() -> Path:
    """A local folder removed when the process ends (readers keep paths into it)."""
    path = Path(tempfile.mkdtemp(prefix="jersey-ray-run-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _wanted(rel: PurePosixPath) -> bool:
    """A small file at the top level or in a trial folder, never inside a checkpoint."""
    return len(rel.parts) <= 2 and rel.suffix in SMALL_SUFFIXES


def mirror_run(uri: str) -> Mirror:
    """Copy ``uri``'s small files to a local folder; list (not copy) its checkpoints.

    A missing ``sweep.json``, a missing bucket or wrong credentials are one-line UserErrors.
    """
    fs, base = filesystem(uri)
    base = base.rstrip("/")
    try:
        listing = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as err:
        raise _storage_error(uri, err) from None
    files = {
        PurePosixPath(info.path[len(base) + 1 :]): info.size or 0
        for info in listing
        if info.type == pafs.FileType.File
    }
    if PurePosixPath("sweep.json") not in files:
        raise UserError(f"{uri}/sweep.json not found: pass a sweep's run folder (<storage>/<name>)")
    checkpoints: dict[str, list[str]] = {}
    for rel in files:  # <trial>/checkpoint_NNNNNN/best.pt
        if (
            len(rel.parts) == 3
            and rel.parts[1].startswith("checkpoint_")
            and rel.name == CHECKPOINT_BEST
        ):
            checkpoints.setdefault(rel.parts[0], []).append("/".join(rel.parts[1:]))
    wanted = sorted(rel for rel in files if _wanted(rel))
    local = _scratch() / PurePosixPath(base).name

    def copy(rel: PurePosixPath) -> None:
        dest = local / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(f"{base}/{rel}") as src:
            dest.write_bytes(src.read())

    try:
        with ThreadPoolExecutor(max_workers=PARALLEL_GETS) as pool:
            list(pool.map(copy, wanted))
    except OSError as err:
        raise _storage_error(uri, err) from None
    total = sum(files[rel] for rel in wanted)
    log.debug("%s: %d small files (%d bytes) read into %s", uri, len(wanted), total, local)
    return Mirror(
        local=local,
        checkpoints={k: tuple(sorted(v)) for k, v in checkpoints.items()},
        files=len(wanted),
        bytes=total,
    )


def fetch_file(uri: str, dest: Path) -> Path:
    """Copy one file from storage to ``dest`` (a checkpoint a reader chose); returns ``dest``."""
    fs, path = filesystem(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with fs.open_input_stream(path) as src, open(dest, "wb") as out:
            while chunk := src.read(8 * 2**20):
                out.write(chunk)
    except OSError as err:
        dest.unlink(missing_ok=True)
        raise _storage_error(uri, err) from None
    log.info("fetched %s (%d bytes)", uri, dest.stat().st_size)
    return dest
