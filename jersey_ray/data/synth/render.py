"""Rendering one sequence: the scene frame by frame, the crop style, the anchor, and the
JPEG files of :func:`write_sequence` (what each worker process runs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jersey_ray.data.synth.camera import (
    BASE_H,
    JPEG_SUBSAMPLING,
    Camera,
    _background,
    _camera,
    develop,
)
from jersey_ray.data.synth.kit import make_kit
from jersey_ray.data.synth.motion import _background_players, _main_actor, _occluders
from jersey_ray.data.synth.plan import SeqJob
from jersey_ray.data.synth.player import Actor, _shown, draw_player

JPEG_QUALITY = 90


def _overlap(box, body) -> float:
    """Fraction of the number box covered by an occluder's body box."""
    if box is None:
        return 0.0
    w = min(box[2], body[2]) - max(box[0], body[0])
    h = min(box[3], body[3]) - max(box[1], body[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return max(0.0, w) * max(0.0, h) / area if w > 0 and h > 0 else 0.0


def _difficulty(main: Actor, cam: Camera, i: int, box, covered: float) -> float:
    """Lower is clearer; the clearest frame becomes the anchor."""
    if box is None:
        return 100.0
    facing = max(0.0, math.cos(_shown(main.poses[i]).yaw))
    blur = cam.blur_len[i] * BASE_H / cam.source[0]  # in pixels of a 192-high crop
    return 3 * covered + 2 * (1 - facing) + blur / 8


def render_frames(job: SeqJob) -> tuple[list[Image.Image], int]:
    """All frames of one sequence in temporal order (cut as ``job.style.crop`` says), and the
    index of the anchor (``job.style.anchor``)."""
    frames, scores, boxes = _render_scene(job)
    if job.style.crop == "number":
        frames = _number_crops(
            frames, boxes, np.random.default_rng([job.seed, 5, job.track, job.seq])
        )
    if job.style.anchor == "clearest":
        return frames, int(np.argmin(scores))
    # its own stream: the frames do not depend on how the anchor is chosen
    return frames, int(
        np.random.default_rng([job.seed, 4, job.track, job.seq]).integers(len(frames))
    )


def _render_scene(job: SeqJob) -> tuple[list[Image.Image], list[float], list]:
    """The player-box frames, each frame's difficulty and the main number's box (or None)."""
    h, w = job.size
    kit = make_kit(
        np.random.default_rng([job.seed, 3, job.team]),
        np.random.default_rng([job.seed, 1, job.track]),
    )
    rng = np.random.default_rng([job.seed, 2, job.track, job.seq])
    n = job.n_frames
    clean = job.style.quality == "clean"
    main = _main_actor(rng, job.jersey, kit, n, job.size, clean)
    behind = _background_players(rng, n, job.size, main)
    front = [] if clean else _occluders(rng, n, job.size, main)
    margin = (w // 2, h // 4)
    cam = _camera(rng, n, job.size, margin, clean)
    background = _background(rng, w + 2 * margin[0], h + 2 * margin[1])
    frames, scores, boxes = [], [], []
    for i in range(n):
        x, y = (int(v) for v in cam.pan[i])
        img = background.crop((x, y, x + w, y + h))
        draw = ImageDraw.Draw(img)
        for actor in behind:
            draw_player(img, draw, actor, _shown(actor.poses[i]))
        box, _ = draw_player(img, draw, main, _shown(main.poses[i]))
        covered = 0.0
        for actor in front:
            pose = actor.poses[i]
            if pose is not None:
                covered = max(covered, _overlap(box, draw_player(img, draw, actor, pose)[1]))
        frames.append(develop(img, cam, i))
        scores.append(_difficulty(main, cam, i, box, covered))
        boxes.append(box)
    return frames, scores, boxes


def _number_crops(frames: list[Image.Image], boxes: list, rng: np.random.Generator) -> list:
    """Each frame's number region, cut loosely as a text detector would: the printed box grown
    by 5-30% per side with jitter. Where the number is not visible (turned edge-on), the last
    visible box (or the shirt's middle) is cut: a detector's miss that the tracklet keeps."""
    w, h = frames[0].size
    last = next((b for b in boxes if b is not None), (w * 0.3, h * 0.25, w * 0.7, h * 0.45))
    crops = []
    for img, box in zip(frames, boxes, strict=True):
        last = box if box is not None else last
        x0, y0, x1, y1 = last
        bw, bh = max(x1 - x0, 2), max(y1 - y0, 2)
        grow = rng.uniform(0.05, 0.3, 4)
        cut = (
            max(0, round(x0 - grow[0] * bw)), max(0, round(y0 - grow[1] * bh)),
            min(w, round(x1 + grow[2] * bw)), min(h, round(y1 + grow[3] * bh)),
        )  # fmt: skip
        crops.append(img.crop(cut) if cut[2] - cut[0] >= 2 and cut[3] - cut[1] >= 2 else img)
    return crops


def write_sequence(job: SeqJob, root: str) -> int:
    """Render one sequence into ``root/<jersey>/<track>/<sequence>/``; returns its frame count."""
    frames, anchor = render_frames(job)
    folder = Path(root) / job.rel
    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for i, img in enumerate(frames):
        if i == anchor:
            name = "anchor.jpg"
        else:
            k += 1
            name = f"f{k}.jpg"
        img.save(folder / name, "JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
    return len(frames)
