"""Phase 0 (report Table 1): single-frame CNNs on the anchor frame, uniform LR 1e-3 (the phase's
protocol, ``jersey_ray.models.PROTOCOLS``)."""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="phase0",
    phase="phase0",
    description="Single-frame CNNs on the anchor frame (report Table 1)",
    models=("basic_r18", "basic_effb0", "basic_effl0", "basic_mv3l", "basic_mv3s", "basic_sv2"),
    reference="basic_r18",
)
