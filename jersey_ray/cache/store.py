"""The cache on disk: its manifest, shard verification, and installing a finished build.

A cache is a folder (or URI) holding ``manifest.json`` and ``<split>/part-NNNNN.parquet``
shards. The manifest is written last, so a folder without one is never taken for a cache.
:func:`data_config` reads the :class:`~jersey_ray.config.DataConfig` a cache was built with
from its manifest: the one place a trial learns its data settings.

Verification: :func:`verify_cache` hashes every shard (``cache verify``, a standalone trial).
A sweep's driver runs it once through :func:`verify_for_trials`, whose token (the sha256 of the
manifest it verified) lets every trial start, restarts included, run :func:`check_verified`:
the manifest's digest and the shards' sizes, no hashing.

Installing is atomic: a local build renames its temporary folder into place (an old cache is
renamed aside first, then deleted; a concurrent identical build is detected and reused); a URI
build uploads the shards first and the manifest last, then removes stale shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jersey_ray.config import ConfigError, DataConfig, from_dict
from jersey_ray.errors import UserError
from jersey_ray.storage import filesystem, is_nonempty_folder

CACHE_FORMAT = 2  # bump when the stored bytes or the schema change: it enters the fingerprint
MANIFEST = "manifest.json"
SPLIT_FOLDERS = ("train", "val", "test", "unseen")
"""Shard folders in storage order (the data layer's splits; names only, no import needed)."""


class CacheError(UserError):
    """A cache folder is missing, incomplete or corrupt, or cannot be written."""


def cache_filesystem(cache: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """pyarrow file system and base path of a cache location (path or URI)."""
    try:
        return filesystem(cache)
    except UserError as err:
        raise CacheError(str(err)) from None


def read_manifest(cache: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a cache; :class:`CacheError` when there is none or it is unreadable."""
    return _read_manifest(cache)[0]


def _read_manifest(cache: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """(manifest, sha256 of its bytes): the digest names exactly the manifest that was read."""
    fs, base = cache_filesystem(cache)
    path = f"{base}/{MANIFEST}"
    try:
        with fs.open_input_stream(path) as f:
            raw = f.read()
        manifest = json.loads(raw)
    except FileNotFoundError:
        raise CacheError(
            f"{cache}: not a cache (no {MANIFEST}; an interrupted build leaves none); build it "
            f"with `python -m jersey_ray.cache build ROOT --out {cache}`"
        ) from None
    except (OSError, ValueError) as err:
        raise CacheError(f"{cache}/{MANIFEST}: unreadable ({err}); rebuild with --force") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise CacheError(
            f"{cache}: cache format {manifest.get('format')}, this version reads "
            f"{CACHE_FORMAT}; rebuild with `python -m jersey_ray.cache build ROOT --out {cache} "
            "--force`"
        )
    return manifest, hashlib.sha256(raw).hexdigest()


def data_config(manifest: dict[str, Any]) -> DataConfig:
    """The DataConfig a cache was built with (held-out numbers as chosen), from its manifest."""
    try:
        return from_dict(DataConfig, manifest["data"])
    except (KeyError, TypeError, ConfigError) as err:
        raise CacheError(
            f"manifest has no valid data settings ({err}); rebuild with --force"
        ) from None


def splits_of(manifest: dict[str, Any]) -> list[str]:
    """The splits a cache holds, in storage order."""
    return [s for s in SPLIT_FOLDERS if s in manifest["counts"]["splits"]]


def _rebuild_hint(cache: str | os.PathLike, manifest: dict[str, Any]) -> str:
    root = (manifest.get("data") or {}).get("root", "ROOT")
    return f"rebuild with `python -m jersey_ray.cache build {root} --out {cache} --force`"


def shard_digest(fs: pafs.FileSystem, path: str) -> tuple[str, int]:
    """(sha256 hex, bytes) of one file."""
    h, n = hashlib.sha256(), 0
    with fs.open_input_stream(path) as f:
        while chunk := f.read(8 * 2**20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def verify_cache(cache: str | os.PathLike, *, quick: bool = False) -> dict[str, Any]:
    """Check every shard against the manifest; returns the manifest.

    Full check: the file exists, its sha256 and byte count match, its Parquet footer has the
    listed rows. ``quick`` only checks existence and byte counts (what reuse needs). Raises
    :class:`CacheError` naming the bad shard.
    """
    manifest = read_manifest(cache)
    _check_shards(cache, manifest, quick)
    return manifest


def verify_for_trials(cache: str | os.PathLike) -> str:
    """The driver's full check of a cache (:func:`verify_cache`) before a sweep's trials; returns
    the token that lets each trial check the same cache cheaply (:func:`check_verified`): the
    sha256 of the very manifest bytes whose shards were hashed."""
    manifest, digest = _read_manifest(cache)
    _check_shards(cache, manifest, quick=False)
    return digest


def check_verified(cache: str | os.PathLike, token: str) -> dict[str, Any]:
    """A trial's start-up check of a cache the driver verified in full (``token`` from
    :func:`verify_for_trials`): the manifest's sha256 equals the token (the same build, not one
    installed since) and every shard exists with the manifest's byte count; no shard is hashed.
    Returns the manifest; :class:`CacheError` names what changed."""
    manifest, digest = _read_manifest(cache)
    if digest != token:
        raise CacheError(
            f"{cache}: its {MANIFEST} changed since the sweep verified the cache (rebuilt while "
            "the sweep ran?); rerun the sweep with --resume to verify it again"
        )
    _check_shards(cache, manifest, quick=True)
    return manifest


def _check_shards(cache: str | os.PathLike, manifest: dict[str, Any], quick: bool) -> None:
    fs, base = cache_filesystem(cache)
    hint = _rebuild_hint(cache, manifest)
    shards = manifest["shards"]
    # one listing call for all the sizes (one request per shard would be slow on object stores)
    infos = fs.get_file_info([f"{base}/{shard['path']}" for shard in shards])
    for shard, info in zip(shards, infos, strict=True):
        path, name = info.path, shard["path"]
        if info.type != pafs.FileType.File:
            raise CacheError(f"{cache}: shard {name} is missing; {hint}")
        if info.size != shard["bytes"]:
            raise CacheError(
                f"{cache}: shard {name} has {info.size} bytes, manifest says {shard['bytes']}; "
                f"{hint}"
            )
        if quick:
            continue
        digest, _ = shard_digest(fs, path)
        if digest != shard["sha256"]:
            raise CacheError(f"{cache}: shard {name} fails its sha256 check (corrupt); {hint}")
        try:
            rows = pq.read_metadata(path, filesystem=fs).num_rows
        except (OSError, pa.ArrowException) as err:
            raise CacheError(f"{cache}: shard {name} is not Parquet ({err}); {hint}") from None
        if rows != shard["rows"]:
            raise CacheError(
                f"{cache}: shard {name} has {rows} rows, manifest says {shard['rows']}; {hint}"
            )


def reusable(cache: str, fingerprint_: str) -> dict[str, Any] | None:
    """The manifest of a complete cache with this fingerprint at ``cache``, else None."""
    try:
        manifest = read_manifest(cache)
        if manifest.get("fingerprint") != fingerprint_:
            return None
        return verify_cache(cache, quick=True)
    except CacheError:
        return None


def leftovers(out: str) -> list[str]:
    """Temporary folders of interrupted builds next to a local cache."""
    base = Path(out)
    if not base.parent.is_dir():
        return []
    return sorted(str(p) for p in base.parent.glob(f"{base.name}.tmp-*") if p.is_dir())


def check_out(out: str) -> None:
    """Refuse an ``out`` that holds something other than a cache: it would be replaced."""
    try:
        nonempty = is_nonempty_folder(out)
    except UserError as err:
        raise CacheError(str(err)) from None
    fs, base = cache_filesystem(out)
    if nonempty and fs.get_file_info(f"{base}/{MANIFEST}").type != pafs.FileType.File:
        raise CacheError(
            f"{out}: a non-empty folder that is not a cache (no {MANIFEST}); a build would "
            "replace it, so remove it or pick another --out"
        )


def install_local(tmp: Path, dest: Path, fingerprint_: str, force: bool) -> dict | None:
    """Rename ``tmp`` to ``dest``; returns the manifest of an identical cache that a concurrent
    build installed first (then ``tmp`` is deleted and that cache used), else None."""
    for _ in range(20):
        try:
            os.rename(tmp, dest)  # atomic; fails if dest is a non-empty folder
            return None
        except OSError:
            if not dest.exists():
                raise
        other = None if force else reusable(str(dest), fingerprint_)
        if other is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return other
        check_out(str(dest))  # something else may have appeared meanwhile
        aside = dest.with_name(f"{dest.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(dest, aside)
        except FileNotFoundError:
            continue  # another build moved it; try again
        try:
            os.rename(tmp, dest)
            return None
        except OSError:
            continue  # another build got in between; look at what it installed
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    raise CacheError(f"{dest}: could not install the cache (too many concurrent builds?)")


def install_uri(tmp: Path, dest: str, manifest: dict[str, Any]) -> None:
    """Upload a finished local build to ``dest``: old manifest off, shards, manifest last."""
    fs, base = cache_filesystem(dest)
    local = pafs.LocalFileSystem()
    check_out(dest)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(f"{base}/{MANIFEST}")
    fs.create_dir(base, recursive=True)
    for split in SPLIT_FOLDERS:
        if (tmp / split).is_dir():
            fs.create_dir(f"{base}/{split}", recursive=True)
            pafs.copy_files(
                str(tmp / split),
                f"{base}/{split}",
                source_filesystem=local,
                destination_filesystem=fs,
            )
    with fs.open_output_stream(f"{base}/{MANIFEST}") as f:
        f.write(json.dumps(manifest, indent=1).encode())
    listed = {s["path"] for s in manifest["shards"]}
    for split in SPLIT_FOLDERS:
        found = fs.get_file_info(pafs.FileSelector(f"{base}/{split}", allow_not_found=True))
        for info in found:
            rel = f"{split}/{info.base_name}"
            if info.type == pafs.FileType.File and rel not in listed:
                fs.delete_file(info.path)  # a shard of the cache this one replaced


def describe_shards(tmp: Path) -> list[dict[str, Any]]:
    """Path, split, rows, bytes and sha256 of every shard (hashed in parallel: hashlib
    releases the GIL on large buffers)."""
    files = [
        (split, f)
        for split in SPLIT_FOLDERS
        for f in (sorted((tmp / split).glob("*.parquet")) if (tmp / split).is_dir() else [])
    ]
    local = pafs.LocalFileSystem()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        digests = list(pool.map(lambda sf: shard_digest(local, str(sf[1])), files))
    return [
        {
            "path": f"{split}/{f.name}",
            "split": split,
            "rows": pq.read_metadata(f).num_rows,
            "bytes": size,
            "sha256": digest,
        }
        for (split, f), (digest, size) in zip(files, digests, strict=True)
    ]
