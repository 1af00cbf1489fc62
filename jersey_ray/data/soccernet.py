"""Convert the SoccerNet jersey-number crops into the reference layout.

Source (``crops.tar.gz`` or the folder it extracts to): ``train/`` and ``test/``, each with
``<tracklet>/<tracklet>_<frame>.jpg`` crops and ``gen-annotations-L.json`` (MMOCR text
recognition: ``{"data_list": [{"img_path": "0/0_1.jpg", "instances": [{"text": "10"}]}]}``).
The two folders are not a split: one tracklet's crops are scattered over both, so they are
merged by tracklet id. Output: ``OUT/<label>/<tracklet>/seq_NNN/<tracklet>_<frame>.jpg``, one
track per tracklet, frames in frame-number order, cut into sequences of consecutive frames.

The archive is read as one gzip stream (no extraction to disk); the crops (about 45 MB for the
real set) are held in memory until the label files, which sit mid-archive, have been read.

Skip reasons (counts are crops unless the name says tracklets): ``unexpected_path``,
``bad_crop_name``, ``unreadable_crop``, ``bad_annotation`` (a crop whose entry has no single
text instance, or an entry without a path), ``not_in_annotations``,
``bad_label`` (not 1-2 digits), ``duplicate_crop`` (same frame in both folders; the ``train/``
copy is kept), ``annotation_without_crop`` (annotation entries), ``tracklets_label_conflict``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import tarfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jersey_ray.data.index import IMAGE_SUFFIXES, natural_key, parse_label
from jersey_ray.errors import UserError
from jersey_ray.progress import bar as progress_bar

FOLDERS = ("train", "test")
ANNOTATIONS = "gen-annotations-L.json"
_CROP = re.compile(r"(?P<track>[^/]+)/(?P=track)_(?P<frame>[0-9]+)\.[A-Za-z]+")


@dataclass
class ImportResult:
    out: Path
    tracklets: int
    sequences: int
    frames: int
    skipped: dict[str, int]

    def summary_line(self) -> str:
        skipped = ", ".join(f"{r} {n}" for r, n in self.skipped.items()) or "none"
        return (
            f"imported {self.tracklets} tracklets ({self.sequences} sequences, "
            f"{self.frames} frames) into {self.out}; skipped: {skipped}"
        )


@dataclass
class _Source:
    """What was read: crop bytes and labels keyed by ``(folder, "<track>/<file>")``."""

    crops: dict[tuple[str, str], bytes] = field(default_factory=dict)
    labels: dict[tuple[str, str], str | None] = field(default_factory=dict)
    found_annotations: set[str] = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)

    def add(self, path: str, read: Callable[[], bytes | None]) -> None:
        """File ``path`` (relative to the source root); ``read()`` returns its bytes."""
        folder, _, rest = re.sub(r"^(\./)+", "", path).partition("/")
        if folder not in FOLDERS:
            self.skipped["unexpected_path"] += 1
        elif rest == ANNOTATIONS:
            self.add_annotations(folder, path, read())
        elif rest.count("/") != 1 or not rest.lower().endswith(IMAGE_SUFFIXES):
            self.skipped["unexpected_path"] += 1
        else:
            data = read()
            if data is None:
                self.skipped["unreadable_crop"] += 1
            else:
                self.crops[folder, rest] = data

    def add_annotations(self, folder: str, path: str, raw: bytes | None) -> None:
        try:
            if raw is None:
                raise TypeError("the file cannot be read")
            entries = json.loads(raw)["data_list"]
            if not isinstance(entries, list):
                raise TypeError("data_list is not a list")
        except (TypeError, ValueError, KeyError) as err:
            raise UserError(f"{path}: not an MMOCR label file ({err}); re-download it") from None
        self.found_annotations.add(folder)
        for entry in entries:
            img_path = entry.get("img_path") if isinstance(entry, dict) else None
            if not isinstance(img_path, str):
                self.skipped["bad_annotation"] += 1
                continue
            try:
                (instance,) = entry["instances"]
                self.labels[folder, img_path] = str(instance["text"])
            except (TypeError, ValueError, KeyError):
                self.labels[folder, img_path] = None  # its crop is counted as bad_annotation


def import_soccernet(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_frames_per_sequence: int = 16,
    force: bool = False,
    progress: bool = True,
) -> ImportResult:
    """Convert ``src`` into the reference layout at ``out``.

    ``out`` appears only when complete: the data is written to ``<out>.tmp-*`` beside it and
    renamed. A non-empty ``out`` is refused unless ``force`` (then it is replaced).
    """
    src, out = Path(src), Path(out)
    if max_frames_per_sequence < 1:
        raise UserError(f"--max-frames-per-sequence must be >= 1, got {max_frames_per_sequence}")
    _check_out(out, force)
    source = _read(src, progress)
    tracklets = _tracklets(source)
    if not tracklets:
        counts = ", ".join(f"{r} {n}" for r, n in sorted(source.skipped.items())) or "nothing"
        raise UserError(f"{src}: no usable crops (skipped: {counts})")
    sequences, frames = _write(tracklets, out, max_frames_per_sequence, progress)
    return ImportResult(
        out, len(tracklets), sequences, frames, dict(sorted(source.skipped.items()))
    )


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out}: exists and is not empty; pass --force to replace it")


def _read(src: Path, progress: bool) -> _Source:
    source = _Source()
    if src.is_dir():
        _read_folder(src, source, progress)
    elif src.is_file():
        _read_archive(src, source, progress)
    else:
        raise UserError(f"{src}: not found; give crops.tar.gz or the folder it extracts to")
    missing = [f for f in FOLDERS if f not in source.found_annotations]
    if len(missing) == len(FOLDERS):
        raise UserError(
            f"{src}: no {'/'.join(FOLDERS)}/{ANNOTATIONS} found; expected the SoccerNet crops "
            "layout train|test/<tracklet>/<tracklet>_<frame>.jpg"
        )
    return source


def _read_archive(src: Path, source: _Source, progress: bool) -> None:
    try:
        with tarfile.open(src, "r|*") as tar:
            bar = progress_bar(tar, desc="reading", unit=" members", disable=not progress)
            for member in bar:
                if member.isfile():
                    source.add(member.name, functools.partial(_read_member, tar, member))
                elif not member.isdir():
                    source.skipped["unreadable_crop"] += 1  # links and devices
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise UserError(f"{src}: cannot read the archive ({err}); re-download it") from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    handle = tar.extractfile(member)
    return None if handle is None else handle.read()


def _read_folder(src: Path, source: _Source, progress: bool) -> None:
    paths = sorted(
        (p for p in src.rglob("*") if not p.is_dir()),
        key=lambda p: natural_key(p.relative_to(src).as_posix()),
    )
    for path in progress_bar(paths, desc="reading", unit=" files", disable=not progress):
        source.add(path.relative_to(src).as_posix(), functools.partial(_read_file, path))


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _tracklets(source: _Source) -> dict[tuple[str, str], list[tuple[str, bytes]]]:
    """``{(label, tracklet): [(file name, bytes), ...]}`` in frame order; counts the skips."""
    crops: dict[str, dict[str, tuple[str, bytes, int]]] = defaultdict(dict)
    skipped = source.skipped
    # train/ before test/, so a crop found in both is kept from train/
    for (folder, rest), data in sorted(
        source.crops.items(), key=lambda kv: FOLDERS.index(kv[0][0])
    ):
        match = _CROP.fullmatch(rest)
        label = source.labels.get((folder, rest))
        if match is None:
            skipped["bad_crop_name"] += 1
        elif (folder, rest) not in source.labels:
            skipped["not_in_annotations"] += 1
        elif label is None:
            skipped["bad_annotation"] += 1
        elif parse_label(label) is None:
            skipped["bad_label"] += 1
        elif rest in crops[match["track"]]:
            skipped["duplicate_crop"] += 1
        else:
            crops[match["track"]][rest] = (label, data, int(match["frame"]))
    orphans = len(source.labels.keys() - source.crops.keys())
    if orphans:
        skipped["annotation_without_crop"] += orphans
    out = {}
    for track in sorted(crops, key=natural_key):
        found = crops[track]
        labels = {label for label, _, _ in found.values()}
        if len(labels) > 1:
            skipped["tracklets_label_conflict"] += 1
            continue
        names = sorted(found, key=lambda n: (found[n][2], n))  # frame numbers are not padded
        out[labels.pop(), track] = [(n.split("/")[1], found[n][1]) for n in names]
    return out


def chunk_sizes(n: int, limit: int) -> list[int]:
    """Cut ``n`` frames into the fewest sequences of at most ``limit``, sizes within one.

    Balanced rather than greedy, so a tracklet of 17 gives 9 + 8, not 16 + 1.
    """
    parts = -(-n // limit)
    return [n // parts + (i < n % parts) for i in range(parts)]


def _write(tracklets: dict, out: Path, limit: int, progress: bool) -> tuple[int, int]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_dir(out, "tmp")
    sequences = frames = 0
    try:
        for (label, track), crops in progress_bar(
            tracklets.items(), desc="writing", unit=" tracklets", disable=not progress
        ):
            start = 0
            for i, size in enumerate(chunk_sizes(len(crops), limit)):
                seq_dir = tmp / label / track / f"seq_{i:03d}"
                seq_dir.mkdir(parents=True)
                for name, data in crops[start : start + size]:
                    _write_new(seq_dir / name, data)
                start += size
                sequences += 1
            frames += len(crops)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sequences, frames


def _write_new(path: Path, data: bytes) -> None:
    # os.open: three system calls per crop where Path.write_bytes makes six (43,822 crops)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _fresh_dir(out: Path, tag: str) -> Path:
    """A new folder beside ``out``; not mkdtemp, whose 0700 mode the output would keep."""
    path = out.with_name(f"{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(3)}")
    path.mkdir()
    return path


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; the old ``out`` (checked before) goes."""
    if out.exists():
        old = _fresh_dir(out, "old")
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
