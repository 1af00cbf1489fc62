"""Writing a whole data set: argument checks, the worker pool, the atomic rename of the
finished folder, and the :class:`SynthSummary` of :func:`generate`."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from jersey_ray import cli
from jersey_ray.config import DEFAULT_SIZE
from jersey_ray.data.synth.plan import (
    DEFAULT_IMBALANCE,
    DEFAULT_SEQUENCES,
    DEFAULT_SEQUENCES_PER_TRACK,
    MIN_TRACKS_PER_NUMBER,
    REFERENCE_NUMBERS,
    SeqJob,
    Style,
    plan_dataset,
)
from jersey_ray.data.synth.render import write_sequence
from jersey_ray.errors import UserError
from jersey_ray.progress import bar as progress_bar


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote."""

    out: Path
    sequences: int
    tracks: int
    frames: int
    seconds: float
    frames_per_s: float
    per_number: dict[str, dict[str, int]]  # jersey -> {"tracks", "sequences", "frames"}

    def line(self) -> str:
        return (
            f"synth: {self.sequences:,} sequences, {self.tracks:,} tracks, {self.frames:,} frames"
            f" in {self.seconds:.1f} s ({self.frames_per_s:,.0f} frames/s) -> {self.out}"
        )

    def classes_line(self) -> str:
        cells = (f"{j}: {c['tracks']}/{c['sequences']}" for j, c in self.per_number.items())
        return "synth: tracks/sequences per number: " + ", ".join(cells)


def check_numbers(numbers: Iterable[str] | None) -> tuple[str, ...]:
    """The class list as given (default: the reference's 10), or UserError."""
    numbers = tuple(REFERENCE_NUMBERS if numbers is None else numbers)
    if not numbers:
        raise UserError("no jersey numbers given; give 1-2 digit numbers such as 4,6,48")
    for number in numbers:
        if not isinstance(number, str) or not re.fullmatch(r"[0-9]{1,2}", number):
            raise UserError(
                f"jersey number {number!r} is invalid: give 1-2 digit strings such as 7, 07, 48"
            )
    if len(set(numbers)) != len(numbers):
        raise UserError(f"jersey numbers {','.join(numbers)} repeat a number; give each once")
    return numbers


def _check_args(numbers, sequences, size, frames, seed, workers, per_track, imbalance) -> None:
    h, w = size
    if not (16 <= h <= 4096 and 8 <= w <= 4096):
        raise UserError(
            f"size {h}x{w} is invalid: give HEIGHTxWIDTH with 16 <= HEIGHT <= 4096 and "
            f"8 <= WIDTH <= 4096, e.g. {cli.EXAMPLE_SIZE}"
        )
    if not 1 <= frames[0] <= frames[1] <= 1000:
        raise UserError(f"frames {frames[0]}-{frames[1]} is invalid: need 1 <= MIN <= MAX <= 1000")
    need = MIN_TRACKS_PER_NUMBER * len(numbers)
    if sequences < need:
        raise UserError(
            f"{sequences} sequences are too few for {len(numbers)} numbers: each needs "
            f"{MIN_TRACKS_PER_NUMBER} tracks, so give at least {need}"
        )
    if seed < 0:
        raise UserError(f"seed {seed} is invalid: use a whole number >= 0")
    if workers < 1:
        raise UserError(f"workers {workers} is invalid: use >= 1")
    if not per_track >= 1:
        raise UserError(f"sequences per track {per_track} is invalid: use >= 1")
    if not 0 <= imbalance <= 5:
        raise UserError(f"imbalance {imbalance} is invalid: use 0 (balanced) to 5")


def _check_out(out: Path, force: bool) -> None:
    resolved = out.resolve()
    if resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise UserError(f"{out} is the current folder or above it; give a new folder as OUT")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; pick another output folder")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not force:
        raise UserError(f"{out} is not empty; pass --force to replace it or pick another folder")
    for entry in out.iterdir():  # --force only ever deletes something shaped like a data set
        if not (entry.is_dir() and re.fullmatch(r"[0-9]{1,2}", entry.name)):
            raise UserError(
                f"--force would delete {out}, but {entry.name!r} there is no jersey folder; "
                "delete it yourself or pick another output folder"
            )


def _pool_context() -> multiprocessing.context.BaseContext:
    """Not fork: callers such as the sweep driver may hold threads (torch, Ray) that a fork
    would copy mid-state. A forkserver that preloads this module pays the imports (torch comes
    in through jersey_ray.data) once instead of once per worker; spawn where it is missing."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _run_jobs(jobs: list[SeqJob], root: Path, workers: int, progress: bool) -> None:
    total = sum(job.n_frames for job in jobs)
    with progress_bar(total=total, unit="frame", desc="synth", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                bar.update(write_sequence(job, str(root)))
            return
        chunk = max(1, min(16, len(jobs) // (workers * 8)))
        with _pool_context().Pool(workers) as pool:
            work = partial(write_sequence, root=str(root))
            for n in pool.imap_unordered(work, jobs, chunksize=chunk):
                bar.update(n)


def _summary(jobs: list[SeqJob], out: Path, seconds: float) -> SynthSummary:
    per: dict[str, dict[str, int]] = {}
    for job in jobs:
        counts = per.setdefault(job.jersey, {"tracks": 0, "sequences": 0, "frames": 0})
        counts["tracks"] += job.seq == 0
        counts["sequences"] += 1
        counts["frames"] += job.n_frames
    frames = sum(c["frames"] for c in per.values())
    tracks = sum(c["tracks"] for c in per.values())
    return SynthSummary(out, len(jobs), tracks, frames, seconds, frames / max(seconds, 1e-9), per)


def generate(
    out: str | os.PathLike,
    *,
    sequences: int = DEFAULT_SEQUENCES,
    numbers: Iterable[str] | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    frames: tuple[int, int] = (4, 24),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    sequences_per_track: float = DEFAULT_SEQUENCES_PER_TRACK,
    imbalance: float = DEFAULT_IMBALANCE,
    crop: str = Style.crop,
    anchor: str = Style.anchor,
    quality: str = Style.quality,
) -> SynthSummary:
    """Write the synthetic data set to ``out`` (size is (height, width) of the player scene;
    numbers default to the reference's 10 classes; ``crop``, ``anchor``, ``quality``:
    :class:`Style`).
    The same arguments give byte-identical files for any ``workers``. Written to
    ``out.tmp-*`` first, renamed when complete."""
    style = Style(crop, anchor, quality)
    numbers = check_numbers(numbers)
    workers = os.cpu_count() or 1 if workers is None else workers
    _check_args(numbers, sequences, size, frames, seed, workers, sequences_per_track, imbalance)
    out = Path(out)
    _check_out(out, force)
    size = (int(size[0]), int(size[1]))
    jobs = plan_dataset(
        numbers, sequences, frames, size, seed, sequences_per_track, imbalance, style
    )
    start = time.perf_counter()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.resolve().name}.tmp-", dir=out.parent))
    except OSError as err:
        raise UserError(f"cannot create {out}: {err.strerror or err}") from None
    try:
        _run_jobs(jobs, tmp, min(workers, len(jobs)), progress)
        _check_out(out, force)  # re-checked: something may have appeared meanwhile
        if out.is_dir():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as err:
        raise UserError(f"writing {out} failed: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op after the rename
    return _summary(jobs, out, time.perf_counter() - start)
