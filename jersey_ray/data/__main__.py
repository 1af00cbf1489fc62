"""``python -m jersey_ray.data {summary,synth,import-soccernet} ...``: look at a data root,
generate the built-in synthetic data, or import the SoccerNet crops."""

from __future__ import annotations

import argparse
import json
import sys

from jersey_ray import cli
from jersey_ray.config import DataConfig
from jersey_ray.data import synth
from jersey_ray.data.index import Index, class_key, frames_total, index_root
from jersey_ray.data.soccernet import import_soccernet
from jersey_ray.data.split import SPLITS, split_counts, split_tracks
from jersey_ray.errors import run_cli


def _parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.data",
        description="Index a data root in the layout ROOT/<jersey>/<track>/<sequence>/*.jpg, "
        "generate the built-in synthetic data in that layout, or import the SoccerNet "
        "jersey-number crops into it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser(
        "summary",
        help="counts of sequences, tracks, frames, classes, skips and splits",
        description="Index ROOT and print its counts: per class, per skip reason, per split "
        "(by track, stratified by jersey) and per class per split.",
    )
    summary.add_argument("root", metavar="ROOT", help="data root folder")
    summary.add_argument(
        "--split-seed",
        type=int,
        default=DataConfig.split_seed,
        help=f"seed of the track split (default {DataConfig.split_seed})",
    )
    summary.add_argument(
        "--numbers", type=cli.numbers, help="keep only these jersey folders, e.g. 4,6,48 (7 != 07)"
    )
    summary.add_argument("--json", action="store_true", help="print one JSON object instead")
    synth.add_arguments(
        sub.add_parser(
            "synth", help="generate the built-in synthetic data", description=synth.DESCRIPTION
        )
    )
    soccernet = sub.add_parser(
        "import-soccernet",
        help="convert SoccerNet number crops into the reference layout",
        description="Convert crops.tar.gz (or the folder it extracts to) into "
        "OUT/<label>/<tracklet>/seq_NNN/: one track per tracklet, crops of both folders merged "
        "in frame order and cut into sequences of consecutive frames.",
    )
    soccernet.add_argument("src", metavar="SRC", help="crops.tar.gz or its extracted folder")
    soccernet.add_argument("out", metavar="OUT", help="output root (created)")
    soccernet.add_argument(
        "--max-frames-per-sequence",
        type=cli.positive_int,
        default=16,
        help="longest sequence cut from a tracklet (default 16)",
    )
    soccernet.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    soccernet.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def summarize(index: Index, split_seed: int) -> dict:
    """The summary as a JSON-ready dict."""
    seqs = index.sequences
    counts = split_counts(seqs, split_tracks(seqs, seed=split_seed))
    classes: dict[str, dict[str, int]] = {}
    for jersey, per_split in counts["per_class"].items():
        classes[jersey] = {
            "tracks": sum(c["tracks"] for c in per_split.values()),
            "sequences": sum(c["sequences"] for c in per_split.values()),
        }
    return {
        "root": str(index.root),
        "sequences": len(seqs),
        "tracks": len({s.track for s in seqs}),
        "frames": frames_total(seqs),
        "classes": classes,
        "skipped": index.skipped_counts(),
        "split_seed": split_seed,
        "splits": counts["splits"],
        "per_class_splits": counts["per_class"],
    }


def format_summary(summary: dict) -> str:
    """A readable table of :func:`summarize`'s dict."""
    skipped = ", ".join(f"{r} {n}" for r, n in summary["skipped"].items()) or "none"
    lines = [
        f"root {summary['root']}: {summary['sequences']} sequences, {summary['tracks']} tracks, "
        f"{summary['frames']} frames, {len(summary['classes'])} classes",
        f"skipped: {skipped}",
        f"split by track, stratified by jersey, seed {summary['split_seed']} "
        "(cells: tracks/sequences)",
        "",
        f"{'class':>6} {'tracks':>7} {'seqs':>7} " + " ".join(f"{s:>11}" for s in SPLITS),
    ]
    per_class = summary["per_class_splits"]
    for jersey in sorted(summary["classes"], key=class_key):
        total = summary["classes"][jersey]
        cells = " ".join(f"{_cell(per_class[jersey][s]):>11}" for s in SPLITS)
        lines.append(f"{jersey:>6} {total['tracks']:>7} {total['sequences']:>7} {cells}")
    cells = " ".join(f"{_cell(summary['splits'][s]):>11}" for s in SPLITS)
    lines.append(f"{'all':>6} {summary['tracks']:>7} {summary['sequences']:>7} {cells}")
    return "\n".join(lines)


def _cell(counts: dict[str, int]) -> str:
    return f"{counts['tracks']}/{counts['sequences']}"


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        return synth.run(args)
    if args.command == "summary":
        summary = summarize(index_root(args.root, numbers=args.numbers), args.split_seed)
        if args.numbers:
            missing = sorted(set(args.numbers) - set(summary["classes"]), key=class_key)
            summary["missing_numbers"] = missing
            if missing:
                print(f"warning: no data for numbers {','.join(missing)}", file=sys.stderr)
        print(json.dumps(summary) if args.json else format_summary(summary))
        return 0
    result = import_soccernet(
        args.src,
        args.out,
        max_frames_per_sequence=args.max_frames_per_sequence,
        force=args.force,
        progress=not args.quiet,
    )
    print(result.summary_line())
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
