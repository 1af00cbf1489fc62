"""Example search sweep: learning rate x weight decay for the dot-product attention model.

Uses the seed-aware ASHA scheduler by default: whole (lr, weight_decay) configurations are
pruned on the mean validation accuracy of their seeds, never single seeds.
"""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="search_lr",
    phase="search_lr",
    description="LR x weight decay for attn_bgru_luong under seed-aware ASHA",
    models=("attn_bgru_luong",),
    seeds=(42, 123),
    train={"lr_scheme": "discriminative"},
    axes={
        "lr_temporal": (1e-4, 3e-4, 1e-3),
        "lr_backbone": (3e-5, 1e-4, 3e-4),
        "weight_decay": (0.0, 1e-4),
    },
    scheduler="asha",
    grace_period=3,
    reduction_factor=3,
)
