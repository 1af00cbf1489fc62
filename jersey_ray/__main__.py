"""``jersey-ray <command> ...``: one front door for the ``python -m jersey_ray.<package>`` tools."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("data", "index a data root, generate synthetic data, import SoccerNet crops"),
    "cache": ("cache", "build or verify the preprocessed Parquet cache"),
    "models": ("models", "list the model registry with parameter counts"),
    "train": ("train", "run one training trial without Ray"),
    "sweep": ("sweep", "run a sweep on Ray Tune (the main command)"),
    "collect": ("results", "turn a sweep's results into tables and figures"),
    "bench": ("bench", "benchmarks: data pipeline, training throughput, inference"),
    "predict": ("predict", "use a trained model on a folder of tracklets"),
}
"""Command -> (package whose ``__main__`` runs it, one line of help)."""


def _usage() -> str:
    rows = "\n".join(f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items())
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
    module = importlib.import_module(f"jersey_ray.{COMMANDS[name][0]}.__main__")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
