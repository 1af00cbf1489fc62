"""Index a data root in the reference layout ``ROOT/<jersey>/<track>/<sequence>/*.jpg``.

The walk is sorted at every level, so the index (and everything derived from it: the split, the
cache) does not depend on the order the file system lists entries in. Bad input is skipped and
counted by reason (:attr:`Index.skipped`); only an index with no valid sequence is an error.

Skip reasons: ``bad_jersey_folder`` (not 1-2 digits), ``excluded_number`` (outside ``numbers``),
``wrong_depth`` (a file above the sequence level, a folder inside a sequence), ``not_an_image``,
``empty_sequence`` (no image), ``empty_folder`` (an empty jersey or track folder),
``extra_anchor`` (a second anchor file in one sequence), ``symlink_loop`` (a folder reached
through a link that resolves to one of its ancestors, or reached a second time), ``broken_link``,
``unreadable_folder``.

Labels are the jersey folder names. With ``allow_unknown`` (prediction on new footage, never
training) a jersey folder named ``unknown`` holds unlabelled tracks: its sequences carry
:data:`NO_LABEL` for both digits.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jersey_ray.errors import UserError
from jersey_ray.metrics import BLANK

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT = "ROOT/<jersey>/<track>/<sequence>/*.jpg (jersey folders named by 1-2 digits)"
UNKNOWN = "unknown"
"""The jersey folder of unlabelled tracks, when the index allows it."""
NO_LABEL = -1
"""``tens`` and ``ones`` of an unlabelled sequence."""

_JERSEY = re.compile(r"[0-9]{1,2}")
_DIGITS = re.compile(r"([0-9]+)")


class DataError(UserError):
    """The data root holds nothing usable (or is not a folder)."""


def parse_label(jersey: str) -> tuple[int, int] | None:
    """``(tens, ones)`` of a jersey folder name, ``None`` unless it is 1-2 ASCII digits.

    One digit has a blank tens digit: ``"7" -> (BLANK, 7)``; ``"07" -> (0, 7)`` is a different
    class.
    """
    if not _JERSEY.fullmatch(jersey):
        return None
    if len(jersey) == 1:
        return BLANK, int(jersey)
    return int(jersey[0]), int(jersey[1])


def label_digits(jersey: str) -> tuple[int, int]:
    """:func:`parse_label` of a label already known to be a number; ``ValueError`` if not."""
    digits = parse_label(jersey)
    if digits is None:
        raise ValueError(f"{jersey!r} is not a jersey number")
    return digits


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``"f2" < "f10"``, ``"0_2.jpg" < "0_11.jpg"``.

    Text runs compare case-insensitively; the name itself breaks the remaining ties (``"f02"``
    against ``"f2"``), so the order is total and reproducible.
    """
    parts = _DIGITS.split(name)
    # re.split with a group puts text at even and digit runs at odd positions, so two keys
    # never compare a str with an int
    key = tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts))
    return key, name


def class_key(jersey: str) -> tuple[int, str]:
    """Display order of classes: one-digit numbers first, then two-digit, each by value."""
    return len(jersey), jersey


@dataclass(frozen=True)
class Sequence:
    jersey: str
    track: str
    seq_id: str
    anchor: str | None
    frames: tuple[str, ...]
    tens: int
    ones: int

    @property
    def labelled(self) -> bool:
        return self.tens != NO_LABEL

    @property
    def n_frames(self) -> int:
        """All indexed frames, the anchor included."""
        return len(self.frames) + (self.anchor is not None)


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass
class Index:
    root: Path
    sequences: list[Sequence]
    skipped: list[Skip]

    def skipped_counts(self) -> dict[str, int]:
        """Skips per reason, reasons sorted by name."""
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))


def index_root(
    root: str | os.PathLike, numbers: Iterable[str] | None = None, *, allow_unknown: bool = False
) -> Index:
    """Index every valid sequence under ``root``; ``numbers`` keeps only those jersey folders.

    ``allow_unknown``: also index the jersey folder ``unknown`` (unlabelled tracks, whatever
    ``numbers`` says); off, it is a ``bad_jersey_folder`` like any other name. Raises
    :class:`DataError` when ``root`` is not a folder or no valid sequence remains.
    """
    root = Path(root)
    layout = f"{LAYOUT}, or {UNKNOWN} for unlabelled tracks" if allow_unknown else LAYOUT
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected the layout {layout}")
    keep = _check_numbers(numbers)
    walk = _Walk(root, allow_unknown)
    for entry in walk.entries(root, "") or []:  # the root unreadable raises
        walk.jersey(entry, keep)
    index = Index(root=root, sequences=walk.sequences, skipped=walk.skipped)
    if not index.sequences:
        counts = ", ".join(f"{r} {n}" for r, n in index.skipped_counts().items()) or "nothing"
        restrict = f" among numbers {','.join(sorted(keep))}" if keep is not None else ""
        raise DataError(
            f"{root}: no valid sequence{restrict} (skipped: {counts}); expected the layout {layout}"
        )
    return index


def _check_numbers(numbers: Iterable[str] | None) -> set[str] | None:
    if numbers is None:
        return None
    keep = {str(n) for n in numbers}
    bad = sorted(n for n in keep if parse_label(n) is None)
    if bad:
        raise DataError(f"numbers {', '.join(bad)}: a jersey number is 1-2 digits, e.g. 7 or 07")
    return keep


class _Walk:
    """One sorted, depth-limited walk; collects sequences and skips."""

    def __init__(self, root: Path, allow_unknown: bool = False) -> None:
        self.allow_unknown = allow_unknown
        self.sequences: list[Sequence] = []
        self.skipped: list[Skip] = []
        self._visited = {root.resolve()}

    def skip(self, rel: str, reason: str) -> None:
        self.skipped.append(Skip(rel, reason))

    def entries(self, path: Path, rel: str) -> list[tuple[os.DirEntry, str]] | None:
        """Sorted entries of ``path`` with their root-relative paths; ``None`` if unreadable.

        Only the root being unreadable is fatal.
        """
        try:
            with os.scandir(path) as it:
                found = sorted(it, key=lambda e: natural_key(e.name))
        except OSError:
            if not rel:
                raise DataError(f"{path}: cannot list the folder; check its permissions") from None
            self.skip(rel, "unreadable_folder")
            return None
        return [(e, f"{rel}/{e.name}" if rel else e.name) for e in found]

    def enter(self, entry: os.DirEntry, rel: str, above_sequence: bool) -> bool:
        """Whether to descend into ``entry``; counts it as skipped when not."""
        if entry.is_symlink() and not os.path.exists(entry.path):
            self.skip(rel, "broken_link")
            return False
        if not entry.is_dir():
            self.skip(rel, "wrong_depth")
            return False
        real = Path(entry.path).resolve()
        above = Path(entry.path).parent.resolve()
        # a folder reached twice (only links make that possible) would repeat its frames,
        # possibly across splits; one that contains its own link would not end
        if real in self._visited or real == above or real in above.parents:
            self.skip(rel, "symlink_loop")
            return False
        if not above_sequence:
            self.skip(rel, "wrong_depth")  # a folder inside a sequence folder
            return False
        self._visited.add(real)
        return True

    def jersey(self, item: tuple[os.DirEntry, str], keep: set[str] | None) -> None:
        entry, rel = item
        if not self.enter(entry, rel, True):
            return
        if self.allow_unknown and entry.name == UNKNOWN:
            self.children(entry, rel, self.track)
        elif parse_label(entry.name) is None:
            self.skip(rel, "bad_jersey_folder")
        elif keep is not None and entry.name not in keep:
            self.skip(rel, "excluded_number")
        else:
            self.children(entry, rel, self.track)

    def children(self, entry: os.DirEntry, rel: str, visit) -> None:
        found = self.entries(Path(entry.path), rel)
        if found is None:
            return
        if not found:
            self.skip(rel, "empty_folder")
        for child in found:
            visit(child)

    def track(self, item: tuple[os.DirEntry, str]) -> None:
        entry, rel = item
        if self.enter(entry, rel, True):
            self.children(entry, rel, self.sequence)

    def sequence(self, item: tuple[os.DirEntry, str]) -> None:
        entry, rel = item
        if not self.enter(entry, rel, True):
            return
        found = self.entries(Path(entry.path), rel)
        if found is None:
            return
        anchors: list[str] = []
        frames: list[str] = []
        for child, child_rel in found:
            if self._is_image(child, child_rel):
                is_anchor = "anchor" in child.name.lower()
                (anchors if is_anchor else frames).append(child_rel)
        if not anchors and not frames:
            self.skip(rel, "empty_sequence")
            return
        for extra in anchors[1:]:
            self.skip(extra, "extra_anchor")
        jersey, track_name, _ = rel.split("/")
        tens, ones = parse_label(jersey) or (NO_LABEL, NO_LABEL)  # only `unknown` has none
        self.sequences.append(
            Sequence(
                jersey=jersey,
                track=f"{jersey}/{track_name}",
                seq_id=rel,
                anchor=anchors[0] if anchors else None,
                frames=tuple(frames),
                tens=tens,
                ones=ones,
            )
        )

    def _is_image(self, entry: os.DirEntry, rel: str) -> bool:
        if entry.is_dir() or (entry.is_symlink() and not os.path.exists(entry.path)):
            self.enter(entry, rel, False)  # counted: a folder too deep, a loop or a broken link
            return False
        if not entry.is_file() or not entry.name.lower().endswith(IMAGE_SUFFIXES):
            self.skip(rel, "not_an_image")
            return False
        return True


def select_frames(seq: Sequence, max_frames: int) -> list[str]:
    """The frames a model sees: the anchor first, then up to ``max_frames - 1`` others.

    Without an anchor file the first frame takes its place. With ``m`` remaining frames (in
    temporal order) and ``k = max_frames - 1`` slots: all of them if ``m <= k``, else those at
    ``floor(i * m / k)`` for ``i = 0..k-1``. This is the reference's ``1 + floor(i * step)``
    with ``step = (n - 1) / 15`` over indices ``1..n-1`` (spec 1.5), computed in exact integer
    arithmetic; for ``max_frames = 16`` the two agree (checked for every n < 5000).
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if seq.anchor is not None:
        head, rest = seq.anchor, seq.frames
    else:
        head, rest = seq.frames[0], seq.frames[1:]
    m, k = len(rest), max_frames - 1
    if m <= k:
        return [head, *rest]
    return [head, *(rest[(i * m) // k] for i in range(k))]


def frames_total(sequences: Iterable[Sequence]) -> int:
    """All indexed frames of ``sequences``, anchors included."""
    return sum(s.n_frames for s in sequences)
