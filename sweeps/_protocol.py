"""What the report's phase sweeps share, so Phases 0, A and B cannot drift apart."""

SEEDS = (42, 123, 456, 789, 2024)
"""The report's five seeds: every mean in its Tables 1-3 is over these."""

DISCRIMINATIVE = {
    "lr_scheme": "discriminative",
    "lr_backbone": 1e-4,
    "lr_temporal": 3e-4,
    "lr_heads": 3e-4,
}
"""Phases A and B: the pretrained backbone learns at a third of the new layers' rate (report
Table 6 and its Phase A driver, report-spec 8.7). Copy it (``dict(DISCRIMINATIVE)``) into a
SweepSpec, so that no sweep can change another's."""
