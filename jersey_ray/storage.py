"""Where results and caches live: local paths or pyarrow URIs, atomic JSON, folder checks.

Every command that writes a folder checks it first with :func:`is_nonempty_folder` and refuses
to overwrite what it did not make (each says what to do instead); every JSON file that another
process may read while it is written goes through :func:`write_json`, so a reader never sees
half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from jersey_ray.disk_space import no_space_error
from jersey_ray.errors import UserError


def is_uri(location: str | os.PathLike) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: anything pyarrow opens by scheme."""
    return "://" in str(location)


def filesystem(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system and path of a location (local folder or URI)."""
    if is_uri(location):
        try:
            return pafs.FileSystem.from_uri(str(location))
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{location}: cannot open this storage URI ({err})") from None
    return pafs.LocalFileSystem(), os.path.abspath(location)


def _text(payload: Any, lines: bool) -> str:
    if lines:
        return "".join(json.dumps(row, sort_keys=True) + "\n" for row in payload)
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def write_json(location: str | os.PathLike, payload: Any, *, lines: bool = False) -> None:
    """Write ``payload`` as JSON (``lines``: one JSON object per item) atomically.

    Locally through a temporary file and ``os.replace``; a URI is written as one object, which
    object stores publish atomically.
    """
    text = _text(payload, lines)
    if is_uri(location):
        fs, key = filesystem(location)
        with fs.open_output_stream(key) as out:
            out.write(text.encode())
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
    except OSError as err:  # a full disk: the old file stays, no partial temporary file
        tmp.unlink(missing_ok=True)
        full = no_space_error(err, path, len(text.encode()))
        if full is None:
            raise
        raise full from None
    os.replace(tmp, path)


def read_json(location: str | os.PathLike) -> Any:
    """A JSON file from a local path or a URI."""
    if is_uri(location):
        fs, path = filesystem(location)
        with fs.open_input_stream(path) as src:
            return json.loads(src.read())
    return json.loads(Path(location).read_text(encoding="utf-8"))


def is_nonempty_folder(location: str | os.PathLike) -> bool:
    """Whether ``location`` is a folder with something in it; a file there is a UserError.

    The check every command runs before writing a folder it would otherwise overwrite.
    """
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return False
    if info.type != pafs.FileType.Directory:
        raise UserError(f"{location} exists and is not a folder; pick another output folder")
    return bool(fs.get_file_info(pafs.FileSelector(path)))


CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for an S3-compatible server, "
    "AWS_ENDPOINT_URL (README, cluster section)"
)


def storage_problem(err: OSError) -> str:
    """The first line of a pyarrow storage error, without its request ids."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text.split(" (Request ID:", 1)[0].rstrip(". ")
