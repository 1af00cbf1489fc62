"""``python -m jersey_ray.synth OUT ...``: generate the built-in synthetic data set.

The generator lives in :mod:`jersey_ray.data.synth`; this module is its command-line door.
"""

from __future__ import annotations

import sys

from jersey_ray.data.synth import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
