"""Phase B (report Table 3): ResNet-18 + GRU + attention pooling, discriminative LR.

Compared against the best Phase A model, chosen on validation from results/phaseA/summary.json
(the report used BiGRU mean pool, chosen on test means), so run phaseA first (or `all`).
"""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="phaseB",
    phase="phaseB",
    description="ResNet-18 + GRU + attention pooling (report Table 3)",
    models=(
        "attn_bgru_bahdanau",
        "attn_bgru_luong",
        "attn_bgru_gate",
        "attn_bgru_hc",
        "attn_ugru_gate",
        "attn_ugru_hc",
    ),
    reference="best:phaseA",
)
