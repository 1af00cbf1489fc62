"""``jersey-ray <command> ...``: one front door for the ``python -m jersey_ray.<command>`` tools."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "synth": "generate the built-in synthetic tracklet data set",
    "data": "index a data root (summary) or import SoccerNet crops",
    "cache": "build or verify the preprocessed Parquet cache",
    "models": "list the model registry with parameter counts",
    "train": "run one training trial without Ray",
    "sweep": "run a phase sweep on Ray Tune (the main command)",
    "collect": "turn a sweep's trial results into phase tables and figures",
    "bench": "benchmarks: data pipeline, training throughput, inference",
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<8} {text}" for name, text in COMMANDS.items())
    return (
        "usage: jersey-ray <command> [args...]\n\ncommands:\n"
        f"{rows}\n\n'jersey-ray <command> --help' shows a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jersey_ray.{name}")
    if hasattr(module, "__path__"):  # a package: its CLI lives in __main__
        module = importlib.import_module(f"jersey_ray.{name}.__main__")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
