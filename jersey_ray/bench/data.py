"""``python -m jersey_ray.bench data ROOT``: cache build frames/s, and the loader against the
reference's input pipeline.

Three measurements in one run on the same data:

* **build**: :func:`jersey_ray.cache.build.build_cache` of ROOT into a fresh temporary folder,
  frames/s without Ray's start-up (which is timed separately) and in total;
* **loader**: train epochs of :func:`jersey_ray.cache.loader.iter_batches` over the cached train
  split (sequence mode, shuffled, on-device augmentation, batch 64);
* **baseline**: the same train sequences and frames through a pipeline built like the
  reference's (report-spec 1.5-1.8): a ``torch.utils.data.DataLoader`` with W workers whose
  dataset decodes every frame with PIL each epoch, letterboxes it, applies the PIL/torchvision
  augmentations of spec 1.7 (numpy's global RNG), ``to_tensor``, pastes it on a black canvas
  and normalizes; the collate pads by repeating each sequence's last frame.

Throughput counts real frames (and sequences) per second of an epoch's wall time. Targets: build
>= 1,500 frames/s on 2 cores; loader >= 20x the baseline on the CPU.

On a machine shared with other work, run it with ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP
threads spin while they wait for each other, and when one is descheduled the others burn its
time (measured on a loaded 2-core box: 8x more CPU per loader frame). The report shows the load
average and the policy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter
from torch.utils.data import DataLoader, Dataset

from jersey_ray import cli
from jersey_ray.cache.augment import IMAGENET_MEAN, IMAGENET_STD
from jersey_ray.cache.build import build_cache
from jersey_ray.cache.loader import DEFAULT_BATCH_SIZE, iter_batches, load_split
from jersey_ray.cache.plan import make_plan
from jersey_ray.cache.store import data_config
from jersey_ray.config import DataConfig, layered
from jersey_ray.errors import UserError, run_cli
from jersey_ray.progress import bar as progress_bar

# ----------------------------------------------------------------------------- the baseline


def reference_augment(img: Image.Image) -> Image.Image:
    """Report-spec 1.7 on a PIL image, with numpy's global RNG as the reference does."""
    img = TF.adjust_brightness(img, np.random.uniform(0.8, 1.2))
    img = TF.adjust_contrast(img, np.random.uniform(0.8, 1.2))
    img = TF.adjust_saturation(img, np.random.uniform(0.8, 1.2))
    img = TF.rotate(
        img, np.random.uniform(-5, 5), interpolation=TF.InterpolationMode.BILINEAR, fill=0
    )
    if np.random.rand() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(np.random.choice([1, 1.5, 2]))))
    if np.random.rand() < 0.2:
        a = np.asarray(img).astype(np.float32) / 255.0
        a = np.clip(a + np.random.normal(0, np.random.uniform(0.01, 0.03), a.shape), 0, 1)
        img = Image.fromarray((a * 255).astype(np.uint8))
    return img


class ReferenceDataset(Dataset):
    """Spec 1.5-1.6: every frame decoded, letterboxed, augmented and normalized per item."""

    def __init__(self, root: Path, items: list[dict], size: tuple[int, int], train: bool):
        self.root, self.items, self.size, self.train = root, items, size, train

    def __len__(self) -> int:
        return len(self.items)

    def load(self, rel: str) -> torch.Tensor:
        height, width = self.size
        img = Image.open(self.root / rel).convert("RGB")
        w, h = img.size
        s = min(height / h, width / w)
        nh, nw = int(h * s), int(w * s)
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        if self.train:
            img = reference_augment(img)
        canvas = torch.zeros(3, height, width)
        top, left = (height - nh) // 2, (width - nw) // 2
        canvas[:, top : top + nh, left : left + nw] = TF.to_tensor(img)
        return TF.normalize(canvas, IMAGENET_MEAN, IMAGENET_STD)

    def __getitem__(self, i: int):
        item = self.items[i]
        frames = torch.stack([self.load(p) for p in item["paths"]])
        return frames, len(item["paths"]), item["tens"], item["ones"]


def reference_collate(batch, max_frames: int = DataConfig.max_frames):
    """Spec 1.5: pad to the longest sequence by repeating the last frame."""
    t_max = min(max(n for _, n, _, _ in batch), max_frames)
    padded = []
    for frames, n, _, _ in batch:
        frames = frames[:t_max]
        if n < t_max:
            frames = torch.cat([frames, frames[-1:].expand(t_max - n, *frames.shape[1:])])
        padded.append(frames)
    lengths = torch.tensor([n for _, n, _, _ in batch])
    tens = torch.tensor([t for _, _, t, _ in batch])
    ones = torch.tensor([o for _, _, _, o in batch])
    return torch.stack(padded), lengths, tens, ones


def baseline_items(root: Path, manifest: dict[str, Any]) -> list[dict]:
    """The cached train sequences with the same frames (selected, decodable) as the cache."""
    plan = make_plan(data_config(manifest))
    bad = {s["path"] for s in manifest["skipped"] if s["stage"] == "decode"}
    items = []
    for item in plan.items:
        paths = [p for p in item["paths"] if p not in bad]
        if item["split"] == "train" and paths:
            items.append({**item, "paths": paths})
    return items


# ----------------------------------------------------------------------------- measurements


def _epoch_row(seconds: float, sequences: int, frames: int) -> dict[str, float]:
    return {
        "sequences": sequences,
        "frames": frames,
        "seconds": round(seconds, 6),
        "sequences_per_s": round(sequences / seconds, 1),
        "frames_per_s": round(frames / seconds, 1),
    }


def measure_build(data: DataConfig, scratch: Path) -> dict:
    import ray

    start = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray_s = time.perf_counter() - start
    try:
        result = build_cache(data, scratch / "cache")
    finally:
        if started:
            ray.shutdown()  # the loader measurements get the whole machine
    m = result.manifest
    total = ray_s + result.total_s
    return {
        "cache": result.path,
        "manifest": m,
        "frames": m["frames"],
        "sequences": m["sequences"],
        "seconds": m["build_seconds"],
        "frames_per_s": m["frames_per_s"],
        "ray_start_s": round(ray_s, 3),
        "total_s": round(total, 3),
        "total_frames_per_s": round(m["frames"] / total, 1),
    }


def measure_loader(cache: str, device: torch.device, epochs: int, batch_size: int) -> dict:
    data = load_split(cache, "train", device)
    shuffle = torch.Generator().manual_seed(0)
    aug = torch.Generator(device=device).manual_seed(1)
    rows = []
    for _ in progress_bar(range(epochs), desc="loader epochs", unit="epoch"):
        start = time.perf_counter()
        frames = 0
        for batch in iter_batches(
            data, batch_size, shuffle=True, generator=shuffle,
            augment=True, aug_generator=aug,
        ):  # fmt: skip
            frames += batch.n_frames
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rows.append(_epoch_row(time.perf_counter() - start, len(data), frames))
    return {"epochs": rows, **_summary(rows)}


def measure_baseline(
    root: Path, manifest: dict, workers: int, epochs: int, batch_size: int
) -> dict:
    items = baseline_items(root, manifest)
    loader = DataLoader(
        ReferenceDataset(root, items, data_config(manifest).size, train=True),
        batch_size=batch_size, shuffle=True, num_workers=workers,
        collate_fn=partial(reference_collate, max_frames=data_config(manifest).max_frames),
        pin_memory=torch.cuda.is_available(),
    )  # fmt: skip
    n_frames = sum(len(it["paths"]) for it in items)
    rows = []
    for _ in progress_bar(range(epochs), desc="baseline epochs", unit="epoch"):
        start = time.perf_counter()
        for _batch in loader:
            pass
        rows.append(_epoch_row(time.perf_counter() - start, len(items), n_frames))
    return {"workers": workers, "epochs": rows, **_summary(rows)}


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    return {
        "median_sequences_per_s": statistics.median(r["sequences_per_s"] for r in rows),
        "median_frames_per_s": statistics.median(r["frames_per_s"] for r in rows),
    }


def machine(device: torch.device, load_before: tuple[float, ...] | None) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_average": load_before,  # 1/5/15-minute load before the bench started
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def report_lines(result: dict[str, Any]) -> str:
    b, lo, ba = result["build"], result["loader"], result["baseline"]
    m = result["machine"]
    load = f", load average before {m['load_average'][0]:.1f}" if m["load_average"] else ""
    epochs = len(lo["epochs"])
    lines = [
        f"data bench: {result['root']} at {result['size'][0]}x{result['size'][1]}, "
        f"{m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads, OMP_WAIT_POLICY "
        f"{m['omp_wait_policy']}), {m['device']}{load}",
        f"cache build: {b['frames']} frames, {b['sequences']} sequences in {b['seconds']:.1f} s "
        f"= {b['frames_per_s']:.0f} frames/s (Ray start-up {b['ray_start_s']:.1f} s excluded); "
        f"total {b['total_s']:.1f} s = {b['total_frames_per_s']:.0f} frames/s",
        f"train epochs ({result['train_sequences']} sequences, {result['train_frames']} frames, "
        f"batch {result['batch_size']}, augmented):",
        f"  {'':<22}"
        + "".join(f"{f'epoch {i + 1}':>12}" for i in range(epochs))
        + f"{'median':>12}",
    ]
    for name, res in (("loader seq/s", lo), ("baseline seq/s", ba)):
        vals = [r["sequences_per_s"] for r in res["epochs"]]
        lines.append(f"  {name:<22}" + "".join(f"{v:>12.1f}" for v in vals)
                     + f"{res['median_sequences_per_s']:>12.1f}")  # fmt: skip
    for name, res in (("loader frames/s", lo), (f"baseline frames/s W={ba['workers']}", ba)):
        vals = [r["frames_per_s"] for r in res["epochs"]]
        lines.append(f"  {name:<22}" + "".join(f"{v:>12.0f}" for v in vals)
                     + f"{res['median_frames_per_s']:>12.0f}")  # fmt: skip
    lines.append(f"loader / baseline (median frames/s): {result['ratio']:.1f}x")
    if m["load_average"] and m["load_average"][0] > m["cpus"] and m["omp_wait_policy"] != "PASSIVE":
        lines.append("note: the machine is loaded; OMP_WAIT_POLICY=PASSIVE gives steadier numbers")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(
        prog="python -m jersey_ray.bench data",
        description="Cache build frames/s, then loader vs reference-style DataLoader epochs.",
    )
    p.add_argument("root", type=Path, metavar="ROOT", help="data root (e.g. a synthetic set)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers here")
    cli.add_data_options(p)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs of each (default 3)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="baseline DataLoader workers (default: all CPUs)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device of the loader (default cpu: the target is stated on the CPU)",
    )
    p.add_argument("--threads", type=int, help="torch threads of the loader (default: torch's)")
    return p  # fmt: skip


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.workers < 0 or args.batch_size < 1:
        raise UserError("--epochs and --batch-size must be >= 1, --workers >= 0")
    if not args.root.is_dir():
        raise UserError(f"{args.root}: not a folder; give a data root (e.g. python -m "
                        "jersey_ray.data synth OUT makes one)")  # fmt: skip
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    scratch = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        data, _ = layered(
            DataConfig, [("command line", {"root": str(args.root), **cli.data_overrides(args)})]
        )
        build = measure_build(data, scratch)
        manifest = build.pop("manifest")
        cache = build.pop("cache")  # a temporary folder: not worth reporting
        loader = measure_loader(cache, device, args.epochs, args.batch_size)
        baseline = measure_baseline(args.root, manifest, args.workers, args.epochs, args.batch_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    train = manifest["counts"]["splits"]["train"]
    result = {
        "root": str(args.root),
        "size": list(data.size),
        "max_frames": data.max_frames,
        "batch_size": args.batch_size,
        "train_sequences": train["sequences"],
        "train_frames": train["frames"],
        "machine": machine(device, load_before),
        "build": build,
        "loader": loader,
        "baseline": baseline,
        "ratio": round(loader["median_frames_per_s"] / baseline["median_frames_per_s"], 2),
    }
    print(report_lines(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(partial(_run, sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
