"""Synthetic jersey-number tracklets: the built-in data set.

``generate(OUT, ...)`` (CLI: ``python -m jersey_ray.data synth OUT``) writes the reference layout
``OUT/<jersey>/<track>/<sequence>/`` with one ``anchor.jpg`` (one of the sequence's frames, not
a copy) and the other frames ``f1.jpg, f2.jpg, ...`` in temporal order. Which frame is the anchor
is a :class:`Style` option: by default a frame drawn at random like any other (``random``), so a
single-frame model is not flattered; ``clearest`` picks the least blurred, occluded, turned one.

Two crop styles (:class:`Style`): ``player`` writes the whole player box, as a tracker would
(the study's crops); ``number`` writes the number region of each frame of that same scene,
cut as a text detector would (a loose box around the printed digits, with jitter), like the
real SoccerNet number crops (tight, small, low resolution).

Each sequence shows one player, mostly from behind: shirt in the team colour with the number in
DejaVu Sans Bold (matplotlib's copy), shorts, arms, head, on grass, sometimes with a pitch line
or ad boards. Through the sequence the player turns (yaw foreshortens shirt and number; past 90
degrees only the small chest number shows), sways, runs and drifts in the crop; the camera adds
motion blur, lighting changes, low resolution, noise and JPEG artefacts, and other players pass
in front or behind. A track is one player (build, skin, hair) with several sequences; kit
colours and number style belong to teams shared by players of every number, so only the
digits tell the classes apart.

Frames are drawn with PIL at the output size and degraded at a simulated source resolution.
Every random draw comes from ``numpy.random.default_rng([seed, ...])`` keyed by team, track and
sequence index, never from process state, so the bytes do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jersey_ray import cli
from jersey_ray.config import DEFAULT_SIZE
from jersey_ray.errors import UserError
from jersey_ray.progress import bar as progress_bar

REFERENCE_NUMBERS = ("4", "6", "8", "9", "48", "49", "64", "66", "88", "89")
DEFAULT_SEQUENCES = 1200
DEFAULT_SEQUENCES_PER_TRACK = 5.0
DEFAULT_IMBALANCE = 0.8
TRACKS_PER_TEAM = 30
MIN_TRACKS_PER_NUMBER = 3  # so the track-level split can give every class train, val and test
JPEG_QUALITY = 90
JPEG_SUBSAMPLING = 2  # 4:2:0, as cameras and most detection crops
GLYPH_PX = 96  # font size of the cached glyphs; sprites are scaled down once per sequence
CHEST = 0.35  # chest number height / back number height
SHOULDER_Y = 0.185  # local y of the shoulder line
MAX_ACROSS = 1.45  # most pixels per local x unit, in crop widths / 2
DEPTH = 0.55  # torso depth / width: a turned torso is narrower but never vanishes
BASE_H = 192.0  # pixel amounts (blur lengths) are given for 192-pixel-high crops
_CIRCLE = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)]

RGB = tuple[int, int, int]
TEAM_COLOURS: tuple[RGB, ...] = (
    (200, 30, 40), (25, 70, 170), (238, 238, 238), (28, 28, 32), (250, 210, 25),
    (25, 125, 65), (240, 120, 25), (120, 180, 230), (105, 45, 135), (125, 25, 45),
    (22, 32, 75), (150, 150, 155), (230, 120, 170), (0, 150, 150),
)  # fmt: skip
NUMBER_COLOURS: tuple[RGB, ...] = (
    (250, 250, 250), (15, 15, 15), (250, 215, 30), (210, 25, 30), (20, 35, 110), (200, 165, 60),
)  # fmt: skip
SKIN: tuple[RGB, ...] = (
    (240, 200, 170), (215, 165, 125), (175, 120, 80), (120, 80, 55), (85, 55, 40),
)  # fmt: skip
HAIR: tuple[RGB, ...] = ((20, 15, 10), (70, 45, 25), (140, 100, 55), (210, 180, 110), (40, 40, 40))
PATTERNS = ("solid", "stripes", "hoops", "sleeves", "halves")
PATTERN_P = (0.55, 0.15, 0.1, 0.12, 0.08)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote."""

    out: Path
    sequences: int
    tracks: int
    frames: int
    seconds: float
    frames_per_s: float
    per_number: dict[str, dict[str, int]]  # jersey -> {"tracks", "sequences", "frames"}

    def line(self) -> str:
        return (
            f"synth: {self.sequences:,} sequences, {self.tracks:,} tracks, {self.frames:,} frames"
            f" in {self.seconds:.1f} s ({self.frames_per_s:,.0f} frames/s) -> {self.out}"
        )

    def classes_line(self) -> str:
        cells = (f"{j}: {c['tracks']}/{c['sequences']}" for j, c in self.per_number.items())
        return "synth: tracks/sequences per number: " + ", ".join(cells)


# ----------------------------------------------------------------------------- plan


CROPS = ("player", "number")
ANCHORS = ("random", "clearest")
QUALITIES = ("broadcast", "clean")


@dataclass(frozen=True)
class Style:
    """How the frames of the data set are cut and which one is the anchor."""

    crop: str = "player"
    """``player``: the whole player box; ``number``: the number region of each frame."""
    anchor: str = "random"
    """``random``: the anchor is a frame drawn like any other; ``clearest``: the clearest."""
    quality: str = "broadcast"
    """``broadcast``: low-resolution sources, motion blur, codec artefacts, occluding players,
    players turning away; ``clean``: full resolution, little blur and noise, no occluders,
    backs to the camera (a data set a model learns in minutes on a CPU: the demo's)."""

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise UserError(f"quality {self.quality!r} is invalid: choose {' or '.join(QUALITIES)}")
        if self.crop not in CROPS:
            raise UserError(f"crop {self.crop!r} is invalid: choose {' or '.join(CROPS)}")
        if self.anchor not in ANCHORS:
            raise UserError(f"anchor {self.anchor!r} is invalid: choose {' or '.join(ANCHORS)}")


@dataclass(frozen=True)
class SeqJob:
    """One sequence to render; ``team``, ``track`` (global) and ``seq`` key its random
    streams (kit, player, sequence)."""

    jersey: str
    team: int
    track: int
    track_dir: str
    seq: int
    seq_dir: str
    n_frames: int
    size: tuple[int, int]
    seed: int
    style: Style = Style()

    @property
    def rel(self) -> str:
        return f"{self.jersey}/{self.track_dir}/{self.seq_dir}"


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (ties to the earlier index)."""
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def plan_dataset(
    numbers: tuple[str, ...],
    sequences: int,
    frames: tuple[int, int],
    size: tuple[int, int],
    seed: int,
    sequences_per_track: float,
    imbalance: float,
    style: Style = Style(),
) -> list[SeqJob]:
    """Tracks per number follow a Zipf law over the list order (earlier numbers are commoner),
    at least 3 each; sequences per track are skewed too; lengths are uniform in ``frames``.
    Tracks are spread at random over teams of about 30 players, whatever their number."""
    rng = np.random.default_rng([seed, 0])
    n_cls = len(numbers)
    n_tracks = round(sequences / sequences_per_track)
    n_tracks = min(sequences, max(MIN_TRACKS_PER_NUMBER * n_cls, n_tracks))
    zipf = 1.0 / np.arange(1, n_cls + 1) ** imbalance
    per_class = MIN_TRACKS_PER_NUMBER + largest_remainder(
        n_tracks - MIN_TRACKS_PER_NUMBER * n_cls, zipf
    )
    per_track = 1 + largest_remainder(sequences - n_tracks, rng.lognormal(0.0, 0.6, n_tracks))
    lengths = rng.integers(frames[0], frames[1] + 1, sequences)
    teams = rng.integers(max(2, round(n_tracks / TRACKS_PER_TEAM)), size=n_tracks)
    jobs: list[SeqJob] = []
    track = 0
    for jersey, n_class_tracks in zip(numbers, per_class, strict=True):
        for local in range(int(n_class_tracks)):
            for seq in range(int(per_track[track])):
                n, team = int(lengths[len(jobs)]), int(teams[track])
                track_dir, seq_dir = f"track{local:03d}", f"seq{seq:02d}"
                jobs.append(
                    SeqJob(jersey, team, track, track_dir, seq, seq_dir, n, size, seed, style)
                )
            track += 1
    return jobs


# ----------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class Kit:
    """A player's look (local units: body height 1). Kit colours and number style belong to
    the team, shared by players of every number, so the kit never tells the number; skin,
    hair and build belong to the player."""

    base_colour: int  # index into TEAM_COLOURS
    shirt: RGB
    trim: RGB
    pattern: str
    shorts: RGB
    socks: RGB
    num_fill: RGB
    num_stroke: RGB
    stroke: int  # outline width in glyph pixels, 0 = none
    num_stretch: float
    num_spacing: float
    num_height: float
    num_y: float
    skin: RGB
    hair: RGB
    shoulder: float
    waist: float
    hem: float
    head: float
    widen: float  # crop aspect distortion: boxes resized to HxW make players look wider


def _jitter(colour: RGB, rng: np.random.Generator, amount: float) -> RGB:
    shifted = np.clip(np.asarray(colour) + rng.normal(0.0, amount, 3), 0, 255)
    return tuple(int(v) for v in shifted)  # type: ignore[return-value]


def _luma(colour: RGB) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _number_colours(rng: np.random.Generator, shirt: RGB) -> tuple[RGB, RGB]:
    """A fill that stands out from the shirt (sometimes only moderately), and an outline."""
    contrast = np.array([abs(_luma(c) - _luma(shirt)) for c in NUMBER_COLOURS])
    pick, hard, outline = rng.random(3)
    good = np.flatnonzero(contrast >= 90)
    fair = np.flatnonzero((contrast >= 45) & (contrast < 90))
    pool = fair if hard < 0.15 and fair.size else good if good.size else np.argsort(-contrast)[:2]
    fill = NUMBER_COLOURS[int(pool[int(pick * pool.size)])]
    far = np.argsort([-abs(_luma(c) - _luma(fill)) for c in NUMBER_COLOURS], kind="stable")
    stroke = NUMBER_COLOURS[int(far[int(outline * 2)])]
    return fill, stroke


def make_kit(team: np.random.Generator, player: np.random.Generator, avoid: int = -1) -> Kit:
    """A team kit from ``team`` (avoiding base colour ``avoid``) on a player from ``player``;
    a fixed number of draws from each whatever the branches."""
    base = int(team.integers(len(TEAM_COLOURS)))
    base = (base + 1) % len(TEAM_COLOURS) if base == avoid else base
    shirt = _jitter(TEAM_COLOURS[base], team, 12)
    trim = _jitter(TEAM_COLOURS[int(team.integers(len(TEAM_COLOURS)))], team, 12)
    pattern = PATTERNS[int(team.choice(len(PATTERNS), p=PATTERN_P))]
    shorts = (shirt, trim, (240, 240, 240), (25, 25, 25))[int(team.integers(4))]
    socks = (shirt, trim, shorts)[int(team.integers(3))]
    fill, outline = _number_colours(team, shirt)
    stroke = (0, 0, 0, 4, 6, 8)[int(team.integers(6))]
    u, v = team.random(4), player.random(6)
    return Kit(
        base, shirt, trim, pattern, shorts, socks, fill, outline, stroke,
        num_stretch=0.8 + 0.3 * u[0], num_spacing=-0.03 + 0.12 * u[1],
        num_height=0.16 + 0.05 * u[2], num_y=0.31 + 0.04 * u[3],
        skin=SKIN[int(player.integers(len(SKIN)))], hair=HAIR[int(player.integers(len(HAIR)))],
        shoulder=0.135 + 0.03 * v[0], waist=0.112 + 0.024 * v[1], hem=0.5 + 0.05 * v[2],
        head=0.055 + 0.013 * v[3], widen=1.05 + 0.3 * v[4],
    )  # fmt: skip


# ----------------------------------------------------------------------------- number sprite


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    if not path.is_file():
        raise UserError(f"font {path} is missing; reinstall matplotlib, which ships it")
    return ImageFont.truetype(str(path), GLYPH_PX)


@lru_cache(maxsize=256)
def _glyph(char: str, stroke: int) -> tuple[Image.Image, Image.Image]:
    """(fill mask, fill+outline mask) of one digit; all digits share top and bottom."""
    font = _font()
    top, bottom = font.getbbox("0123456789", stroke_width=stroke)[1::2]
    left, _, right, _ = font.getbbox(char, stroke_width=stroke)
    size = (int(right - left), int(bottom - top))  # ints for a FreeType font
    masks = []
    for width in (0, stroke):
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).text(
            (-left, -top), char, font=font, fill=255, stroke_width=width, stroke_fill=255
        )
        masks.append(mask)
    return masks[0], masks[1]


def number_sprite(number: str, kit: Kit) -> Image.Image:
    """The printed number as an RGBA image at glyph resolution (transparent pixels carry the
    outline colour so bilinear resampling leaves no dark fringe)."""
    glyphs = [_glyph(ch, kit.stroke) for ch in number]
    gap = round(kit.num_spacing * GLYPH_PX)
    width = sum(g[1].width for g in glyphs) + gap * (len(glyphs) - 1)
    height = glyphs[0][1].height
    fill, full = Image.new("L", (width, height), 0), Image.new("L", (width, height), 0)
    x = 0
    for g_fill, g_full in glyphs:
        fill.paste(255, (x, 0), g_fill)
        full.paste(255, (x, 0), g_full)
        x += g_full.width + gap
    sprite = Image.new("RGB", (width, height), kit.num_stroke if kit.stroke else kit.num_fill)
    sprite.paste(kit.num_fill, (0, 0), fill)
    sprite.putalpha(full)
    return sprite.resize((max(1, round(width * kit.num_stretch)), height), Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class Pose:
    """Where a player is in one frame: body-box centre (px), pixels per local unit, angles."""

    cx: float
    cy: float
    sx: float
    sy: float
    roll: float
    yaw: float
    phase: float
    swing: float


@dataclass(frozen=True)
class Actor:
    """A player of one sequence: look, number sprites pre-scaled to its size, one pose a frame."""

    kit: Kit
    back: Image.Image | None  # None: draw no number (far-away players)
    front: Image.Image | None
    number_h: float  # number height in local units (fitted to the waist)
    poses: tuple[Pose | None, ...]


def _shown(pose: Pose | None) -> Pose:
    """The pose of a player drawn in every frame (the main one, those behind): never None."""
    assert pose is not None
    return pose


def _to_frame(points: np.ndarray, pose: Pose) -> np.ndarray:
    x = points[:, 0] * pose.sx
    y = (points[:, 1] - 0.5) * pose.sy
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    return np.stack([c * x - s * y + pose.cx, s * x + c * y + pose.cy], axis=1)


def _limb(a: tuple[float, float], b: tuple[float, float], w0: float, w1: float) -> list:
    dx, dy = b[0] - a[0], b[1] - a[1]
    norm = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / norm, dx / norm
    return [
        (a[0] + nx * w0, a[1] + ny * w0), (b[0] + nx * w1, b[1] + ny * w1),
        (b[0] - nx * w1, b[1] - ny * w1), (a[0] - nx * w0, a[1] - ny * w0),
    ]  # fmt: skip


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> list:
    return [(cx + rx * c, cy + ry * s) for c, s in _CIRCLE]


def _lerp(p: tuple, q: tuple, u: float) -> tuple[float, float]:
    return (p[0] + (q[0] - p[0]) * u, p[1] + (q[1] - p[1]) * u)


def _legs_and_arms(kit: Kit, pose: Pose, sh: float, wf: float) -> list[tuple[RGB, list]]:
    parts: list[tuple[RGB, list]] = []
    swing = pose.swing * math.sin(pose.phase)
    side_view = abs(math.sin(pose.yaw))
    crotch = kit.hem + 0.1
    for k in (-1, 1):
        hip = (k * 0.052 * wf, crotch)
        lift = 0.05 * max(0.0, k * math.sin(pose.phase))
        foot = (hip[0] + k * swing * side_view + k * 0.012, 0.975 - lift)
        knee_sock = _lerp(hip, foot, 0.6)
        parts.append((kit.skin, _limb(hip, foot, 0.04, 0.026)))
        parts.append((kit.socks, _limb(knee_sock, foot, 0.03, 0.027)))
        parts.append(((30, 30, 30), _limb(foot, (foot[0] + 0.01, foot[1] + 0.025), 0.03, 0.028)))
    for k in (-1, 1):
        shoulder = (k * sh * 0.93, 0.19)
        hand = (shoulder[0] + k * 0.035 - k * swing * side_view, 0.5)
        elbow = _lerp(shoulder, hand, 0.38)
        sleeve = kit.trim if kit.pattern == "sleeves" else kit.shirt
        parts.append((kit.skin, _limb(elbow, hand, 0.024, 0.02)))
        parts.append((sleeve, _limb(shoulder, elbow, 0.037, 0.03)))
    return parts


def _shirt(kit: Kit, sh: float, wa: float) -> list[tuple[RGB, list]]:
    top, hem = 0.165, kit.hem
    tl, tr, bl, br = (-sh, top + 0.02), (sh, top + 0.02), (-wa, hem), (wa, hem)
    torso = [(-sh * 0.7, top), (sh * 0.7, top), tr, br, bl, tl]
    parts = [(kit.shirt, torso)]
    bands: list[tuple[float, float]] = []
    if kit.pattern == "stripes":
        bands = [(u, u + 1 / 7) for u in (1 / 7, 3 / 7, 5 / 7)]
    elif kit.pattern == "halves":
        bands = [(0.0, 0.5)]
    for u0, u1 in bands:
        quad = [_lerp(tl, tr, u0), _lerp(tl, tr, u1), _lerp(bl, br, u1), _lerp(bl, br, u0)]
        parts.append((kit.trim, quad))
    if kit.pattern == "hoops":
        for v0 in (0.3, 0.65):
            v1 = v0 + 0.17
            quad = [_lerp(tl, bl, v0), _lerp(tr, br, v0), _lerp(tr, br, v1), _lerp(tl, bl, v1)]
            parts.append((kit.trim, quad))
    return parts


def _body_parts(kit: Kit, pose: Pose) -> list[tuple[RGB, list]]:
    """Polygons in local units (x right of the body axis, y down from the head top)."""
    cos_y, sin_y = math.cos(pose.yaw), math.sin(pose.yaw)
    wf = abs(cos_y) + DEPTH * abs(sin_y)
    sh, wa = kit.shoulder * wf, kit.waist * wf
    hem = kit.hem
    parts = _legs_and_arms(kit, pose, sh, wf)
    parts.append((kit.skin, _limb((0, 0.12), (0, 0.18), 0.028, 0.03)))
    shorts = [
        (-wa * 1.03, hem - 0.02), (wa * 1.03, hem - 0.02), (wa * 1.1, hem + 0.14),
        (0.012, hem + 0.14), (0, hem + 0.11), (-0.012, hem + 0.14), (-wa * 1.1, hem + 0.14),
    ]  # fmt: skip
    parts.append((kit.shorts, shorts))
    parts.extend(_shirt(kit, sh, wa))
    r = kit.head
    parts.append((kit.skin, _ellipse(0.0, 0.01 + r, r * 0.82, r)))
    hair_y = 0.01 + r * (0.82 if cos_y >= 0 else 0.55)
    parts.append((kit.hair, _ellipse(-0.4 * r * sin_y, hair_y, r * 0.84, r * 0.85)))
    return parts


def _paste_number(img: Image.Image, sprite: Image.Image, pose: Pose, centre, h_loc, wscale):
    """Affine-warp ``sprite`` (height ``h_loc`` local units at ``centre``, x squeezed by
    ``wscale``) into ``img``; returns its pixel box or None when it falls outside."""
    nw, nh = sprite.size
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    ax, by = pose.sx * h_loc / nh * wscale, pose.sy * h_loc / nh  # sprite px -> frame px
    m00, m01, m10, m11 = c * ax, -s * by, s * ax, c * by  # rotation @ diag(ax, by)
    ux, uy = pose.sx * centre[0] - ax * nw / 2, pose.sy * (centre[1] - 0.5) - by * nh / 2
    tx, ty = c * ux - s * uy + pose.cx, s * ux + c * uy + pose.cy
    xs = [tx + m00 * u + m01 * v for u, v in ((0, 0), (nw, 0), (nw, nh), (0, nh))]
    ys = [ty + m10 * u + m11 * v for u, v in ((0, 0), (nw, 0), (nw, nh), (0, nh))]
    x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    x1, y1 = min(img.width, math.ceil(max(xs))), min(img.height, math.ceil(max(ys)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    dx, dy = x0 - tx, y0 - ty
    data = (i00, i01, i00 * dx + i01 * dy, i10, i11, i10 * dx + i11 * dy)
    patch = sprite.transform(
        (x1 - x0, y1 - y0), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR
    )
    img.paste(patch, (x0, y0), patch)
    return (x0, y0, x1, y1)


def draw_player(img: Image.Image, draw: ImageDraw.ImageDraw, actor: Actor, pose: Pose):
    """Draw one player; returns (number box or None, body box) in pixels."""
    parts = _body_parts(actor.kit, pose)
    sizes = [len(p) for _, p in parts]
    points = _to_frame(np.array([pt for _, p in parts for pt in p], dtype=np.float64), pose)
    start = 0
    for (colour, _), n in zip(parts, sizes, strict=True):
        draw.polygon(points[start : start + n].ravel().tolist(), fill=colour)
        start += n
    body = (*points.min(axis=0).tolist(), *points.max(axis=0).tolist())
    cos_y, sin_y = math.cos(pose.yaw), math.sin(pose.yaw)
    if abs(cos_y) < 0.15:  # edge-on: the print is not visible
        return None, body
    waist = actor.kit.waist
    if cos_y > 0 and actor.back is not None:
        centre = (DEPTH * waist * sin_y, actor.kit.num_y)
        box = _paste_number(img, actor.back, pose, centre, actor.number_h, cos_y)
    elif cos_y < 0 and actor.front is not None:
        centre = (-DEPTH * waist * sin_y, 0.25)
        box = _paste_number(img, actor.front, pose, centre, actor.number_h * CHEST, -cos_y)
    else:
        box = None
    return box, body


# ----------------------------------------------------------------------------- motion


def _smooth_path(rng: np.random.Generator, t: np.ndarray, start, drift, wobble) -> np.ndarray:
    """start + linear drift + a slow sine: parameters change smoothly across a sequence."""
    freq, phase = rng.uniform(0.3, 1.2), rng.uniform(0.0, 2 * math.pi)
    return start + drift * t + wobble * np.sin(2 * math.pi * freq * t + phase)


def _yaw_path(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Mostly seen from behind; a quarter of the sequences turn (past side-on to the front),
    some stay side-on. Angles in radians, 0 = back to the camera."""
    kind, sign, flip = rng.random(3)
    base, drift = rng.normal(0.0, 0.35), rng.normal(0.0, 0.3)
    turn, side = rng.uniform(1.0, 2.3), rng.uniform(0.9, 1.35)
    sgn = 1.0 if sign < 0.5 else -1.0
    wobble = 0.06 * np.sin(2 * math.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 6.3))
    if kind < 0.62:
        return base + drift * t + wobble
    if kind < 0.87:
        s = 1 - t if flip < 0.5 else t
        return 0.6 * base + sgn * turn * s * s * (3 - 2 * s) + wobble
    return sgn * side + 0.5 * drift * t + wobble


def _sprites(number: str, kit: Kit, sy: float) -> tuple[Image.Image, Image.Image, float]:
    """Back and chest sprites pre-scaled to their nominal pixel height (so the per-frame warp
    is near 1:1 and does not alias), and the number height fitted to the shirt."""
    sprite = number_sprite(number, kit)
    down = (kit.num_y - SHOULDER_Y) / (kit.hem - SHOULDER_Y)
    half_width = kit.shoulder + (kit.waist - kit.shoulder) * down  # of the back at the number
    number_h = min(kit.num_height, 1.76 * half_width * sprite.height / sprite.width)
    scaled = []
    for fraction in (1.0, CHEST):
        h = max(2, round(number_h * fraction * sy))
        w = max(1, round(sprite.width * h / sprite.height))
        scaled.append(sprite.resize((w, h), Image.Resampling.LANCZOS))
    return scaled[0], scaled[1], number_h


def _main_actor(
    rng: np.random.Generator, number: str, kit: Kit, n: int, size, clean: bool = False
) -> Actor:
    """The tracked player. Boxes run from the head down to between the knees and the feet
    (trackers often cut the legs), so the torso fills much of the crop. ``clean``: the back
    stays turned to the camera."""
    h, w = size
    t = np.linspace(0.0, 1.0, n)
    yaw = _yaw_path(rng, t)
    if clean:
        yaw = np.clip(yaw, -0.5, 0.5)
    roll = _smooth_path(rng, t, rng.normal(0, 0.07), rng.normal(0, 0.06), 0.03)
    zoom = _smooth_path(rng, t, rng.uniform(0.95, 1.3), rng.normal(0, 0.05), 0.015)
    top = _smooth_path(rng, t, rng.uniform(0.0, 0.05), rng.normal(0, 0.025), 0.006)
    dx = _smooth_path(rng, t, rng.normal(0, 0.045), rng.normal(0, 0.04), 0.01)
    dx, top = dx + rng.normal(0, 0.01, n), top + rng.normal(0, 0.006, n)  # detector jitter
    phase = rng.uniform(0, 2 * math.pi) + rng.uniform(0.25, 1.0) * np.arange(n)
    swing = rng.uniform(0.02, 0.07)
    across = np.minimum(kit.widen * zoom, MAX_ACROSS)  # keep the shoulders inside the crop
    poses = tuple(
        Pose(w * (0.5 + dx[i]), h * (0.5 * zoom[i] + top[i]), 2 * w * across[i], h * zoom[i],
             roll[i], yaw[i], phase[i], swing)
        for i in range(n)
    )  # fmt: skip
    back, front, number_h = _sprites(number, kit, h * float(zoom.mean()))
    return Actor(kit, back, front, number_h, poses)


def _background_players(rng: np.random.Generator, n: int, size, main: Actor) -> list[Actor]:
    """Smaller players further away, behind the main one; too small to need a number."""
    h, w = size
    t = np.linspace(0.0, 1.0, n)
    ref = _shown(main.poses[0])
    actors = []
    for _ in range(int(rng.choice([0, 0, 1, 1, 2]))):
        kit = make_kit(rng, rng)
        scale = rng.uniform(0.35, 0.65)
        x = (rng.uniform(-0.2, 1.2) + rng.normal(0, 0.3) * t) * w
        y = h * (0.5 - rng.uniform(0.08, 0.3))
        yaw = rng.uniform(0, 2 * math.pi) + rng.normal(0, 0.3) * t
        phase = rng.uniform(0, 2 * math.pi) + rng.uniform(0.3, 1.0) * np.arange(n)
        poses = tuple(
            Pose(x[i], y, ref.sx * scale, ref.sy * scale, 0.0, yaw[i], phase[i], 0.05)
            for i in range(n)
        )
        actors.append(Actor(kit, None, None, 0.0, poses))
    return actors


def _occluders(rng: np.random.Generator, n: int, size, main: Actor) -> list[Actor]:
    """Closer players of another team crossing the crop in front of the main one."""
    h, w = size
    t = np.linspace(0.0, 1.0, n)
    ref = _shown(main.poses[0])
    actors = []
    for _ in range(int(rng.choice([0, 0, 0, 0, 0, 0, 1, 1, 1, 2]))):
        kit = make_kit(rng, rng, avoid=main.kit.base_colour)
        number = str(int(rng.integers(1, 100)))
        start, duration, direction = rng.uniform(-0.2, 0.8), rng.uniform(0.25, 0.7), rng.random()
        scale, y_off = rng.uniform(0.95, 1.3), rng.normal(0.08, 0.05)
        yaw = rng.uniform(2.0, 4.3) + rng.normal(0, 0.3) * t
        phase = rng.uniform(0, 2 * math.pi) + rng.uniform(0.4, 1.0) * np.arange(n)
        u = (t - start) / duration
        x = (-0.8 + 2.6 * u if direction < 0.5 else 1.8 - 2.6 * u) * w
        sy = ref.sy * scale
        back, front, number_h = _sprites(number, kit, sy)
        poses = tuple(
            Pose(x[i], h * (0.5 + y_off), ref.sx * scale, sy, 0.0, yaw[i], phase[i], 0.06)
            if 0.0 <= u[i] <= 1.0 else None
            for i in range(n)
        )  # fmt: skip
        actors.append(Actor(kit, back, front, number_h, poses))
    return actors


# ----------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    """Imaging conditions of one sequence (arrays have one entry per frame). Frames are drawn
    at the output size, reduced to the simulated source resolution, degraded there (blur,
    light, noise, JPEG, as the camera and the video codec would) and resized back up."""

    pan: np.ndarray  # [n, 2] int: top-left of the crop in the background
    source: tuple[int, int]  # (height, width) of the simulated source crop
    scale: float  # output height / source height (>= 1)
    bright: np.ndarray
    grad: np.ndarray  # strength of the lighting gradient along ``field``
    field: np.ndarray  # [source H, source W] float32 in [-1, 1]
    tint: np.ndarray  # [source W * 3]: per-channel colour cast, tiled along a row
    grain: np.ndarray  # [source H + 16, source W + 16] standard normal noise
    noise: float  # grain strength (of 128)
    blur_len: np.ndarray  # motion blur length in source pixels
    blur_angle: np.ndarray
    jpeg: int  # quality of a JPEG round trip at the source size, 0 = none


def _source_size(rng: np.random.Generator, size) -> tuple[tuple[int, int], float]:
    """Most real crops are smaller than the model input: 30% full resolution, 55% from
    70-150 px high sources, 15% from 42-70 px; a soft lens lowers the resolution a little."""
    h, w = size
    level, mid, low, soft = rng.random(), rng.uniform(70, 150), rng.uniform(42, 70), rng.random()
    source_h = BASE_H * 8 if level < 0.3 else mid if level < 0.85 else low
    scale = max(1.0, h / source_h, 1.0 + 0.9 * soft * h / BASE_H)
    if scale < 1.15:
        return (h, w), 1.0
    return (max(4, round(h / scale)), max(4, round(w / scale))), scale


def _camera(
    rng: np.random.Generator, n: int, size, margin: tuple[int, int], clean: bool = False
) -> Camera:
    """``clean``: full resolution, a fifth of the motion blur, little grain, no codec."""
    t = np.linspace(0.0, 1.0, n)
    (sh, sw), scale = _source_size(rng, size)
    if clean:
        (sh, sw), scale = size, 1.0
    pan = np.clip(rng.uniform(-0.6, 0.6, 2) + rng.normal(0, 0.5, 2) * t[:, None], -1, 1)
    pan = np.rint((pan + 1) * np.array(margin)).astype(np.int64)
    bright = _smooth_path(rng, t, rng.uniform(0.72, 1.22), rng.normal(0, 0.12), 0.04)
    grad = np.clip(_smooth_path(rng, t, rng.uniform(0, 0.35), rng.normal(0, 0.1), 0.03), 0, 0.5)
    angle = rng.uniform(0, 2 * math.pi)
    xs, ys = np.meshgrid(np.linspace(-1, 1, sw), np.linspace(-1, 1, sh))
    field = (xs * math.cos(angle) + ys * math.sin(angle)).astype(np.float32)
    tint = np.tile((1.0 + rng.normal(0, 0.05, 3)).astype(np.float32), sw)
    grain = rng.standard_normal((sh + 16, sw + 16), dtype=np.float32)
    blur = np.full(n, rng.uniform(0.0, 2.5))
    event, centre = rng.random(2)
    width, peak = rng.uniform(0.12, 0.45), rng.uniform(4, 12)
    if event < 0.4:  # a burst of fast motion
        blur = blur + peak * np.exp(-(((t - centre) / width) ** 2))
    blur_angle = _smooth_path(rng, t, rng.uniform(0, math.pi), rng.normal(0, 0.3), 0.1)
    noise, jpeg_draw, quality = rng.uniform(1, 7), rng.random(), int(rng.integers(18, 46))
    if clean:
        blur, noise, jpeg_draw = blur / 5, min(noise, 2.0), 1.0
    return Camera(
        pan, (sh, sw), scale, bright, grad, field, tint, grain, noise,
        blur * sh / BASE_H, blur_angle, quality if jpeg_draw < 0.3 else 0,
    )  # fmt: skip


def _motion_blur(arr: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Average of shifted copies along ``angle``: a linear motion-blur kernel."""
    k = round(length)
    if k < 2:
        return arr
    h, w = arr.shape[:2]
    pad = k // 2 + 1
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    acc = np.zeros_like(arr)
    for j in range(k):
        r = j - (k - 1) / 2
        ox, oy = pad + round(r * math.cos(angle)), pad + round(r * math.sin(angle))
        acc += padded[oy : oy + h, ox : ox + w]
    return acc / k


def develop(img: Image.Image, cam: Camera, i: int) -> Image.Image:
    """Camera effects on a drawn frame (see :class:`Camera`)."""
    size = img.size
    sh, sw = cam.source
    if (sw, sh) != size:
        img = img.resize((sw, sh), Image.Resampling.BOX)  # area average, as a coarser sensor
    arr = _motion_blur(np.asarray(img, dtype=np.float32), cam.blur_len[i], cam.blur_angle[i])
    oy, ox = (i * 5) % 16, (i * 11) % 16
    grain = cam.grain[oy : oy + sh, ox : ox + sw]  # multiplicative: one broadcast for all
    gain = cam.bright[i] * (1.0 + cam.grad[i] * cam.field) * (1.0 + cam.noise / 128 * grain)
    arr *= gain[..., None]
    arr.reshape(sh, sw * 3)[...] *= cam.tint  # colour cast; contiguous rows broadcast fast
    img = Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8))
    if cam.jpeg:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=cam.jpeg, subsampling=JPEG_SUBSAMPLING)
        img = Image.open(buf).convert("RGB")
    return img if img.size == size else img.resize(size, Image.Resampling.BILINEAR)


# ----------------------------------------------------------------------------- background


def _grass(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Green with mowing stripes and low-frequency texture."""
    base = np.array([rng.uniform(35, 95), rng.uniform(105, 175), rng.uniform(30, 75)])
    img = Image.new("RGB", (w, h), tuple(int(v) for v in base))
    draw = ImageDraw.Draw(img)
    angle = rng.uniform(-0.5, 0.5) + (math.pi / 2 if rng.random() < 0.5 else 0.0)
    period, light = rng.uniform(0.25, 0.6) * w, rng.uniform(1.06, 1.2)
    colour = tuple(int(v) for v in np.clip(base * light, 0, 255))
    d, p, diag = (math.cos(angle), math.sin(angle)), (-math.sin(angle), math.cos(angle)), w + h
    for j in range(-int(diag / period) - 1, int(diag / period) + 1):
        s0, s1 = j * period, (j + 0.5) * period
        quad = [
            (w / 2 + d[0] * s + p[0] * e * diag, h / 2 + d[1] * s + p[1] * e * diag)
            for s, e in ((s0, -1), (s0, 1), (s1, 1), (s1, -1))
        ]
        draw.polygon(quad, fill=colour)
    texture = rng.normal(0, 1, (h // 16 + 2, w // 16 + 2)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(texture, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    )
    arr = np.asarray(img, dtype=np.float32) * (1.0 + 0.07 * texture)[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Grass, sometimes a pitch line, sometimes crowd and ad boards at the top."""
    img = _grass(rng, w, h)
    draw = ImageDraw.Draw(img)
    line, width = rng.random(), rng.uniform(1, 2.2)
    x0, x1 = rng.uniform(-0.5, 1.5, 2), rng.uniform(0, 1, 2)
    if line < 0.35:
        ends = [(x0[0] * w, x1[0] * h), (x0[1] * w, x1[1] * h)]
        draw.line(ends, fill=(222, 228, 220), width=max(1, round(width * h / 60)))
    boards, band = rng.random(), rng.uniform(0.1, 0.25)
    if boards < 0.3:
        hb = max(2, round(band * h))
        crowd = rng.integers(0, 160, (hb // 6 + 1, w // 6 + 1, 3), dtype=np.uint8)
        img.paste(Image.fromarray(crowd).resize((w, hb), Image.Resampling.NEAREST), (0, 0))
        x = 0
        while x < w:
            seg = int(rng.integers(w // 4, w)) + 1
            colour = TEAM_COLOURS[int(rng.integers(len(TEAM_COLOURS)))]
            draw.rectangle([x, int(hb * 0.6), x + seg, hb], fill=colour)
            x += seg
    return img


# ----------------------------------------------------------------------------- sequences


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


# ----------------------------------------------------------------------------- generate


def check_numbers(numbers: Iterable[str] | None) -> tuple[str, ...]:
    """The class list as given (default: the reference's 10), or UserError."""
    numbers = tuple(REFERENCE_NUMBERS if numbers is None else numbers)
    if not numbers:
        raise UserError("no jersey numbers given; give 1-2 digit numbers such as 4,6,48")
    for number in numbers:
        if not isinstance(number, str) or not re.fullmatch(r"[0-9]{1,2}", number):
            raise UserError(
                f"jersey number {number!r} is invalid: give 1-2 digit strings such as 7, 07, 48"
            )
    if len(set(numbers)) != len(numbers):
        raise UserError(f"jersey numbers {','.join(numbers)} repeat a number; give each once")
    return numbers


def _check_args(numbers, sequences, size, frames, seed, workers, per_track, imbalance) -> None:
    h, w = size
    if not (16 <= h <= 4096 and 8 <= w <= 4096):
        raise UserError(
            f"size {h}x{w} is invalid: give HEIGHTxWIDTH with 16 <= HEIGHT <= 4096 and "
            f"8 <= WIDTH <= 4096, e.g. {cli.EXAMPLE_SIZE}"
        )
    if not 1 <= frames[0] <= frames[1] <= 1000:
        raise UserError(f"frames {frames[0]}-{frames[1]} is invalid: need 1 <= MIN <= MAX <= 1000")
    need = MIN_TRACKS_PER_NUMBER * len(numbers)
    if sequences < need:
        raise UserError(
            f"{sequences} sequences are too few for {len(numbers)} numbers: each needs "
            f"{MIN_TRACKS_PER_NUMBER} tracks, so give at least {need}"
        )
    if seed < 0:
        raise UserError(f"seed {seed} is invalid: use a whole number >= 0")
    if workers < 1:
        raise UserError(f"workers {workers} is invalid: use >= 1")
    if not per_track >= 1:
        raise UserError(f"sequences per track {per_track} is invalid: use >= 1")
    if not 0 <= imbalance <= 5:
        raise UserError(f"imbalance {imbalance} is invalid: use 0 (balanced) to 5")


def _check_out(out: Path, force: bool) -> None:
    resolved = out.resolve()
    if resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise UserError(f"{out} is the current folder or above it; give a new folder as OUT")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder; pick another output folder")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not force:
        raise UserError(f"{out} is not empty; pass --force to replace it or pick another folder")
    for entry in out.iterdir():  # --force only ever deletes something shaped like a data set
        if not (entry.is_dir() and re.fullmatch(r"[0-9]{1,2}", entry.name)):
            raise UserError(
                f"--force would delete {out}, but {entry.name!r} there is no jersey folder; "
                "delete it yourself or pick another output folder"
            )


def _pool_context() -> multiprocessing.context.BaseContext:
    """Not fork: callers such as the sweep driver may hold threads (torch, Ray) that a fork
    would copy mid-state. A forkserver that preloads this module pays the imports (torch comes
    in through jersey_ray.data) once instead of once per worker; spawn where it is missing."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _run_jobs(jobs: list[SeqJob], root: Path, workers: int, progress: bool) -> None:
    total = sum(job.n_frames for job in jobs)
    with progress_bar(total=total, unit="frame", desc="synth", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                bar.update(write_sequence(job, str(root)))
            return
        chunk = max(1, min(16, len(jobs) // (workers * 8)))
        with _pool_context().Pool(workers) as pool:
            work = partial(write_sequence, root=str(root))
            for n in pool.imap_unordered(work, jobs, chunksize=chunk):
                bar.update(n)


def _summary(jobs: list[SeqJob], out: Path, seconds: float) -> SynthSummary:
    per: dict[str, dict[str, int]] = {}
    for job in jobs:
        counts = per.setdefault(job.jersey, {"tracks": 0, "sequences": 0, "frames": 0})
        counts["tracks"] += job.seq == 0
        counts["sequences"] += 1
        counts["frames"] += job.n_frames
    frames = sum(c["frames"] for c in per.values())
    tracks = sum(c["tracks"] for c in per.values())
    return SynthSummary(out, len(jobs), tracks, frames, seconds, frames / max(seconds, 1e-9), per)


def generate(
    out: str | os.PathLike,
    *,
    sequences: int = DEFAULT_SEQUENCES,
    numbers: Iterable[str] | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    frames: tuple[int, int] = (4, 24),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    sequences_per_track: float = DEFAULT_SEQUENCES_PER_TRACK,
    imbalance: float = DEFAULT_IMBALANCE,
    crop: str = Style.crop,
    anchor: str = Style.anchor,
    quality: str = Style.quality,
) -> SynthSummary:
    """Write the synthetic data set to ``out`` (size is (height, width) of the player scene;
    numbers default to the reference's 10 classes; ``crop``, ``anchor``, ``quality``:
    :class:`Style`).
    The same arguments give byte-identical files for any ``workers``. Written to
    ``out.tmp-*`` first, renamed when complete."""
    style = Style(crop, anchor, quality)
    numbers = check_numbers(numbers)
    workers = os.cpu_count() or 1 if workers is None else workers
    _check_args(numbers, sequences, size, frames, seed, workers, sequences_per_track, imbalance)
    out = Path(out)
    _check_out(out, force)
    size = (int(size[0]), int(size[1]))
    jobs = plan_dataset(
        numbers, sequences, frames, size, seed, sequences_per_track, imbalance, style
    )
    start = time.perf_counter()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{out.resolve().name}.tmp-", dir=out.parent))
    except OSError as err:
        raise UserError(f"cannot create {out}: {err.strerror or err}") from None
    try:
        _run_jobs(jobs, tmp, min(workers, len(jobs)), progress)
        _check_out(out, force)  # re-checked: something may have appeared meanwhile
        if out.is_dir():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as err:
        raise UserError(f"writing {out} failed: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op after the rename
    return _summary(jobs, out, time.perf_counter() - start)


# ----------------------------------------------------------------------------- CLI


def _frames_arg(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN-MAX (e.g. 4-24) or N")
    return int(match[1]), int(match[2] or match[1])


DESCRIPTION = (
    "Generate the built-in synthetic jersey-number tracklets in the reference layout "
    "OUT/<jersey>/<track>/<sequence>/{anchor.jpg,f1.jpg,...}."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The generator's options (``python -m jersey_ray.data synth``)."""
    p.add_argument("out", type=Path, metavar="OUT", help="output folder (must be empty or new)")
    p.add_argument(
        "--sequences",
        type=int,
        default=DEFAULT_SEQUENCES,
        help=f"sequences in total (default {DEFAULT_SEQUENCES})",
    )
    p.add_argument(
        "--numbers",
        type=cli.numbers,
        default=None,
        metavar="N,N,...",
        help="jersey numbers 0-99 ('07' is its own class); earlier ones get more "
        f"tracks (default {','.join(REFERENCE_NUMBERS)})",
    )
    p.add_argument(
        "--size",
        type=cli.size,
        default=DEFAULT_SIZE,
        metavar="HxW",
        help=f"frame size, height x width (default {cli.EXAMPLE_SIZE})",
    )
    p.add_argument(
        "--frames",
        type=_frames_arg,
        default=(4, 24),
        metavar="MIN-MAX",
        help="frames per sequence incl. the anchor, uniform (default 4-24)",
    )
    p.add_argument(
        "--sequences-per-track",
        type=float,
        default=DEFAULT_SEQUENCES_PER_TRACK,
        metavar="M",
        help="mean sequences per track; every number gets >= 3 tracks "
        f"(default {DEFAULT_SEQUENCES_PER_TRACK:g})",
    )
    p.add_argument(
        "--imbalance",
        type=float,
        default=DEFAULT_IMBALANCE,
        metavar="S",
        help="Zipf exponent of tracks per number in list order, 0 = balanced "
        f"(default {DEFAULT_IMBALANCE:g})",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        default=Style.crop,
        help="player: whole player boxes (the study's crops); number: the number region of "
        f"each frame, like the SoccerNet number crops (default {Style.crop})",
    )
    p.add_argument(
        "--anchor",
        choices=ANCHORS,
        default=Style.anchor,
        help="which frame is anchor.jpg: random (like any other frame) or clearest (default "
        f"{Style.anchor})",
    )
    p.add_argument(
        "--quality",
        choices=QUALITIES,
        default=Style.quality,
        help="broadcast: low resolution, blur, codec, occlusion, turning players; clean: full "
        f"resolution, backs to the camera, no occluders (default {Style.quality})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: all CPUs); never changes the output",
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT data set")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate from parsed :func:`add_arguments` options and print what was written."""
    summary = generate(
        args.out, sequences=args.sequences, numbers=args.numbers, size=args.size,
        frames=args.frames, seed=args.seed, workers=args.workers, progress=not args.no_progress,
        force=args.force, sequences_per_track=args.sequences_per_track, imbalance=args.imbalance,
        crop=args.crop, anchor=args.anchor, quality=args.quality,
    )  # fmt: skip
    print(summary.line())
    print(summary.classes_line())
    return 0
