"""``python -m jersey_ray.bench data``: both sides measured on the same frames, the numbers in
the JSON agree with the printed report, and bad arguments end in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jersey_ray.bench import data as B
from jersey_ray.config import DataConfig
from jersey_ray.data.synth import generate

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-data") / "synth"
    generate(out, sequences=30, size=(32, 16), frames=(2, 5), seed=3, workers=1, progress=False)
    return out


def test_bench_data_runs_both_sides_on_the_same_frames(root, tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = [str(root), "--size", "32x16", "--max-frames", "4", "--epochs", "2", "--workers",
            "0", "--batch-size", "4", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert B.main(argv) == 0
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["build"]["frames"] > 0 and r["build"]["frames_per_s"] > 0
    assert r["train_sequences"] > 0
    for side in ("loader", "baseline"):
        epochs = r[side]["epochs"]
        assert len(epochs) == 2
        for e in epochs:  # every epoch saw exactly the cached train frames
            assert (e["sequences"], e["frames"]) == (r["train_sequences"], r["train_frames"])
            assert e["frames_per_s"] == pytest.approx(e["frames"] / e["seconds"], rel=0.05)
        fps = sorted(e["frames_per_s"] for e in epochs)
        assert r[side]["median_frames_per_s"] == pytest.approx(np.median(fps))
    ratio = r["loader"]["median_frames_per_s"] / r["baseline"]["median_frames_per_s"]
    assert r["ratio"] == pytest.approx(ratio, rel=0.01)
    assert f"loader / baseline (median frames/s): {r['ratio']:.1f}x" in printed
    assert f"= {r['build']['frames_per_s']:.0f} frames/s" in printed
    assert r["machine"]["torch_threads"] == 1 and "cache" not in r["build"]


def test_baseline_items_match_the_cached_train_split(root, tmp_path) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        data = DataConfig(root=str(root), size=(32, 16), max_frames=4)
        built = B.measure_build(data, tmp_path)
    finally:
        ray.shutdown()
    items = B.baseline_items(root, built["manifest"])
    train = built["manifest"]["counts"]["splits"]["train"]
    assert len(items) == train["sequences"]
    assert sum(len(it["paths"]) for it in items) == train["frames"]
    assert all(Path(it["paths"][0]).name.startswith("anchor") for it in items)


def test_reference_collate_repeats_the_last_frame() -> None:
    a = torch.arange(2 * 3).float().view(2, 3, 1, 1).expand(2, 3, 4, 2)
    b = torch.full((3, 3, 4, 2), 9.0)
    frames, lengths, tens, ones = B.reference_collate([(a, 2, 10, 4), (b, 3, 1, 2)])
    assert frames.shape == (2, 3, 3, 4, 2)
    assert torch.equal(frames[0, 2], a[1]) and torch.equal(frames[1], b)
    assert lengths.tolist() == [2, 3] and tens.tolist() == [10, 1] and ones.tolist() == [4, 2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{missing}"], "not a folder"),
        (["{root}", "--epochs", "0"], "--epochs and --batch-size must be >= 1"),
        (["{root}", "--size", "12"], "--size"),
    ],
)
def test_bad_arguments_end_in_one_line(root, tmp_path, capsys, argv, message) -> None:
    argv = [a.format(root=root, missing=tmp_path / "nope") for a in argv]
    assert B.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_refused(root, capsys) -> None:
    assert B.main([str(root), "--device", "cuda"]) == 2
    assert "no CUDA device here" in capsys.readouterr().err
