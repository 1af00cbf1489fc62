"""Sweeps declared as data: each module defines ``SWEEP = SweepSpec(...)``.

``python -m jersey_ray.sweep <name>`` runs ``sweeps/<name>.py``; a new sweep is a new file here
(or any ``path/to/file.py`` passed to the runner), no code change.
"""
