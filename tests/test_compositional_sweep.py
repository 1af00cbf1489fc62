"""sweeps/compositional.py: what it declares is runnable and its reference is one of its
configurations as the collector names them."""

from __future__ import annotations

from pathlib import Path

from jersey_ray.models import REGISTRY
from jersey_ray.results.runs import Trial, _assign_configs
from jersey_ray.sweep.settings import load_sweep


def test_the_compositional_sweep_declares_baselines_readers_and_the_splice_axis():
    spec = load_sweep("compositional")
    assert all(m in REGISTRY for m in spec.models)
    assert {"attn_bgru_luong", "comp_pooled"} <= set(spec.models)
    assert any(m.startswith("comp_") and m != "comp_pooled" for m in spec.models)
    assert spec.axes == {"splice": (0.0, 0.5)} and spec.data["split"] == "heldout"
    assert len(spec.seeds) == 3
    numbers = spec.synth["numbers"]
    assert len(numbers) == 100 and set(numbers) == {str(n) for n in range(100)}
    trials = [
        Trial("t", Path("."), {"model": m, "seed": 1, "splice": s}, m, 1, [], None)
        for m in spec.models
        for s in spec.axes["splice"]
    ]
    _assign_configs(trials)
    assert spec.reference in {t.config for t in trials}
    assert spec.reference.startswith("attn_bgru_luong/") and "splice=0.0" in spec.reference
