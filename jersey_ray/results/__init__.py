"""The results side: a sweep's run folder read back (:mod:`~jersey_ray.results.runs`), its
statistics (:mod:`~jersey_ray.results.stats`), the report's own numbers
(:mod:`~jersey_ray.results.reference`), the tables (:mod:`~jersey_ray.results.tables`) and
figures (:mod:`~jersey_ray.results.figures`), put together by
:mod:`~jersey_ray.results.collect` (``python -m jersey_ray.results RUN_DIR``).
"""
