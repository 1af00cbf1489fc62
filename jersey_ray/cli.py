"""Argument types and option groups shared by every command line, so ``--size HxW`` or
``--seeds 42,123`` mean (and fail) the same way everywhere.

Each type is an ``argparse`` ``type=``: a bad value becomes argparse's one-line usage error.
:class:`OneLineParser` makes every usage error a one-line ``error: ...`` through ``run_cli``.
:func:`add_data_options` is the one set of data flags (the cache key, :class:`DataConfig`);
every default in their help text is read from the dataclass.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from jersey_ray.config import SPLIT_MODES, DataConfig
from jersey_ray.errors import UserError

EXAMPLE_SIZE = DataConfig().size_text


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise :class:`UserError`; parse inside ``run_cli``,
    which prints them as one line (plain argparse prints its usage too and exits)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see --help)")


def size(text: str) -> tuple[int, int]:
    """``HxW`` such as ``64x32`` -> ``(64, 32)``; both sides at least 8."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HEIGHTxWIDTH, e.g. {EXAMPLE_SIZE}"
        ) from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers such as ``42,123`` (at least one)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 42,123, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def positive_ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 1 such as batch sizes ``1,4,16``."""
    values = ints(text)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def numbers(text: str) -> tuple[str, ...]:
    """Jersey numbers as their folder strings, ``4,07,48`` -> ``("4", "07", "48")``."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if not (v.isascii() and v.isdigit() and len(v) <= 2)]
    if not values or bad:
        raise argparse.ArgumentTypeError(
            f"give 1-2 digit jersey numbers separated by commas, e.g. 4,6,48; got {text!r}"
        )
    return values


DATA_FLAGS = {
    "size": "--size",
    "max_frames": "--max-frames",
    "split": "--split",
    "split_seed": "--split-seed",
    "heldout_numbers": "--heldout",
    "numbers": "--numbers",
}
"""DataConfig field -> its command-line flag (every command that builds a cache has them)."""


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data settings (:class:`DataConfig`, the cache key) as options that default to None,
    so only what the user gave overrides the other layers (:func:`data_overrides`)."""
    d = DataConfig()
    g = parser.add_argument_group("data settings (they define the cache)")
    g.add_argument(
        "--size", type=size, metavar="HxW", help=f"letterbox size (default {d.size_text})"
    )
    g.add_argument(
        "--max-frames",
        type=positive_int,
        metavar="T",
        help=f"frames per sequence, the anchor included (default {d.max_frames})",
    )
    g.add_argument(
        "--split",
        choices=SPLIT_MODES,
        help=f"split mode: tracks, or heldout to keep some numbers out of training (default "
        f"{d.split})",
    )
    g.add_argument(
        "--split-seed",
        type=int,
        metavar="S",
        help=f"seed of the track split (default {d.split_seed})",
    )
    g.add_argument(
        "--heldout",
        type=numbers,
        metavar="N,N",
        help="numbers held out of training for --split heldout (default: chosen automatically)",
    )
    g.add_argument(
        "--numbers", type=numbers, metavar="N,N", help="keep only these jersey numbers (7 != 07)"
    )


def data_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The data options the user gave, as DataConfig keys (``--heldout`` implies heldout)."""
    given = {
        key: getattr(args, flag.lstrip("-").replace("-", "_"))
        for key, flag in DATA_FLAGS.items()
        if key != "heldout_numbers"
    }
    given["heldout_numbers"] = args.heldout
    if args.heldout and args.split is None:
        given["split"] = "heldout"
    return {k: v for k, v in given.items() if v is not None}
