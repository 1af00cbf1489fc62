"""The sweep on Ray: settings, checks, the Tune run, and the seed-aware scheduler.

From Python: ``from jersey_ray import sweep; result = sweep.run("phaseB", quick=True)`` and
``sweep.collect(run_dir)`` (:mod:`~jersey_ray.sweep.api`); importing this package loads neither
Ray nor torch (they load when a sweep runs).

- :mod:`~jersey_ray.sweep.options`: what a run is asked for (:class:`RunOptions`), from the
  command line or from Python;
- :mod:`~jersey_ray.sweep.settings`: presets and the one resolution of a sweep's settings;
- :mod:`~jersey_ray.sweep.preflight` and :mod:`~jersey_ray.sweep.resources`: checks before any
  expensive work, and what each trial gets;
- :mod:`~jersey_ray.sweep.tuner`: Ray, the grid, the Tuner;
- :mod:`~jersey_ray.sweep.trainable`: the thin adapter from a Tune trial to the trial loop;
- :mod:`~jersey_ray.sweep.asha`: seed-aware ASHA;
- :mod:`~jersey_ray.sweep.launch`, :mod:`~jersey_ray.sweep.execute` and
  ``python -m jersey_ray.sweep``: running it all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jersey_ray.sweep.api import BestTrial, SweepResult, collect, run
    from jersey_ray.sweep.options import RunOptions

_LAZY = {
    "run": "jersey_ray.sweep.api",
    "collect": "jersey_ray.sweep.api",
    "SweepResult": "jersey_ray.sweep.api",
    "BestTrial": "jersey_ray.sweep.api",
    "RunOptions": "jersey_ray.sweep.options",
}
__all__ = ["BestTrial", "RunOptions", "SweepResult", "collect", "run"]


def __getattr__(name: str) -> Any:
    # the API's names load on first use: `import jersey_ray.sweep` stays light
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
