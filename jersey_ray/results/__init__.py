"""The results side: a sweep's run folder read back (:mod:`~jersey_ray.results.runs`) with the
trials' per-sequence predictions (:mod:`~jersey_ray.results.predictions`), its statistics
(:mod:`~jersey_ray.results.stats`), the comparisons with the reference model and the report
(:mod:`~jersey_ray.results.compare`), the held-out analysis (:mod:`~jersey_ray.results.heldout`),
the majority-class baseline (:mod:`~jersey_ray.results.majority`), the report's own numbers
(:mod:`~jersey_ray.results.reference`), the tables (:mod:`~jersey_ray.results.tables`,
:mod:`~jersey_ray.results.verdicts`), figures (:mod:`~jersey_ray.results.figures`) and the results
index (:mod:`~jersey_ray.results.index`), put together by :mod:`~jersey_ray.results.collect`
(``python -m jersey_ray.results RUN_DIR``).
"""
