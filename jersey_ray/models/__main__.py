"""``python -m jersey_ray.models [--json]``: the registry with trainable parameter counts."""

from __future__ import annotations

import json
import sys

from jersey_ray import cli
from jersey_ray.errors import run_cli
from jersey_ray.models import REGISTRY, build_model, count_params


def _rows() -> list[dict]:
    rows = []
    for spec in REGISTRY.values():
        rows.append(
            {
                "id": spec.id,
                "phase": spec.phase,
                "display": spec.display,
                "params": count_params(build_model(spec.id, pretrained="none")),
                "report_params": spec.report_params,
                "description": spec.description,
                "note": spec.note,
            }
        )
    return rows


def _table(rows: list[dict]) -> str:
    header = f"{'id':<20} {'phase':<7} {'display':<24} {'params':>11} {'report':>11}"
    lines = [header, "-" * len(header)]
    notes = []
    for row in rows:
        mark = ""
        if row["params"] != row["report_params"]:
            notes.append(f"* {row['id']}: {row['note']}")
            mark = " *"
        lines.append(
            f"{row['id']:<20} {row['phase']:<7} {row['display']:<24} "
            f"{row['params']:>11,} {row['report_params']:>11,}{mark}"
        )
    return "\n".join([*lines, "", *notes] if notes else lines)


def main(argv: list[str] | None = None) -> int:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.models",
        description="List the model registry: id, phase, display name and trainable parameter "
        "count (built without pretrained weights), beside the report's count.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of objects with keys id, phase, display, params, report_params, "
        "description, note",
    )

    def run() -> int:
        args = parser.parse_args(argv)
        rows = _rows()
        print(json.dumps(rows, indent=2) if args.json else _table(rows))
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
