"""``python -m jersey_ray.models [--json]``: the registry with trainable parameter counts.

``python -m jersey_ray.models fetch-weights [IDS]``: fill the torchvision/timm caches with the
ImageNet weights of those models (by default all that have any; the comp_ family has none) ahead
of a run, e.g. on every cluster node.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jersey_ray import cli
from jersey_ray.errors import run_cli
from jersey_ray.models import REGISTRY, build_model, count_params, get_spec
from jersey_ray.models.backbones import downloading


def _rows() -> list[dict]:
    rows = []
    for spec in REGISTRY.values():
        rows.append(
            {
                "id": spec.id,
                "phase": spec.phase,
                "display": spec.display,
                "params": count_params(build_model(spec.id, pretrained="none")),
                # the comp_ family is not in the report: its own count pins it, no report's
                "report_params": None if spec.phase == "comp" else spec.report_params,
                "description": spec.description,
                "note": spec.note,
            }
        )
    return rows


def _table(rows: list[dict]) -> str:
    wide = max(24, *(len(row["display"]) for row in rows))  # the columns stay aligned
    header = f"{'id':<20} {'phase':<7} {'display':<{wide}} {'params':>11} {'report':>11}"
    lines = [header, "-" * len(header)]
    notes = []
    for row in rows:
        mark = ""
        report = row["report_params"]
        if report is not None and row["params"] != report:
            notes.append(f"* {row['id']}: {row['note']}")
            mark = " *"
        shown = "-" if report is None else f"{report:,}"
        lines.append(
            f"{row['id']:<20} {row['phase']:<7} {row['display']:<{wide}} "
            f"{row['params']:>11,} {shown:>11}{mark}"
        )
    return "\n".join([*lines, "", *notes] if notes else lines)


def fetch_weights(ids: list[str]) -> dict[str, Path]:
    """Download (where missing) and load the ImageNet weights of every model in ``ids``:
    the same build the sweep's preflight and its trials run. Backbone name -> file."""
    specs = [get_spec(i) for i in ids]  # unknown ids fail before any download
    with downloading() as fetched:
        for spec in specs:
            build_model(spec.id, pretrained="imagenet")
    return fetched


def _fetch_report(fetched: dict[str, Path], n_models: int) -> str:
    lines = [
        f"{name:<20} {path} ({path.stat().st_size / 1e6:.1f} MB)" for name, path in fetched.items()
    ]
    return "\n".join([*lines, f"ImageNet weights of {n_models} model(s) are in the cache"])


def build_parser() -> cli.OneLineParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.models",
        description="List the model registry: id, phase, display name and trainable parameter "
        "count (built without pretrained weights), beside the report's count.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of objects with keys id, phase, display, params, report_params "
        "(null for models not in the report), description, note",
    )
    sub = parser.add_subparsers(dest="command", metavar="{fetch-weights}")
    fetch = sub.add_parser(
        "fetch-weights",
        help="download the ImageNet weights of models into the torch hub / Hugging Face cache",
        description="Download (where missing) the ImageNet weights of the given models into "
        "the caches torchvision and timm use ($TORCH_HOME/hub/checkpoints, the Hugging Face "
        "cache), and check that each model loads them. Run it on every machine that trains.",
    )
    fetch.add_argument(
        "ids", nargs="*", metavar="ID", help="model ids (default: all with ImageNet weights)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def run() -> int:
        args = parser.parse_args(argv)
        if args.command == "fetch-weights":
            ids = args.ids or [i for i, spec in REGISTRY.items() if spec.imagenet]
            print(_fetch_report(fetch_weights(ids), len(ids)))
            return 0
        rows = _rows()
        print(json.dumps(rows, indent=2) if args.json else _table(rows))
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
