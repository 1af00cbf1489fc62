"""Two-digit generalization end to end: the held-out split through the sweep to its table, on
synthetic data always and on the real SoccerNet crops when they are present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jersey_ray import metrics as M
from jersey_ray.data import synth

REAL = Path(__file__).resolve().parents[2] / "shared/data/soccernet-numcrops"
NUMBERS = ("4", "9", "40", "44", "49", "90", "94", "99")  # 94: a 9 in tens (9x), a 4 in ones (x4)


def run_sweep(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "jersey_ray.sweep", "generalization", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def check_heldout_run(tmp_path: Path, held: list[str], models: list[str]) -> dict:
    """The manifest keeps held-out numbers out of train and val; the summary, the table and
    the figure carry seen vs unseen for every model."""
    record = json.loads((tmp_path / "runs" / "gen" / "sweep.json").read_text())
    assert record["data"]["split"] == "heldout" and record["data"]["heldout_numbers"] == held
    manifest = json.loads((Path(record["data"]["cache"]) / "manifest.json").read_text())
    assert manifest["data"]["heldout_numbers"] == held
    for track, split in manifest["split_assignment"].items():
        assert (split == "unseen") == (track.split("/")[0] in held), (track, split)
    summary = json.loads((tmp_path / "results" / "gen" / "summary.json").read_text())
    by_id = {m["id"]: m for m in summary["models"]}
    assert sorted(by_id) == sorted(models)
    for model in models:
        seen, unseen = by_id[model]["test_acc_number_seen"], by_id[model]["test_acc_number_unseen"]
        assert seen["n"] == unseen["n"] == 1 and 0 <= unseen["mean"] <= 1
        assert seen["mean"] == by_id[model][M.TEST_ACC_NUMBER]["mean"]
    table = (tmp_path / "results" / "gen" / "table.md").read_text()
    assert f"held out of training: {', '.join(held)}" in table
    assert (tmp_path / "results" / "gen" / "seen_vs_unseen.png").stat().st_size > 1000
    return summary


@pytest.mark.slow
def test_generalization_sweep_on_synthetic_data(tmp_path: Path) -> None:
    root = tmp_path / "data"
    synth.generate(root, sequences=40, numbers=NUMBERS, size=(32, 16), frames=(2, 3),
                   imbalance=0.0, workers=1, progress=False)  # fmt: skip
    models = ["basic_sv2", "attn_ugru_gate"]
    args = [
        "--data", str(root), "--heldout", "94", "--size", "32x16", "--max-frames", "2",
        "--epochs", "1", "--seeds", "1", "--pretrained", "none", "--models", ",".join(models),
        "--storage", str(tmp_path / "runs"), "--name", "gen",
    ]  # fmt: skip
    out = run_sweep(args, tmp_path)
    assert "Seen vs unseen numbers" in out
    summary = check_heldout_run(tmp_path, ["94"], models)
    assert summary["heldout"]["numbers"] == ["94"]


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL / "crops.tar.gz").is_file(), reason="SoccerNet crops not present (optional data)"
)
def test_generalization_sweep_on_real_soccernet_crops(tmp_path: Path) -> None:
    from jersey_ray.data.soccernet import import_soccernet

    root = tmp_path / "soccernet"
    import_soccernet(REAL / "crops.tar.gz", root, progress=False)
    args = [
        "--data", str(root), "--size", "16x16", "--max-frames", "1", "--epochs", "1",
        "--seeds", "1", "--pretrained", "none", "--models", "basic_sv2",
        "--storage", str(tmp_path / "runs"), "--name", "gen",
    ]  # fmt: skip
    run_sweep(args, tmp_path)
    record = json.loads((tmp_path / "runs" / "gen" / "sweep.json").read_text())
    held = record["data"]["heldout_numbers"]
    assert held and all(len(n) == 2 for n in held)  # chosen automatically, two-digit
    check_heldout_run(tmp_path, held, ["basic_sv2"])
