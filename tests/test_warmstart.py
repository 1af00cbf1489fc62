"""``pretrained`` naming a checkpoint, trial folder or run folder of this project: the matching
weights are loaded, a run's trial is chosen on validation, renders of held-out numbers are
traced back to the source's data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fake_runs import FakeTrial, write_checkpoint, write_sweep, write_trial

from jersey_ray.config import DataConfig, TrainConfig, to_json
from jersey_ray.models import WeightsError, build_model
from jersey_ray.models.warmstart import is_project_source, resolve_checkpoint, source_data
from jersey_ray.results.heldout_numbers import saw_renders
from jersey_ray.results.runs import Trial

MODEL = "basic_sv2"  # the smallest registry model


def same(a: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in a.state_dict().items())


def saved(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_a_checkpoint_file_and_a_trial_folder_start_the_model(tmp_path):
    path = write_checkpoint(tmp_path / "trial", MODEL, seed=3)
    assert is_project_source(str(path)) and is_project_source(str(tmp_path / "trial"))
    assert not is_project_source("none") and not is_project_source("imagenet")
    assert same(build_model(MODEL, str(path)), saved(path))
    assert same(build_model(MODEL, str(tmp_path / "trial")), saved(path))
    torch.manual_seed(0)
    assert not same(build_model(MODEL, "none"), saved(path))  # the test can fail


def test_a_run_folder_gives_the_trial_chosen_on_validation(tmp_path):
    run = tmp_path / "runs" / "synth"
    write_sweep(run, phase="synth", models=[MODEL, "basic_r18"])
    best_val = {42: 0.5, 123: 0.9, 456: 0.7}
    for seed, val in best_val.items():
        write_checkpoint(write_trial(run, FakeTrial(MODEL, seed, [val], (val, 1, 1))), MODEL, seed)
    # another model's trial scores higher on validation: not chosen for MODEL
    write_trial(run, FakeTrial("basic_r18", 7, [0.99], (0.99, 1, 1)))
    chosen = resolve_checkpoint(str(run), MODEL)
    assert chosen.parent.parent.name == f"{MODEL}-seed123"
    assert same(build_model(MODEL, str(run)), saved(chosen))


def test_matching_weights_only_and_a_source_that_fits_nothing(tmp_path):
    path = write_checkpoint(tmp_path / "trial", "seq_bgru_mp", seed=1)
    model = build_model("attn_bgru_luong", str(path))  # shares the backbone and the BiGRU
    source = saved(path)
    shared = [k for k in model.state_dict() if k in source]
    assert any(k.startswith("backbone.") for k in shared)
    assert all(torch.equal(model.state_dict()[k], source[k]) for k in shared)
    with pytest.raises(WeightsError, match=r"only 2 of the model's 340 weights fit"):
        build_model("basic_sv2", str(path))


def test_a_folder_that_is_no_source_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"no sweep\.json, best\.pt or checkpoint"):
        build_model(MODEL, str(tmp_path / "empty"))


def test_a_relative_path_is_found_from_the_trial_start_folder(tmp_path, monkeypatch):
    write_checkpoint(tmp_path / "trial", MODEL)
    elsewhere = tmp_path / "tune-trial"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not is_project_source("trial")
    monkeypatch.setenv("TUNE_ORIG_WORKING_DIR", str(tmp_path))
    assert is_project_source("trial")


def test_a_backbone_state_dict_file_is_not_a_project_source(tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    assert not is_project_source(str(path))


def checkpoint_on(tmp_path: Path, data: DataConfig) -> Path:
    path = tmp_path / "src" / "best.pt"
    path.parent.mkdir(parents=True)
    cfg = TrainConfig(model=MODEL, pretrained="none")
    torch.save({"model": {}, "train": to_json(cfg), "data": to_json(data)}, path)
    return path


def trial_from(source: Path) -> Trial:
    return Trial("t", source.parent, {"pretrained": str(source)}, MODEL, 1, [], None)


def test_the_table_knows_whether_the_source_trained_on_the_heldout_numbers(tmp_path):
    all_numbers = checkpoint_on(tmp_path / "a", DataConfig(split="tracks"))
    held = checkpoint_on(
        tmp_path / "b", DataConfig(split="heldout", heldout_numbers=("23", "58", "61"))
    )
    assert saw_renders([trial_from(all_numbers)], ["23", "58"]) == "yes"
    assert saw_renders([trial_from(held)], ["23", "58"]) == "no"
    assert saw_renders([trial_from(held)], ["23", "44"]) == "yes"  # 44 was trained there
    assert source_data(str(held)).heldout_numbers == ("23", "58", "61")
    plain = Trial("t", tmp_path, {"pretrained": "none"}, MODEL, 1, [], None)
    assert saw_renders([plain], ["23"]) is None
