"""The one exception type users see, and the wrapper every command runs through.

Every command-line entry point runs through :func:`run_cli`, so a problem the user can fix
(a wrong path, a corrupt cache, an unknown model id) ends as ``error: ...`` on stderr and exit
code 2, never as a traceback. Library code reports what it did through the ``jersey_ray``
loggers; a command shows their INFO messages as plain lines (warnings on stderr), and code that
imports the package as a library decides for itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class _Console(logging.Handler):
    """Plain lines on the streams as they are when a message is emitted (not when the handler
    was made: test runners and redirections swap them)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        print(self.format(record), file=stream, flush=True)


def show_messages() -> None:
    """Show the package's INFO messages and warnings as plain lines (once per process)."""
    logger = logging.getLogger("jersey_ray")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
        logger.setLevel(logging.INFO)


class UserError(Exception):
    """A problem the user can fix. The message names the file or value and what to do."""


def run_cli(main: Callable[[], int | None]) -> int:
    """Run ``main`` and map :class:`UserError` to a one-line message and exit code 2."""
    show_messages()
    try:
        return int(main() or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
