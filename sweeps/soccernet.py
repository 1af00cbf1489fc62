"""The study on real data: SoccerNet number-region crops (``../shared/data/soccernet-numcrops``;
import with ``python -m jersey_ray.data import-soccernet crops.tar.gz data/soccernet`` and run
with ``--data data/soccernet``).

These are tight crops of the printed number (median 24x26 px), not whole players, so the study's
tall letterbox would mostly upscale blur into a strip. Measured on 2 CPU cores (basic_r18 from
scratch, 3 epochs, batch 64, LR 3e-3): 16x16 0.693 test acc_number (29 s an epoch), 24x24 0.792
(31 s), 32x32 0.839 (36 s), 48x48 0.890 (48 s); 32x32 is the budget's best point on a CPU
(on a GPU take 48x48 or more). Tracklets are long (median 31 crops), cut into sequences of up to
16; a model reads 4 of them. The held-out split measures two-digit generalization where the
numbers allow it (38 numbers; no 7x or 8x). One model per phase, trained from scratch (the
crops are far from ImageNet's images; ``--pretrained imagenet`` works where the weights can be
fetched); 8 epochs and 3 seeds: ``basic_r18`` and ``seq_bgru_mp`` took 18 minutes on 2 CPU
cores, ``attn_bgru_luong`` adds about 8 minutes a trial.

These crops are legible-only number regions (a crop was kept only where an off-the-shelf reader
agreed with the tracklet's number), so they are easier than the full SoccerNet task (published
about 69-89% on its test set with illegible tracklets, about 85% on legible ones, from
whole-player crops): compare numbers here only with numbers measured on this subset.
"""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="soccernet",
    phase="soccernet",
    description="SoccerNet number crops: one model per phase, held-out numbers",
    models=("basic_r18", "seq_bgru_mp", "attn_bgru_luong"),
    data={"size": (32, 32), "max_frames": 4, "split": "heldout"},
    train={
        "pretrained": "none",
        "batch_size": 64,
        "lr": 3e-3,
        "lr_backbone": 1e-3,
        "lr_temporal": 3e-3,
        "lr_heads": 3e-3,
        "epochs": 8,
    },
    seeds=(42, 123, 456),
    reference="basic_r18",
)
