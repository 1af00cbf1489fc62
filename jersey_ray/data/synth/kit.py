"""A player's look: team kit colours and pattern, build, skin, hair, and the printed number.

:func:`make_kit` draws a :class:`Kit`; :func:`number_sprite` renders the number in DejaVu Sans
Bold (matplotlib's copy) from cached digit glyphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jersey_ray.errors import UserError

GLYPH_PX = 96  # font size of the cached glyphs; sprites are scaled down once per sequence

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
