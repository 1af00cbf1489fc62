"""The sweep on Ray: settings, checks, the Tune run, and the seed-aware scheduler.

- :mod:`~jersey_ray.sweep.settings`: presets and the one resolution of a sweep's settings;
- :mod:`~jersey_ray.sweep.preflight` and :mod:`~jersey_ray.sweep.resources`: checks before any
  expensive work, and what each trial gets;
- :mod:`~jersey_ray.sweep.tuner`: Ray, the grid, the Tuner;
- :mod:`~jersey_ray.sweep.trainable`: the thin adapter from a Tune trial to the trial loop;
- :mod:`~jersey_ray.sweep.asha`: seed-aware ASHA;
- :mod:`~jersey_ray.sweep.run` and ``python -m jersey_ray.sweep``: running it all.
"""
