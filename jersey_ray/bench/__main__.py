"""``python -m jersey_ray.bench {data,train,infer,gpu,restart} ...``."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "data": "cache build frames/s and loader throughput against a reference-style DataLoader",
    "train": "a trial's training frames/s against the bare training-step ceiling",
    "infer": "deployment latency and throughput per precision/compiler/runtime (Table 4)",
    "gpu": "one CUDA GPU: the CUDA tests, train/pack/infer benchmarks, a short sweep (8 min)",
    "restart": "what a trial's restart pays to trust its cache, before/after cheap restarts",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        rows = "\n".join(f"  {k:<7} {v}" for k, v in SUBCOMMANDS.items())
        print(f"usage: python -m jersey_ray.bench <benchmark> [args...]\n\nbenchmarks:\n{rows}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"jersey_ray.bench.{argv[0]}")
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
