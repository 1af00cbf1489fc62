"""``python -m jersey_ray.data synth OUT ...``: the generator's options and their run."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from jersey_ray import cli
from jersey_ray.config import DEFAULT_SIZE
from jersey_ray.data.synth.dataset import generate
from jersey_ray.data.synth.plan import (
    ANCHORS,
    CROPS,
    DEFAULT_IMBALANCE,
    DEFAULT_SEQUENCES,
    DEFAULT_SEQUENCES_PER_TRACK,
    QUALITIES,
    REFERENCE_NUMBERS,
    Style,
)


def _frames_arg(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX (e.g. 4-24) or N")
    return int(match[1]), int(match[2] or match[1])


DESCRIPTION = (
    "Generate the built-in synthetic jersey-number tracklets in the reference layout "
    "OUT/<jersey>/<track>/<sequence>/{anchor.jpg,f1.jpg,...}."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The generator's options (``python -m jersey_ray.data synth``)."""
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (must be empty or new)")
    p.add_argument(
        "--sequences",
        type=int,
        default=DEFAULT_SEQUENCES,
        help=f"sequences in total (default {DEFAULT_SEQUENCES})",
    )
    p.add_argument(
        "--numbers",
        type=cli.numbers,
        default=None,
        metavar="N,N,...",
        help="jersey numbers 0-99 ('07' is its own class); earlier ones get more "
        f"tracks (default {','.join(REFERENCE_NUMBERS)})",
    )
    p.add_argument(
        "--size",
        type=cli.size,
        default=DEFAULT_SIZE,
        metavar="HxW",
        help=f"frame size, height x width (default {cli.EXAMPLE_SIZE})",
    )
    p.add_argument(
        "--frames",
        type=_frames_arg,
        default=(4, 24),
        metavar="MIN-MAX",
        help="frames per sequence incl. the anchor, uniform (default 4-24)",
    )
    p.add_argument(
        "--sequences-per-track",
        type=float,
        default=DEFAULT_SEQUENCES_PER_TRACK,
        metavar="M",
        help="mean sequences per track; every number gets >= 3 tracks "
        f"(default {DEFAULT_SEQUENCES_PER_TRACK:g})",
    )
    p.add_argument(
        "--imbalance",
        type=float,
        default=DEFAULT_IMBALANCE,
        metavar="S",
        help="Zipf exponent of tracks per number in list order, 0 = balanced "
        f"(default {DEFAULT_IMBALANCE:g})",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        default=Style.crop,
        help="player: whole player boxes (the study's crops); number: the number region of "
        f"each frame, like the SoccerNet number crops (default {Style.crop})",
    )
    p.add_argument(
        "--anchor",
        choices=ANCHORS,
        default=Style.anchor,
        help="which frame is anchor.jpg: random (like any other frame) or clearest (default "
        f"{Style.anchor})",
    )
    p.add_argument(
        "--quality",
        choices=QUALITIES,
        default=Style.quality,
        help="broadcast: low resolution, blur, codec, occlusion, turning players; clean: full "
        f"resolution, backs to the camera, no occluders (default {Style.quality})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: all CPUs); never changes the output",
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT data set")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate from parsed :func:`add_arguments` options and print what was written."""
    summary = generate(
        args.out, sequences=args.sequences, numbers=args.numbers, size=args.size,
        frames=args.frames, seed=args.seed, workers=args.workers, progress=not args.no_progress,
        force=args.force, sequences_per_track=args.sequences_per_track, imbalance=args.imbalance,
        crop=args.crop, anchor=args.anchor, quality=args.quality,
    )  # fmt: skip
    print(summary.line())
    print(summary.classes_line())
    return 0
