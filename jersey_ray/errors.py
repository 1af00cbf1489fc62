"""The one exception type users see, and the wrapper that turns it into a one-line message.

Every command-line entry point runs through :func:`run_cli`, so a problem the user can fix
(a wrong path, a corrupt cache, an unknown model id) ends as ``error: ...`` on stderr and exit
code 2, never as a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix. The message names the file or value and what to do."""


def run_cli(main: Callable[[], int | None]) -> int:
    """Run ``main`` and map :class:`UserError` to a one-line message and exit code 2."""
    try:
        return int(main() or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
