"""Running out of disk space: one line that names the path and the space it needed, and
writes that never leave a half-written file under the final name.

Every writer of something a later run trusts (cache shards and manifest, checkpoints, JSON
records) writes to a temporary name and renames it into place, so a full disk leaves the last
good version intact; :func:`no_space_error` turns the ``OSError`` (``ENOSPC``, ``EDQUOT``, or
``EFBIG`` under a file-size limit such as ``ulimit -f``) into a :class:`NoSpaceError` the
command line prints as one line. :func:`check_free` fails fast where the space a job needs is
known before it starts (a cache build estimates it from its plan).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from jersey_ray.errors import UserError

DISK_FULL = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded",
             errno.EFBIG: "file size limit (ulimit -f) reached"}  # fmt: skip
"""errno -> what the one-line error says."""
_MESSAGES = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
             "File too large": errno.EFBIG}  # fmt: skip
"""strerror texts, for errors that lost their errno on the way (Ray tasks, pyarrow, torch)."""
DEFAULT_HINT = "free space or use --out/--storage elsewhere"


class NoSpaceError(UserError):
    """A write failed because the disk (or the process's file-size limit) is full."""


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent); None
    where that cannot be told (a URI, no existing parent)."""
    if "://" in str(path):
        return None
    here = Path(os.path.abspath(path))
    for candidate in (here, *here.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def disk_full_errno(err: BaseException) -> int | None:
    """The disk-full errno behind ``err`` (followed through causes, contexts and Ray's
    wrapped task errors), else None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        code = getattr(e, "errno", None)
        if code in DISK_FULL:
            return code
        text = str(e)
        for message, by_text in _MESSAGES.items():
            if message in text:
                return by_text
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}" if n < 10e6 else f"{n / 1e6:.0f}"


def no_space_message(
    path: str | os.PathLike, needed: int | None, code: int = errno.ENOSPC, hint: str = DEFAULT_HINT
) -> str:
    """``no space left writing PATH: needed ~N MB, M MB free; HINT``."""
    free = free_bytes(path)
    parts = []
    if needed is not None:
        parts.append(f"needed ~{_mb(needed)} MB")
    if free is not None:
        parts.append(f"{_mb(free)} MB free")
    detail = f": {', '.join(parts)}" if parts else ""
    return f"{DISK_FULL.get(code, DISK_FULL[errno.ENOSPC])} writing {path}{detail}; {hint}"


def no_space_error(
    err: BaseException, path: str | os.PathLike, needed: int | None, hint: str = DEFAULT_HINT
) -> NoSpaceError | None:
    """A :class:`NoSpaceError` for ``err`` if it is a full disk, else None (re-raise ``err``)."""
    if isinstance(err, NoSpaceError):
        return err
    code = disk_full_errno(err)
    if code is None:
        return None
    return NoSpaceError(no_space_message(path, needed, code, hint))


def check_free(
    path: str | os.PathLike, needed: int, hint: str = DEFAULT_HINT, margin: float = 1.1
) -> None:
    """Fail fast with the one-line error when ``path``'s file system has less free space than
    ``needed`` bytes (times ``margin``, for metadata and estimates that run short)."""
    free = free_bytes(path)
    if free is not None and free < needed * margin:
        raise NoSpaceError(no_space_message(path, int(needed * margin), errno.ENOSPC, hint))


def write_bytes_atomic(
    path: str | os.PathLike, data: bytes | memoryview, hint: str = DEFAULT_HINT
) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename: a failed write (a full
    disk) leaves the file that was there before untouched and no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        full = no_space_error(err, path, len(data), hint) if isinstance(err, OSError) else None
        if full is not None:
            raise full from None
        raise
