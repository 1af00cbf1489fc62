"""Argument types shared by every command line, so ``--size 192x96`` or ``--seeds 42,123``
mean (and fail) the same way everywhere.

Each is an ``argparse`` ``type=``: a bad value becomes argparse's one-line usage error.
:class:`OneLineParser` makes every usage error a one-line ``error: ...`` through ``run_cli``.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from jersey_ray.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise :class:`UserError`; parse inside ``run_cli``,
    which prints them as one line (plain argparse prints its usage too and exits)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see --help)")


def size(text: str) -> tuple[int, int]:
    """``HxW`` such as ``192x96`` -> ``(192, 96)``; both sides at least 8."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 192x96") from None
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
