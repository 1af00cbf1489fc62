"""Progress bars that read well on a terminal and in a log file.

On a terminal: an ordinary tqdm bar, redrawn in place. Into a file (a CI log, ``nohup``, a
SLURM output file) a redrawn bar would leave one carriage-return-joined line per refresh, so
there the bar writes a plain line at most every :data:`LOG_EVERY_S` seconds (and at the end).
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

LOG_EVERY_S = 30.0
"""Seconds between progress lines when the output is not a terminal."""


class _Lines:
    """A file wrapper that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self._out.write(line + "\n")

    def flush(self) -> None:
        self._out.flush()


def bar(iterable: Any = None, *, file: IO[str] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments) that stays tidy when ``file`` (default stderr) is no
    terminal."""
    out = file if file is not None else sys.stderr
    if getattr(out, "isatty", lambda: False)():
        return tqdm(iterable, file=out, **kwargs)
    kwargs.setdefault("mininterval", LOG_EVERY_S)
    kwargs.update(file=_Lines(out), dynamic_ncols=False, ncols=100, leave=True)
    return tqdm(iterable, **kwargs)


def redraws(progress: tqdm) -> bool:
    """Whether ``progress`` redraws in place (a terminal): then a line printed beside it must
    clear the bar first and redraw it after."""
    fp = getattr(progress, "fp", None)  # disabled bars have no fp
    # tqdm wraps the file it writes to (DisableOnWriteError): look at the file inside
    return not isinstance(getattr(fp, "_wrapped", fp), _Lines)
