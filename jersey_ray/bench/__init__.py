"""Benchmarks that print numbers: ``python -m jersey_ray.bench {data,train,infer} ...``.

Speed targets live here, never in timed tests. Each subcommand is a module of this package with
a ``main(argv)``.
"""
