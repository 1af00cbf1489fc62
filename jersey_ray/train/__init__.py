"""One training trial, with or without Ray.

- :mod:`~jersey_ray.train.step`: the optimizer step of the protocol (shared with ``bench train``);
- :mod:`~jersey_ray.train.evaluate`: the one evaluation loop (validation, test, the collector's
  analysis, the benchmarks, prediction);
- :mod:`~jersey_ray.train.checkpoint`: saving, resuming, and the one checkpoint loader;
- :mod:`~jersey_ray.train.events`: TensorBoard;
- :mod:`~jersey_ray.train.loop`: the trial itself (``train``), which Tune's adapter calls;
- ``python -m jersey_ray.train``: its command line.
"""
