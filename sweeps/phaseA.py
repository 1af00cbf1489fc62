"""Phase A (report Table 2): ResNet-18 per frame + a recurrent layer, discriminative LR.

The report's Section 3 says discriminative LR is for Phase B only, but its Table 6 and the
Phase A driver use it here too (report-spec 8.7); we follow the code that produced the table.
The learning rates are the phase's protocol (``jersey_ray.models.PROTOCOLS``), not set here.
"""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="phaseA",
    phase="phaseA",
    description="ResNet-18 + RNN/GRU/LSTM, uni- or bidirectional (report Table 2)",
    models=(
        "seq_brnn_mp",
        "seq_urnn_fs",
        "seq_bgru_mp",
        "seq_ugru_fs",
        "seq_blstm_mp",
        "seq_ulstm_fs",
    ),
    reference="seq_bgru_mp",
)
