"""Two-digit generalization: can separate tens and ones heads read numbers never seen in
training (the study's claim, report section 1.1, which it never tested)?

Every track of the held-out numbers goes to an ``unseen`` split; the other numbers are split by
track as usual. A held-out number is a new combination of digits each seen in its place (e.g.
94 after 9x and x4 numbers). Without ``--heldout`` about a fifth of the two-digit numbers are
held out, chosen by the split seed among the fair ones (each digit in place in >= 2 other
two-digit training numbers with >= 20 training sequences; ``jersey_ray.data.split``) and listed
in the table with their coverage. One model per phase.

Without ``--data`` the built-in synthetic data covers every number 0-99, so every digit occurs
in both places; on your own data, pass ``--data ROOT`` (and ``--heldout 94,27`` to choose).
"""

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="generalization",
    phase="generalization",
    description="Seen vs never-seen two-digit numbers (held-out digit combinations)",
    models=("basic_r18", "seq_bgru_mp", "attn_bgru_luong"),
    data={"split": "heldout"},
    # every number 0-99, about 30 tracks each: 20 digit classes need more than the demo's 8
    synth={"numbers": tuple(str(n) for n in range(100)), "imbalance": 0.0, "sequences": 3000},
    reference="basic_r18",
)
