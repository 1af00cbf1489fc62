"""``python -m jersey_ray.results RUN_DIR [--out DIR]`` (``jersey-ray collect``): a sweep's run
folder into its table, figures and the results index. RUN_DIR may be a URI
(``s3://bucket/runs/<name>``); the outputs are written locally (``results/<phase>/``)."""

from __future__ import annotations

import sys
from pathlib import Path

from jersey_ray import cli
from jersey_ray.errors import run_cli
from jersey_ray.results.collect import collect


def main(argv: list[str] | None = None) -> int:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.results",
        description="Turn a sweep's run folder into a phase table (table.md, table.csv, "
        "summary.json) and figures, from what the trials reported, and regenerate the results "
        "index (README.md in the parent of the output folder).",
    )
    parser.add_argument(
        "run_dir",
        help="the sweep's run folder (results/runs/<name>) or its URI (s3://bucket/runs/<name>: "
        "the small files are read, checkpoints stay there but the one the figures need)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/<phase>/, phase from RUN_DIR/sweep.json)",
    )

    def run() -> int:
        args = parser.parse_args(argv)
        summary = collect(args.run_dir, args.out)
        done = sum(r["n_finished"] for r in summary["models"])
        print(
            f"{summary['table_md']}: {len(summary['models'])} configurations, {done} finished "
            f"trials, {len(summary['failed'])} failed, {len(summary['skipped'])} skipped inputs"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
