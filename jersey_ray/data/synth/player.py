"""Drawing one player into a frame: body polygons from a :class:`Pose`, then the number
warped onto the shirt (back or chest, foreshortened by the yaw)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from jersey_ray.data.synth.kit import RGB, Kit

CHEST = 0.35  # chest number height / back number height
DEPTH = 0.55  # torso depth / width: a turned torso is narrower but never vanishes
_CIRCLE = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)]


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
