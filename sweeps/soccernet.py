"""The study on real data: SoccerNet number-region crops (``../shared/data/soccernet-numcrops``;
import with ``python -m jersey_ray.data import-soccernet crops.tar.gz data/soccernet`` and run
with ``--data data/soccernet``).

These are tight crops of the printed number (median 24x26 px), not whole players, so the study's
192x96 letterbox would mostly upscale blur: a 32x32 letterbox keeps them legible at a fraction
of the cost (sizes measured: see the README). Tracklets are long (median 31 crops), cut into
sequences of up to 16; a model reads up to 8 of them. The held-out split measures two-digit
generalization where the numbers allow it (38 numbers; no 7x or 8x). One model per phase,
trained from scratch (the crops are far from ImageNet's images; ``--pretrained imagenet``
works where the weights can be fetched).

These crops are legible-only number regions (an OCR filter kept only frames it could read), so
they are easier than the full SoccerNet task (published 85-88% with illegible tracklets and
whole-player crops): compare numbers here only with numbers measured on this subset.
"""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="soccernet",
    phase="soccernet",
    description="SoccerNet number crops: one model per phase, held-out numbers",
    models=("basic_r18", "seq_bgru_mp", "attn_bgru_luong"),
    data={"size": (32, 32), "max_frames": 8, "split": "heldout"},
    train={
        "pretrained": "none",
        "batch_size": 64,
        "lr": 3e-3,
        "lr_backbone": 1e-3,
        "lr_temporal": 3e-3,
        "lr_heads": 3e-3,
        "epochs": 15,
    },
    seeds=(42, 123, 456),
    reference="basic_r18",
)
