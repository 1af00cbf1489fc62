"""The players of one sequence and how they move: the tracked player (turning, swaying,
drifting in the crop), smaller players behind, and occluders crossing in front."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from jersey_ray.data.synth.kit import Kit, make_kit, number_sprite
from jersey_ray.data.synth.player import CHEST, Actor, Pose, _shown

SHOULDER_Y = 0.185  # local y of the shoulder line
MAX_ACROSS = 1.45  # most pixels per local x unit, in crop widths / 2


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
