"""``python -m jersey_ray.bench infer`` on the CPU at a tiny size.

The expensive part, every variant including three ``torch.compile`` builds, runs once per
module (the ``full`` fixture) on a tiny attention model registered for these tests only (a
2-layer CNN instead of ResNet-18, the real BiGRU and dot-product pooling), with a fabricated
checkpoint and a test split written as a cache by hand (no Ray). One real registry model
(seq_ugru_fs, random weights) runs every variant but the compiled ones. Latencies are never
asserted: the box is shared and noisy.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fake_runs import TINY_SIZE, FakeTrial, tiny_split, write_checkpoint, write_sweep, write_trial
from torch import nn

from jersey_ray.bench import infer, infer_report, infer_run, infer_targets
from jersey_ray.bench.timing import percentile, summarize
from jersey_ray.bench.variants import BY_NAME, summarize_warnings
from jersey_ray.cache.store import CACHE_FORMAT, MANIFEST
from jersey_ray.config import DataConfig, to_dict
from jersey_ray.models import REGISTRY, ModelSpec
from jersey_ray.models.attention import AttentionModel, DotProductPool
from jersey_ray.models.recurrent import LengthAwareRNN
from jersey_ray.results import reference

TINY_ID = "bench_tiny_attn"
MAX_FRAMES = 4
N_TEST = 8
FAST = ["--batch-sizes", "1", "--iters", "2", "--warmup", "0", "--threads", "1"]
NOT_ON_CPU = {"onnxruntime-cuda"}
COMPILED = [n for n in BY_NAME if n.startswith("compile")]


def tiny_attention(pretrained: str) -> nn.Module:
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    rnn = LengthAwareRNN("gru", 8, 8, bidirectional=True)
    return AttentionModel(backbone, rnn, DotProductPool(rnn.out_features))


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    """``--threads`` sets torch's process-wide thread count; later test modules keep theirs."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    spec = ModelSpec(TINY_ID, "phaseB", "tiny BiGRU + dot-product", "test model", tiny_attention, 0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(REGISTRY, TINY_ID, spec)
        yield


def write_cache(path: Path, *, size: tuple[int, int] = TINY_SIZE, seed: int = 5) -> Path:
    """The test split of ``tiny_split`` as a cache, in the cache contract's layout."""
    data = tiny_split("test", N_TEST, seed)
    blobs = [
        data.frames[int(o) : int(o) + int(n)].numpy().tobytes()
        for o, n in zip(data.offsets, data.lengths, strict=True)
    ]
    table = pa.table(
        {
            "frames": pa.array(blobs, pa.binary()),
            "n_frames": pa.array(data.lengths.numpy().astype(np.int32)),
            "tens": pa.array(data.tens.numpy()),
            "ones": pa.array(data.ones.numpy()),
            "jersey": data.jersey,
            "track": data.track,
            "seq_id": data.seq_id,
            "anchor": pa.array(np.zeros(N_TEST, np.int32)),
        }
    )
    shard = path / "test" / "part-00000.parquet"
    shard.parent.mkdir(parents=True)
    pq.write_table(table, shard)
    raw = shard.read_bytes()
    manifest = {
        "format": CACHE_FORMAT,
        "data": to_dict(DataConfig(root="data/tiny", size=size, max_frames=MAX_FRAMES)),
        "counts": {"splits": {"test": {"sequences": N_TEST, "frames": int(data.lengths.sum())}}},
        "shards": [
            {
                "path": "test/part-00000.parquet",
                "split": "test",
                "rows": N_TEST,
                "bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
            },
        ],
    }
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Every variant, batch sizes 1 and 2, fixed and variable inputs, accuracy on 8 sequences."""
    root = tmp_path_factory.mktemp("bench_infer")
    ckpt = write_checkpoint(root / "trial", TINY_ID)
    cache = write_cache(root / "cache")
    out = {k: root / f"out.{k}" for k in ("json", "md", "png")}
    argv = [
        "--checkpoint",
        str(ckpt),
        "--cache",
        str(cache),
        "--device",
        "cpu",
        "--batch-sizes",
        "1,2",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
        str(out["json"]),
        "--md",
        str(out["md"]),
        "--plot",
        str(out["png"]),
    ]
    assert infer.main(argv) == 0
    result = json.loads(out["json"].read_text(encoding="utf-8"))
    return result, out["md"].read_text(encoding="utf-8"), out["png"]


def _variants(result: dict) -> dict[str, dict]:
    return {v["name"]: v for v in result["variants"]}


def test_every_variant_runs_on_cpu(full) -> None:
    result, _, _ = full
    variants = _variants(result)
    assert set(variants) == set(BY_NAME)
    for name, v in variants.items():
        if name in NOT_ON_CPU:
            assert v["status"] == "unsupported" and "--device cuda" in v["reason"]
        else:
            assert v["status"] == "ok", (name, v["reason"])
            rows = [r for r in result["rows"] if r["variant"] == name]
            assert {(r["input"], r["batch"]) for r in rows} == {
                (k, b) for k in ("fixed", "variable") for b in (1, 2)
            }
            for r in rows:
                assert r["status"] == "ok" and r["iters"] == 3 and r["clock"] == "perf_counter"
                lat, per_seq = r["latency_ms"], r["per_seq_ms"]
                assert lat["mean"] > 0 and lat["median"] <= lat["p95"] <= lat["p99"]
                assert per_seq["mean"] == pytest.approx(lat["mean"] / r["batch"])
                assert r["seq_per_s"] == pytest.approx(1000 * r["batch"] / lat["mean"])
                assert r["speedup_vs_fp32"] > 0 and r["first_call_s"] > 0


def test_variants_say_what_ran(full) -> None:
    variants = _variants(full[0])
    onnx = " ".join(variants["onnxruntime-cpu"]["notes"])
    assert "B and T dynamic" in onnx and "N dynamic" in onnx  # the shared export (predict's)
    assert "checked against PyTorch" in onnx and "same predictions" in onnx
    assert "CPUExecutionProvider" in onnx
    int8 = " ".join(variants["int8-dynamic"]["notes"])
    assert "GRU x2" in int8 and "Linear x4" in int8  # two GRU directions; 2 attention + 2 heads
    for name in COMPILED:  # dynamo does not trace nn.GRU: the breaks are reported, not hidden
        assert any("graph break" in n for n in variants[name]["notes"]), name
    assert variants["compile-max-autotune-bf16"]["precision"] == "bf16 (autocast)"


def test_accuracy_is_checked_for_every_variant(full) -> None:
    result, _, _ = full
    assert result["accuracy"]["checked"] and result["accuracy"]["sequences"] == N_TEST
    base = _variants(result)["fp32"]["accuracy"]
    assert base["delta_sequences"] == 0 and base["preserved"]
    for v in result["variants"]:
        if v["status"] == "ok":
            acc = v["accuracy"]
            assert acc["sequences"] == N_TEST
            assert acc["delta_sequences"] == acc["correct"] - base["correct"]
            assert acc["preserved"] == (abs(acc["delta_sequences"]) <= 1)
            assert v["agreement"]["same_prediction"] >= 0


def _main_table(md: str) -> list[list[str]]:
    section = md.split("## Table 4, this run and the report's", 1)[1].split("\n## ", 1)[0]
    lines = [x for x in section.splitlines() if x.startswith("| ")]
    return [[c.strip() for c in x.strip("|").split(" | ")] for x in lines[1:]]


def test_markdown_agrees_with_json(full) -> None:
    result, md, _ = full
    header = list(infer_report.MAIN_HEADER)
    by_key = {
        (r["setting"], r["precision"], r["runtime"], r["input"], r["batch"]): r
        for r in result["rows"]
    }
    accuracy = {v["name"]: v["accuracy"] for v in result["variants"]}
    ours = [line for line in _main_table(md) if line[0].startswith("this run")]
    assert len(ours) == len(result["rows"]) + sum(
        1 for v in result["variants"] if v["status"] == "unsupported"
    )
    checked = 0
    for line in ours:
        cell = dict(zip(header, line, strict=True))
        key = (cell["Setting"], cell["Precision"], cell["Compiled / runtime"])
        if cell["Batch"] == "–":
            assert cell["Input"].startswith("unsupported: ")
            continue
        row = by_key[(*key, cell["Input"], int(cell["Batch"]))]
        assert float(cell["ms/batch"]) == pytest.approx(row["latency_ms"]["mean"], rel=1e-2)
        assert float(cell["ms/seq"]) == pytest.approx(row["per_seq_ms"]["mean"], rel=1e-2)
        assert float(cell["seq/s"].replace(",", "")) == pytest.approx(row["seq_per_s"], rel=1e-2)
        assert float(cell["Speedup vs fp32"]) == pytest.approx(row["speedup_vs_fp32"], abs=6e-3)
        acc = accuracy[row["variant"]]
        assert float(cell["Acc (%)"]) == pytest.approx(100 * acc["acc_number"], abs=6e-3)
        assert int(cell["Δ seq"]) == acc["delta_sequences"]
        assert cell["Preserved"] == ("yes" if acc["preserved"] else "no")
        checked += 1
    assert checked == len(result["rows"])
    report = [line for line in _main_table(md) if line[0] == "report (RTX 3090)"]
    table4 = reference.table4_rows()
    assert [float(line[7]) for line in report] == [r.ms_per_seq for r in table4]
    assert [line[3] for line in report].count(reference.TABLE4_RUNTIME["torchscript"]) == 1
    assert "report-spec 8.11" in md and "report-spec 8.11" in result["report_table4"]["note"]


def test_machine_timing_and_targets_are_stated(full) -> None:
    result, md, _ = full
    machine = result["machine"]
    assert machine["device"] == "cpu" and machine["torch"] == torch.__version__
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] == 1
    assert "model forward only" in result["timed"] and result["timed"] in md
    assert "no host-to-device copy" in result["timed"]
    for target in result["targets"]:
        assert target["status"].startswith(infer_targets.UNMEASURED) and target["value"] is None
    assert md.count(infer_targets.UNMEASURED) == 2
    assert set(result["inputs"]["lengths"]) == {"1", "2"}
    assert all(1 <= n <= MAX_FRAMES for ls in result["inputs"]["lengths"].values() for n in ls)


def test_plot_is_a_png(full) -> None:
    assert full[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------- arithmetic, no model


def _logits(pred: list[int], classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), classes).float()


def test_accuracy_preserved_means_at_most_one_sequence() -> None:
    tens, ones = torch.tensor([10, 4, 4, 6, 8, 10, 4, 6, 8, 10]), torch.arange(10)
    base = infer_run.number_correct(
        _logits(tens.tolist(), 11), _logits(ones.tolist(), 10), tens, ones
    )
    assert base == 10
    one_off = ones.clone()
    one_off[3] = 0  # one sequence's ones digit wrong
    two_off = one_off.clone()
    two_off[7] = 0
    tens_off = tens.clone()
    tens_off[3] = 10  # the same sequence also wrong in tens: still one sequence
    for pred_tens, pred_ones, delta, preserved in (
        (tens, one_off, -1, True),
        (tens_off, one_off, -1, True),
        (tens, two_off, -2, False),
    ):
        correct = infer_run.number_correct(
            _logits(pred_tens.tolist(), 11), _logits(pred_ones.tolist(), 10), tens, ones
        )
        change = infer_run.accuracy_change(correct, base, 10)
        assert change["delta_sequences"] == delta and change["preserved"] is preserved
        assert change["delta_points"] == pytest.approx(10.0 * delta)
        assert change["acc_number"] == pytest.approx((10 + delta) / 10)
    assert infer_run.accuracy_change(11, 10, 10)["preserved"] is True  # one better is also "same"


def test_latency_statistics() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    stats = summarize(values, batch=4)
    assert stats["latency_ms"]["mean"] == pytest.approx(50.5)
    assert stats["per_seq_ms"]["p99"] == pytest.approx(99.01 / 4)
    assert stats["seq_per_s"] == pytest.approx(4000 / 50.5)


def _row(variant: str, runtime: str, precision: str, batch: int, mean_ms: float) -> dict:
    return {
        "variant": variant,
        "runtime": runtime,
        "precision": precision,
        "input": "fixed",
        "batch": batch,
        "status": "ok",
        "latency_ms": {"mean": mean_ms},
        "seq_per_s": 1000 * batch / mean_ms,
    }


def test_targets_are_judged_only_on_a_gpu_for_the_reference_model() -> None:
    rows = [
        _row("fp32", "eager", "fp32", 1, 2.0),
        _row("fp16-cast", "eager", "fp16 (model cast)", 1, 1.0),  # fastest, but lost accuracy
        _row("compile", "torch.compile default", "fp32", 1, 1.5),
        _row(
            "compile-max-autotune-bf16", "torch.compile max-autotune", "bf16 (autocast)", 256, 20.0
        ),
    ]
    records = [
        {"name": r["variant"], "accuracy": {"preserved": r["variant"] != "fp16-cast"}} for r in rows
    ]
    h100 = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    latency, rate = infer_targets.targets(infer_targets.TARGET_MODEL, h100, rows, records)
    assert latency["value"] == 1.5 and latency["variant"] == "compile (batch 1)"
    assert latency["status"] == "met on NVIDIA H100 80GB HBM3"
    assert rate["value"] == pytest.approx(12_800) and rate["status"].startswith("met")
    a100 = {"device": "cuda", "device_name": "NVIDIA A100"}
    slow = [
        *rows[:3],
        _row(
            "compile-max-autotune-bf16", "torch.compile max-autotune", "bf16 (autocast)", 256, 40.0
        ),
    ]
    rate = infer_targets.targets(infer_targets.TARGET_MODEL, a100, slow, records)[1]
    assert rate["status"] == "missed on NVIDIA A100, not an H100"
    other = infer_targets.targets("seq_ugru_fs", h100, rows, records)
    assert all(t["status"].startswith("not applicable") for t in other)
    cpu = infer_targets.targets(
        infer_targets.TARGET_MODEL, {"device": "cpu", "device_name": "x"}, rows, records
    )
    assert all(t["status"].startswith(infer_targets.UNMEASURED) and t["value"] is None for t in cpu)


def test_warnings_become_short_notes() -> None:
    notes = summarize_warnings(
        [
            "`torch.jit.trace` is deprecated. Please switch.",
            "Tracer said this. More.",
            "Tracer said this. More.",
        ],
        "trace",
    )
    assert notes[0].endswith("torch.jit.trace") and "deprecated in torch" in notes[0]
    assert notes[1] == "trace warned: Tracer said this. (x2)"


# ------------------------------------------------------------------ model choice, inputs


def test_run_picks_the_model_and_seed_on_validation(tmp_path) -> None:
    run = tmp_path / "run"
    write_sweep(run, models=[TINY_ID])
    # seed 1 is best on test, seed 2 on validation: validation decides
    for seed, val, test in ((1, [0.5, 0.9], 0.99), (2, [0.5, 0.95], 0.5)):
        trial = write_trial(run, FakeTrial(TINY_ID, seed, val, (test, test, test)))
        write_checkpoint(trial, TINY_ID, seed)
    write_trial(run, FakeTrial(TINY_ID, 3, [0.99], None))  # pruned: never chosen
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    argv = ["--run", str(run), "--variants", "fp32", "--json", str(out), "--md", str(md)]
    assert infer.main([*argv, *FAST]) == 0
    model = json.loads(out.read_text())["model"]
    assert model["chosen"]["seed"] == 2 and model["chosen"]["best_val_acc_number"] == 0.95
    assert model["chosen"]["finished_trials"] == 2
    assert Path(model["checkpoint"]).parts[-3] == f"{TINY_ID}-seed2"
    assert "seed 2" in md.read_text() and "validation only" in md.read_text()


def test_random_weights_say_so_everywhere(tmp_path, capsys) -> None:
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    argv = [
        "--model",
        TINY_ID,
        "--size",
        "32x16",
        "--frames",
        "3",
        "--variants",
        "fp32",
        "--json",
        str(out),
        "--md",
        str(md),
    ]
    assert infer.main([*argv, *FAST]) == 0
    result = json.loads(out.read_text())
    assert result["model"]["weights"] == "random"
    assert result["accuracy"] == {"checked": False, "reason": infer_targets.RANDOM_NOTE}
    assert (
        infer_targets.RANDOM_NOTE in md.read_text()
        and infer_targets.RANDOM_NOTE in capsys.readouterr().out
    )
    assert result["settings"]["frames"] == 3 and result["settings"]["size"] == [32, 16]
    assert result["rows"][0]["frames"] == 3  # fixed batch of 1: 3 frames


def test_a_real_model_runs_every_uncompiled_variant(tmp_path) -> None:
    out = tmp_path / "real.json"
    names = [n for n in BY_NAME if n not in COMPILED]
    argv = [
        "--model",
        "seq_ugru_fs",
        "--size",
        "32x16",
        "--frames",
        "4",
        "--batch-sizes",
        "2",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--variants",
        ",".join(names),
        "--json",
        str(out),
    ]
    assert infer.main(argv) == 0
    variants = _variants(json.loads(out.read_text()))
    assert set(variants) == set(names)
    for name, v in variants.items():
        if name not in NOT_ON_CPU:
            assert v["status"] == "ok", (name, v["reason"])
            assert 0 <= v["agreement"]["same_prediction"] <= 1
    # fp32 all the way: the same numbers
    for name in ("torchscript-script", "torchscript-trace", "onnxruntime-cpu"):
        assert variants[name]["agreement"]["max_abs_logit_diff"] < 1e-3


def test_inputs_are_seeded_and_packed() -> None:
    a = infer_run.make_input("variable", 5, 16, (16, 8), torch.device("cpu"))
    b = infer_run.make_input("variable", 5, 16, (16, 8), torch.device("cpu"))
    assert a.lengths == b.lengths and torch.equal(a.frames, b.frames)
    assert a.frames.shape[0] == sum(a.lengths) == int(a.mask.sum())
    assert a.mask.shape == (5, max(a.lengths))
    fixed = infer_run.make_input("fixed", 3, 16, (16, 8), torch.device("cpu"))
    assert fixed.lengths == [16, 16, 16] and fixed.frames.shape == (48, 3, 16, 8)


def test_a_single_frame_model_is_timed_on_its_anchors(tmp_path) -> None:
    """Every model takes the same batch, so Phase 0 is timed too, on what it reads."""
    out = tmp_path / "phase0.json"
    argv = [*FAST, "--model", "basic_mv3s", "--variants", "fp32", "--size", "32x16"]
    assert infer.main([*argv, "--frames", "4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["status"] == "ok" for r in rows)
    assert all(r["frames"] == r["batch"] and r["steps"] == 1 for r in rows)


# -------------------------------------------------------------------------- bad input


def _bad_run(tmp: Path) -> list[str]:
    run = tmp / "run"
    write_sweep(run, models=[TINY_ID])
    write_trial(run, FakeTrial(TINY_ID, 1, [0.5, 0.6], None))  # pruned only
    return ["--run", str(run)]


def _other_size_cache(tmp: Path) -> list[str]:
    ckpt = write_checkpoint(tmp / "trial", TINY_ID)
    cache = write_cache(tmp / "cache64", size=(64, 32))
    return ["--checkpoint", str(ckpt), "--cache", str(cache)]


BAD = {
    "unknown model": (lambda tmp: ["--model", "resnet9000"], "unknown model id"),
    "missing checkpoint": (
        lambda tmp: ["--checkpoint", str(tmp / "nope" / "best.pt")],
        "checkpoint not found",
    ),
    "not a run folder": (lambda tmp: ["--run", str(tmp)], "sweep.json not found"),
    "no finished trial": (_bad_run, "no finished trial"),
    "cache of another size": (_other_size_cache, "size [64, 32] (checkpoint: [32, 16])"),
    "random weights with data": (
        lambda tmp: ["--model", TINY_ID, "--cache", str(tmp)],
        "weights are random",
    ),
    "no cuda": (lambda tmp: ["--model", TINY_ID, "--device", "cuda"], "no CUDA GPU"),
    "zero iterations": (lambda tmp: ["--model", TINY_ID, "--iters", "0"], "--iters"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(case, tmp_path, capsys) -> None:
    make_args, expected = BAD[case]
    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert infer.main([*FAST, *make_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_unknown_variant_is_an_argument_error(capsys) -> None:
    assert infer.main(["--model", TINY_ID, "--variants", "fp32,warp-drive"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"unknown variant\(s\) warp-drive; valid: fp32", err)
    assert err.count("\n") == 1  # one line, no usage block
