"""``python -m jersey_ray.predict (--run RUN_DIR | --checkpoint PATH) ROOT``: use a trained
model on a folder of tracklets.

The model is the trial a sweep chose on validation (``--run``) or a given ``best.pt``. ROOT is
in the reference layout, labels optional (a jersey folder named ``unknown`` holds unlabelled
tracks). Writes one row per sequence and per track (:mod:`jersey_ray.predict.aggregate`),
optionally a ``{track: number}`` JSON map and an ONNX model (:mod:`jersey_ray.models.export`),
and prints one summary line with the skips by reason and, where labels exist, the accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jersey_ray import cli
from jersey_ray.cache.loader import DEFAULT_BATCH_SIZE
from jersey_ray.errors import UserError, run_cli
from jersey_ray.predict.aggregate import Level, by_track, output_paths, write_json, write_outputs
from jersey_ray.predict.read import default_workers
from jersey_ray.predict.run import Result, predict_folder

if TYPE_CHECKING:
    from jersey_ray.train.checkpoint import Trained


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.predict",
        description="Predict the jersey number of every sequence and track in ROOT (layout "
        "ROOT/<jersey>/<track>/<sequence>/*.jpg; a jersey folder named 'unknown' holds "
        "unlabelled tracks) with a trained model.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="a sweep's run folder or its URI (s3://bucket/runs/<name>: only the chosen "
        "checkpoint is fetched): the finished trial with the best validation accuracy (never "
        "a test metric)",
    )
    which.add_argument("--checkpoint", type=Path, metavar="PATH", help="a trial's best.pt")
    parser.add_argument("root", type=Path, metavar="ROOT", help="folder of tracklets")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("predictions.csv"),
        metavar="CSV",
        help="per-sequence predictions (default predictions.csv); the per-track file and the "
        "skipped inputs go next to it as <name>_tracks.csv and <name>_skipped.csv",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write {track: number}")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="ONNX",
        help="also write the model as ONNX (dynamic "
        "batch and sequence length, checked against PyTorch before it is written)",
    )
    parser.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"sequences per forward pass (default {DEFAULT_BATCH_SIZE}; no effect on results)",
    )
    parser.add_argument(
        "--workers",
        type=cli.positive_int,
        default=default_workers(),
        metavar="N",
        help=f"image decoding threads (default {default_workers()})",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where the model runs (default auto: cuda if available)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse output paths that cannot be files or that collide, before any work."""
    paths = [*output_paths(args.out).values(), args.json, args.export]
    given = [p for p in paths if p is not None]
    for path in given:
        if path.is_dir():
            raise UserError(f"{path}: is a folder; give a file name")
    if len({p.resolve() for p in given}) < len(given):
        raise UserError(f"{args.out}, --json and --export must name different files")
    for path in given:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"{path.parent}: cannot create the folder ({err.strerror})") from None


def choose_checkpoint(args: argparse.Namespace) -> Path:
    if args.checkpoint is not None:
        return args.checkpoint
    from jersey_ray.results.runs import BEST_VAL_ACC_NUMBER, chosen_checkpoint, read_run

    trial, path = chosen_checkpoint(read_run(args.run))
    val = trial.last[BEST_VAL_ACC_NUMBER]
    print(f"model: {trial.dir} (chosen on validation: best val acc_number {val:.4f})")
    return path


def accuracy_text(level: Level, name: str) -> str:
    right, labelled = level.accuracy()
    if not labelled:
        return ""
    return f", accuracy per {name} {right / labelled:.4f} ({right}/{labelled} labelled)"


def summary_line(result: Result, tracks: Level) -> str:
    seqs = result.sequences
    dropped = result.indexed - len(seqs)
    skips = ", ".join(f"{r} {n}" for r, n in result.skip_counts().items()) or "none"
    rate = len(seqs) / result.seconds if result.seconds > 0 else float("inf")
    return (
        f"predicted {len(seqs)} sequences ({dropped} dropped), {len(tracks)} tracks in "
        f"{result.seconds:.1f} s ({rate:.1f} sequences/s); skipped: {skips}"
        f"{accuracy_text(seqs, 'sequence')}{accuracy_text(tracks, 'track')}"
    )


def export(trained: Trained, path: Path, checkpoint: Path) -> None:
    from jersey_ray.models.export import export_onnx

    data = trained.data
    meta = {
        "jersey_ray.model": trained.train.model,
        "jersey_ray.checkpoint": str(checkpoint),
        "jersey_ray.max_frames": str(data.max_frames),
    }
    done = export_onnx(trained.model, path, data.size, steps=data.max_frames, metadata=meta)
    print(
        f"wrote {done.path}: ONNX, inputs frames [N,3,{data.size_text.replace('x', ',')}] "
        f"float32 and mask [B,T] bool with N, B and T dynamic (trained with T <= "
        f"{data.max_frames}); {done.summary}"
    )


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        check_outputs(args)
        from jersey_ray.train.checkpoint import load_model
        from jersey_ray.train.step import resolve_device

        device = resolve_device(args.device)
        checkpoint = choose_checkpoint(args)
        trained = load_model(checkpoint, device)
        result = predict_folder(
            trained.model,
            trained.data,
            args.root,
            device=device,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=not args.no_progress,
        )
        tracks = by_track(result.sequences)
        try:
            paths = write_outputs(args.out, result.sequences, tracks, result.skipped)
            if args.json is not None:
                paths["json"] = write_json(args.json, tracks)
        except OSError as err:
            raise UserError(f"{err.filename}: cannot write ({err.strerror})") from None
        print(summary_line(result, tracks))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        if args.export is not None:
            export(trained, args.export, checkpoint)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
