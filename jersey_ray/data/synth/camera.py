"""What the camera sees and how it degrades it: the pitch behind the players (grass, lines,
crowd, ad boards) and the imaging conditions of a sequence (source resolution, motion blur,
lighting, noise, codec) applied by :func:`develop`."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from jersey_ray.data.synth.kit import TEAM_COLOURS
from jersey_ray.data.synth.motion import _smooth_path

JPEG_SUBSAMPLING = 2  # 4:2:0, as cameras and most detection crops
BASE_H = 192.0  # pixel amounts (blur lengths) are given for 192-pixel-high crops


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
