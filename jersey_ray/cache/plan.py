"""Everything a cache build decides before decoding: the index, the frames, the split, the name
and the fingerprint, all derived from one :class:`~jersey_ray.config.DataConfig`.

:func:`cache_name` is the one rule that names a cache folder, so the sweep, ``train --data``
and the benchmarks find the same cache for the same data settings. :func:`fingerprint` hashes
the DataConfig with every file the index saw, so changing a setting or a file means a new build.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jersey_ray.cache.store import CACHE_FORMAT, CacheError
from jersey_ray.config import DataConfig, replace, to_dict

if TYPE_CHECKING:
    from jersey_ray.data.index import Index

DEFAULT_CACHE_ROOT = Path("results/cache")
"""Where local runs keep their caches (a cluster with URI storage caches beside its runs)."""


def resolve_root(data: DataConfig) -> DataConfig:
    """``data`` with its root made absolute, the form every cache key uses."""
    if not data.root:
        raise CacheError("no data root given: pass --data ROOT (the layout ROOT/<jersey>/...)")
    return replace(data, root=str(Path(data.root).resolve()))


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def cache_name(data: DataConfig) -> str:
    """The cache folder name of ``data``: readable settings plus a hash of the whole config.

    ``synthetic-64x32-f6-s42-1a2b3c4d``: data root name, size, frames, split seed, then 8 hex
    digits of the DataConfig (root path included), so any other setting gets its own folder.
    """
    data = resolve_root(data)
    key = json.dumps(to_dict(data), sort_keys=True)
    mode = "" if data.split == "tracks" else f"-{data.split}"
    return (
        f"{Path(data.root).name}-{data.size_text}-f{data.max_frames}-s{data.split_seed}"
        f"{mode}-{_short_hash(key, 8)}"
    )


def cache_location(data: DataConfig, base: str | os.PathLike = DEFAULT_CACHE_ROOT) -> str:
    """``base/<cache_name>``: a local folder (absolute) or a URI under a URI ``base``."""
    from jersey_ray.storage import is_uri

    if is_uri(base):
        return f"{str(base).rstrip('/')}/{cache_name(data)}"
    return str((Path(base) / cache_name(data)).resolve())


@dataclass
class Plan:
    """Everything decided before decoding: the input, its split and the fingerprint."""

    data: DataConfig
    """The requested settings (root absolute)."""
    resolved: DataConfig
    """The settings as built: an automatic held-out choice filled in."""
    index: Index
    assignment: dict[str, str]
    """track -> split."""
    items: list[dict[str, Any]]
    """One per sequence, sorted by (split, seq_id)."""
    fingerprint: str
    frames_selected: int = field(init=False)

    def __post_init__(self) -> None:
        self.frames_selected = sum(len(item["paths"]) for item in self.items)

    @property
    def root(self) -> Path:
        return Path(self.data.root)


def make_plan(data: DataConfig) -> Plan:
    """Index the root, select frames, split tracks and fingerprint the lot."""
    from jersey_ray.data.index import index_root, select_frames
    from jersey_ray.data.split import assign_splits, split_order

    data = resolve_root(data)
    index = index_root(data.root, data.numbers or None)
    assignment, resolved = assign_splits(index.sequences, data)
    order = split_order(assignment)
    items = sorted(
        (
            {
                "seq_id": seq.seq_id,
                "jersey": seq.jersey,
                "track": seq.track,
                "split": assignment[seq.track],
                "tens": seq.tens,
                "ones": seq.ones,
                "paths": select_frames(seq, data.max_frames),
            }
            for seq in index.sequences
        ),
        key=lambda it: (order[str(it["split"])], it["seq_id"]),
    )
    return Plan(data, resolved, index, assignment, items, fingerprint(data, index))


def fingerprint(data: DataConfig, index: Index) -> str:
    """sha256 over the cache format, the DataConfig and the sorted file list (size, mtime).

    The files are all the index saw: every frame of every sequence (selected or not) and every
    skipped entry, so adding, removing or touching any of them changes the fingerprint.
    """
    root = Path(data.root)
    files = sorted(
        {p for s in index.sequences for p in ((s.anchor,) if s.anchor else ()) + s.frames}
    )
    head = {"format": CACHE_FORMAT, "data": to_dict(data)}
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for rel in files:
        try:
            st = os.stat(root / rel)
        except OSError as err:
            raise CacheError(
                f"{root / rel}: {err.strerror}; did the data change while indexing?"
            ) from None
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for skip in sorted(index.skipped, key=lambda s: (s.path, s.reason)):
        h.update(f"skip\0{skip.path}\0{skip.reason}\n".encode())
    return h.hexdigest()
