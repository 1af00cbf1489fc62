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
from jersey_ray.data.split import (
    ALL_SPLITS,
    SPLITS,
    assign_splits,
    coverage_text,
    is_fair,
    split_counts,
    train_sequences,
)
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
    summary.add_argument(
        "--split",
        choices=("tracks", "heldout"),
        default=DataConfig.split,
        help="split mode (default tracks); heldout also lists the held-out numbers with their "
        "in-place coverage, as a sweep with --split heldout would choose them",
    )
    summary.add_argument(
        "--heldout", type=cli.numbers, help="held-out numbers for --split heldout (default: chosen)"
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


def summarize(
    index: Index, split_seed: int, split: str = "tracks", heldout: tuple[str, ...] | None = None
) -> dict:
    """The summary as a JSON-ready dict; under ``split="heldout"`` with the held-out numbers
    (given, or chosen by the fair rule as a sweep would) and each one's in-place coverage."""
    seqs = index.sequences
    data = DataConfig(split=split, split_seed=split_seed, heldout_numbers=tuple(heldout or ()))
    assignment, data = assign_splits(seqs, data)
    counts = split_counts(seqs, assignment)
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
        "split": split,
        "splits": counts["splits"],
        "per_class_splits": counts["per_class"],
        "heldout": _heldout(seqs, data),
    }


def _heldout(seqs: list, data: DataConfig) -> list[dict]:
    """Each held-out number with its in-place coverage and whether it is fair."""
    if data.split != "heldout":
        return []
    train = train_sequences(seqs, data.split_seed)
    held = data.heldout_numbers
    return [
        {"number": n, "coverage": coverage_text(n, train, held), "fair": is_fair(n, train, held)}
        for n in held
    ]


def format_summary(summary: dict) -> str:
    """A readable table of :func:`summarize`'s dict."""
    skipped = ", ".join(f"{r} {n}" for r, n in summary["skipped"].items()) or "none"
    splits = ALL_SPLITS if summary["split"] == "heldout" else SPLITS
    lines = [
        f"root {summary['root']}: {summary['sequences']} sequences, {summary['tracks']} tracks, "
        f"{summary['frames']} frames, {len(summary['classes'])} classes",
        f"skipped: {skipped}",
        f"split by track, stratified by jersey, seed {summary['split_seed']} "
        "(cells: tracks/sequences)",
        "",
        f"{'class':>6} {'tracks':>7} {'seqs':>7} " + " ".join(f"{s:>11}" for s in splits),
    ]
    per_class = summary["per_class_splits"]
    for jersey in sorted(summary["classes"], key=class_key):
        total = summary["classes"][jersey]
        cells = " ".join(f"{_cell(per_class[jersey][s]):>11}" for s in splits)
        lines.append(f"{jersey:>6} {total['tracks']:>7} {total['sequences']:>7} {cells}")
    cells = " ".join(f"{_cell(summary['splits'][s]):>11}" for s in splits)
    lines.append(f"{'all':>6} {summary['tracks']:>7} {summary['sequences']:>7} {cells}")
    if summary["heldout"]:
        numbers = ",".join(h["number"] for h in summary["heldout"])
        lines += ["", f"held out (--heldout {numbers}); in-place coverage in training:"]
        for h in summary["heldout"]:
            fair = "fair" if h["fair"] else "NOT fair"
            lines.append(f"{h['number']:>6}  {fair:<8}  {h['coverage']}")
    return "\n".join(lines)


def _cell(counts: dict[str, int]) -> str:
    return f"{counts['tracks']}/{counts['sequences']}"


def _run(args: argparse.Namespace) -> int:
    if args.command == "synth":
        return synth.run(args)
    if args.command == "summary":
        index = index_root(args.root, numbers=args.numbers)
        summary = summarize(index, args.split_seed, args.split, args.heldout)
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
