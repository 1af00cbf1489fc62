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

Modules, in the order a sequence goes through them: ``plan`` (the sequences to render and their
:class:`Style`), ``kit`` (team kits, the printed number), ``player`` (drawing one player),
``motion`` (the players of a sequence and their paths), ``camera`` (the pitch behind and the
camera's degradations), ``render`` (one sequence's frames and files), ``dataset``
(:func:`generate`: checks, worker pool, summary) and ``command`` (the CLI). This package
re-exports their names, so ``synth.generate``, ``synth.Style`` and the like keep working.
"""

from jersey_ray.data.synth.camera import BASE_H, JPEG_SUBSAMPLING, Camera, _camera, develop
from jersey_ray.data.synth.command import DESCRIPTION, add_arguments, run
from jersey_ray.data.synth.dataset import SynthSummary, check_numbers, generate
from jersey_ray.data.synth.kit import (
    GLYPH_PX,
    HAIR,
    NUMBER_COLOURS,
    PATTERN_P,
    PATTERNS,
    RGB,
    SKIN,
    TEAM_COLOURS,
    Kit,
    make_kit,
    number_sprite,
)
from jersey_ray.data.synth.motion import MAX_ACROSS, SHOULDER_Y, _main_actor
from jersey_ray.data.synth.plan import (
    ANCHORS,
    CROPS,
    DEFAULT_IMBALANCE,
    DEFAULT_SEQUENCES,
    DEFAULT_SEQUENCES_PER_TRACK,
    MIN_TRACKS_PER_NUMBER,
    QUALITIES,
    REFERENCE_NUMBERS,
    TRACKS_PER_TEAM,
    SeqJob,
    Style,
    largest_remainder,
    plan_dataset,
)
from jersey_ray.data.synth.player import CHEST, DEPTH, Actor, Pose, draw_player
from jersey_ray.data.synth.render import JPEG_QUALITY, render_frames, write_sequence

__all__ = [
    "ANCHORS",
    "BASE_H",
    "CHEST",
    "CROPS",
    "DEFAULT_IMBALANCE",
    "DEFAULT_SEQUENCES",
    "DEFAULT_SEQUENCES_PER_TRACK",
    "DEPTH",
    "DESCRIPTION",
    "GLYPH_PX",
    "HAIR",
    "JPEG_QUALITY",
    "JPEG_SUBSAMPLING",
    "MAX_ACROSS",
    "MIN_TRACKS_PER_NUMBER",
    "NUMBER_COLOURS",
    "PATTERNS",
    "PATTERN_P",
    "QUALITIES",
    "REFERENCE_NUMBERS",
    "RGB",
    "SHOULDER_Y",
    "SKIN",
    "TEAM_COLOURS",
    "TRACKS_PER_TEAM",
    "Actor",
    "Camera",
    "Kit",
    "Pose",
    "SeqJob",
    "Style",
    "SynthSummary",
    "_camera",
    "_main_actor",
    "add_arguments",
    "check_numbers",
    "develop",
    "draw_player",
    "generate",
    "largest_remainder",
    "make_kit",
    "number_sprite",
    "plan_dataset",
    "render_frames",
    "run",
    "write_sequence",
]
