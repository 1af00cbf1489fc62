"""sweeps/compositional.py: what it declares is runnable and its reference is one of its
configurations as the collector names them."""

from __future__ import annotations

from pathlib import Path

from jersey_ray.config import DEFAULT_SIZE
from jersey_ray.models import REGISTRY
from jersey_ray.results.runs import Trial, _assign_configs
from jersey_ray.sweep import sweep_files
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
    # number-region crops like the real ones: a whole player at 32x32 has unreadable digits
    assert spec.synth["crop"] == "number" and spec.synth["size"] == DEFAULT_SIZE
    trials = [
        Trial("t", Path("."), {"model": m, "seed": 1, "splice": s}, m, 1, [], None)
        for m in spec.models
        for s in spec.axes["splice"]
    ]
    _assign_configs(trials)
    assert spec.reference in {t.config for t in trials}
    assert spec.reference.startswith("attn_bgru_luong/") and "splice=0.0" in spec.reference


def test_the_synthetic_to_real_stages_are_the_compositional_protocol_over_starting_weights():
    base = load_sweep("compositional")
    stage1, stage2 = load_sweep("synth_pretrain"), load_sweep("synth_to_real")
    for spec in (stage1, stage2):
        assert spec.data == base.data and spec.synth == base.synth
        assert {k: v for k, v in spec.train.items() if k != "splice"} == base.train
        assert spec.train["splice"] == 0.0 and set(spec.models) <= set(base.models)
    assert stage1.axes == {} and stage1.reference in stage1.models
    starts = stage2.axes["pretrained"]
    assert starts[0] == "none"
    # stage 2 starts from the runs stage 1's documented commands write (--name synth-...)
    for start in starts[1:]:
        assert f"--name {Path(start).name}" in sweep_files.find("synth_pretrain").read_text()
    trials = [
        Trial("t", Path("."), {"model": m, "seed": 1, "pretrained": p}, m, 1, [], None)
        for m in stage2.models
        for p in starts
    ]
    _assign_configs(trials)
    assert stage2.reference in {t.config for t in trials}


def test_a_missing_stage_one_run_is_one_line_before_any_data_work(tmp_path, monkeypatch, capsys):
    from jersey_ray.sweep import tuner
    from jersey_ray.sweep.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tuner, "init_ray", lambda address=None: None)
    argv = ["synth_to_real", "--models", "comp_seq_tied", "--storage", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "synth-heldout" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "results").exists()  # no data generated, no cache built
