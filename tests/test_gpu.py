"""What of the GPU fast path runs on the CPU: ``bench gpu``'s refusal, budget, part readers and
report (on fabricated results), the profiler option, and the CUDA-graph option's CPU behaviour
and routing. The CUDA tests themselves are in ``test_cuda.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from jersey_ray import metrics as M
from jersey_ray.bench import gpu, gpu_parts, gpu_report, gpu_run
from jersey_ray.bench.gpu_run import Check, Outcome
from jersey_ray.cache.loader import SplitData
from jersey_ray.config import ConfigError, DataConfig, TrainConfig
from jersey_ray.errors import UserError
from jersey_ray.models import build_model
from jersey_ray.train import __main__ as CLI
from jersey_ray.train import loop as L
from jersey_ray.train import step as ST

SIZE = (32, 16)


def tiny_split(split: str, n: int, seed: int) -> SplitData:
    """``n`` one-frame sequences of noise with random labels, on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    tens = torch.randint(0, M.N_TENS, (n,), generator=gen)
    ones = torch.randint(0, M.N_ONES, (n,), generator=gen)
    jersey = [M.number_string(t, o) for t, o in zip(tens.tolist(), ones.tolist(), strict=True)]
    return SplitData(
        split=split,
        size=SIZE,
        frames=torch.randint(0, 256, (n, *SIZE, 3), dtype=torch.uint8, generator=gen),
        offsets=torch.arange(n),
        lengths=torch.ones(n, dtype=torch.int64),
        tens=tens,
        ones=ones,
        jersey=jersey,
        track=[f"{j}/t{i}" for i, j in enumerate(jersey)],
        seq_id=[f"{j}/t{i}/s0" for i, j in enumerate(jersey)],
    )


def config(**changes) -> TrainConfig:
    base = dict(model="basic_r18", pretrained="none", device="cpu", epochs=1, batch_size=4)
    return TrainConfig(**{**base, **changes})


# ---------------------------------------------------------------------------- bench gpu


def test_bench_gpu_refuses_in_one_line_without_a_gpu(tmp_path: Path) -> None:
    """Exit 2 with one line, nothing written, and Ray never imported (a bare GPU machine may
    lack it; here it is the refusal path)."""
    code = (
        "import sys; from jersey_ray.bench.__main__ import main; "
        f"rc = main(['gpu', '--out', {str(tmp_path / 'out')!r}]); "
        "print('ray' in sys.modules); sys.exit(rc)"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, also on a machine with one
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["error: bench gpu needs a CUDA GPU and torch sees none; nothing was run"]
    assert done.stdout.strip() == "False"
    assert not (tmp_path / "out").exists()


def test_bench_gpu_refuses_bad_options(capsys) -> None:
    assert gpu.main(["--parts", "tests,nonsense"]) == 2
    assert "--parts" in capsys.readouterr().err


def fabricated() -> dict:
    """A check that got through most parts: one run timed out, the sweep did not run."""
    run = lambda key, trial, ceiling: {  # noqa: E731
        "key": key,
        "status": "ok",
        "trial_frames_per_s": trial,
        "ceiling_frames_per_s": ceiling,
        "ratio": trial / ceiling,
        "graph_replays": 0,
    }
    infer_targets = [
        {"name": "batch-1 latency", "target": "< 1.71 ms", "value": 1.2, "status": "met on X"},
        {
            "name": "large-batch throughput",
            "target": "> 10,000",
            "value": 9000.0,
            "status": "missed on X",
        },
    ]
    return {
        "machine": {"gpu": "Fake GPU (80 GiB, sm_90)", "torch": "2.x", "cuda": "13.0"},
        "budget_s": 480.0,
        "elapsed_s": 400.0,
        "started": "2026-12-01T00:00:00+00:00",
        "parts": {
            "data": {"status": "ok", "seconds": 30.0, "limit_s": 120.0, "reason": ""},
            "tests": {
                "status": "failed",
                "seconds": 80.0,
                "limit_s": 90.0,
                "passed": 16,
                "failed": 1,
                "errors": 0,
                "skipped": 0,
                "failures": ["test_x: boom"],
                "reason": "1 failed, 0 errors",
            },
            "train": {
                "status": "partial",
                "seconds": 130.0,
                "limit_s": 140.0,
                "runs": [
                    run("basic_r18 compiled", 27000.0, 30000.0),
                    run("attn_bgru_luong compiled", 32000.0, 40000.0),
                    run("basic_r18 eager", 9000.0, 10000.0),
                    run("basic_r18 eager + CUDA graphs", 18000.0, 19000.0),
                    {"key": "basic_r18 eager, not deterministic", "status": "timeout"},
                ],
            },
            "pack": {
                "status": "ok",
                "seconds": 90.0,
                "limit_s": 100.0,
                "model": "m",
                "seconds_each": 8.0,
                "configs": [
                    {
                        "trials": 1,
                        "gpu_each": 1.0,
                        "total_frames_per_s": 30000.0,
                        "ratio_to_one": None,
                        "per_trial": [30000.0],
                        "peak_gb": [2.0],
                    },
                    {
                        "trials": 4,
                        "gpu_each": 0.25,
                        "total_frames_per_s": 45000.0,
                        "ratio_to_one": 1.5,
                        "per_trial": [11250.0] * 4,
                        "peak_gb": [2.0] * 4,
                    },
                ],
            },
            "infer": {
                "status": "ok",
                "seconds": 50.0,
                "limit_s": 60.0,
                "targets": infer_targets,
                "rows": [
                    {
                        "variant": "bf16-autocast",
                        "batch": 1,
                        "seq_per_s": 800.0,
                        "latency_ms": {"mean": 1.25, "p95": 1.4},
                    }
                ],
            },
            "sweep": {
                "status": "timeout",
                "seconds": 90.0,
                "limit_s": 90.0,
                "reason": "ran out of time",
                "table_md": None,
            },
        },
    }


def test_the_report_judges_the_targets_and_writes_both_files(tmp_path: Path) -> None:
    result = fabricated()
    json_path, md_path = gpu_report.write_report(result, tmp_path)
    saved = json.loads(json_path.read_text())
    status = {t["name"]: t["status"] for t in saved["targets"]}
    assert status["trial vs bare compiled step, basic_r18"] == "met"  # 90%
    assert status["trial vs bare compiled step, attn_bgru_luong"] == "missed"  # 80%
    assert status["4 packed trials vs one, attn_bgru_luong"] == "met"  # 1.5x
    assert status["batch-1 latency"] == "met on X"  # bench infer's own judgement, kept
    assert status["deterministic option's cost, basic_r18"].startswith("unmeasured")  # timed out
    assert saved["derived"]["cuda_graphs_gain_eager"] == pytest.approx(2.0)
    assert saved["derived"]["eager_trial_vs_compiled_step"] == pytest.approx(0.3)
    md = md_path.read_text()
    assert "| trial vs bare compiled step, basic_r18 | >= 85% of the bare compiled step's " in md
    assert "| 90.0% | met |" in md and "| 1.50x | met |" in md and "| 1.200 ms | met on X |" in md
    assert "FAILED test_x: boom" in md and "| basic_r18 eager, not deterministic | timeout |" in md
    assert "| 5. phaseB sweep end to end | timeout |" in md and "Fake GPU (80 GiB, sm_90)" in md


def test_an_empty_report_says_unmeasured(tmp_path: Path) -> None:
    gpu_report.write_report({"parts": {}}, tmp_path)
    saved = json.loads((tmp_path / gpu_report.JSON_NAME).read_text())
    assert all(t["status"].startswith("unmeasured") for t in saved["targets"])
    assert "| 1. CUDA tests (pytest -m cuda) | not run |" in (tmp_path / "gpu-check.md").read_text()


def test_junit_counts_and_failures(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
        '<testcase name="a"/><testcase name="b"><failure message="assert 1 == 2&#10;more"/>'
        '</testcase><testcase name="c"><skipped/></testcase><testcase name="d"/>'
        "</testsuite></testsuites>"
    )
    got = gpu_parts.parse_junit(xml)
    assert got == {
        "passed": 2,
        "failed": 1,
        "errors": 0,
        "skipped": 1,
        "failures": ["b: assert 1 == 2"],
    }


def test_infer_targets_keep_the_best_of_both_runs() -> None:
    items = [
        {"name": "batch-1 latency", "value": 2.0},
        {"name": "batch-1 latency", "value": 1.5},
        {"name": "large-batch throughput", "value": None},
        {"name": "large-batch throughput", "value": 12000.0},
        {"name": "batch-1 latency", "value": None},
    ]
    best = {t["name"]: t["value"] for t in gpu_parts.best_targets(items)}
    assert best == {"batch-1 latency": 1.5, "large-batch throughput": 12000.0}


def _check(tmp_path: Path, budget_s: float = 480.0) -> Check:
    check = Check(tmp_path, budget_s, tmp_path, {}, cache="/cache")
    check.result["parts"] = {}
    return check


def test_the_budget_is_shared_by_weight_and_unused_time_moves_on(tmp_path, monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(gpu_run.time, "monotonic", lambda: clock[0])

    def shared_out(spend: float) -> tuple[dict[str, float], list[str]]:
        """Run every part with fakes that each use ``spend`` of their limit."""
        limits: dict[str, float] = {}
        order: list[str] = []

        def fake(name):
            def part(check, limit):
                limits[name] = limit
                order.append(name)
                clock[0] += spend * limit
                return {"status": "ok", "seconds": spend * limit, "limit_s": limit}

            return part

        monkeypatch.setattr(gpu, "PART_RUNNERS", {p: fake(p) for p in gpu.WEIGHTS})
        monkeypatch.setattr(gpu, "start_data", lambda check: ("process", 90.0))
        monkeypatch.setattr(gpu, "finish_data", lambda check, proc, limit: order.append("data"))
        gpu.run_check(_check(tmp_path), gpu.PARTS)
        return limits, order

    total = sum(gpu.WEIGHTS.values())
    full, order = shared_out(1.0)
    assert order == ["tests", "data", "train", "pack", "infer", "sweep"]  # data beside tests
    for name, weight in gpu.WEIGHTS.items():  # every part used its limit: plain shares
        assert full[name] == pytest.approx(480 * weight / total)
    half, _ = shared_out(0.5)
    assert half["tests"] == pytest.approx(full["tests"])
    assert all(half[p] > full[p] for p in ("train", "pack", "infer", "sweep"))  # left over
    assert (tmp_path / "gpu-check.json").is_file() and (tmp_path / "gpu-check.md").is_file()


def test_train_runs_in_priority_order_until_the_time_is_spent(tmp_path, monkeypatch) -> None:
    """Each run gets what is left, up to its cap; with too little left a run is skipped; a run
    that timed out is recorded as such and the next one runs."""
    rooms: list[float] = []

    def run(name, cmd, limit, cwd=None):
        rooms.append(limit)
        out = Path(cmd[cmd.index("--json") + 1])
        if len(rooms) == 1:
            return Outcome("timeout", None, limit)
        out.write_text(
            json.dumps({"trial_frames_per_s": 9.0, "ceiling_frames_per_s": 10.0, "ratio": 0.9})
        )
        return Outcome("ok", 0, 1.0)

    check = _check(tmp_path)
    check.work.mkdir(parents=True)
    monkeypatch.setattr(check, "run", run)
    clock = [1000.0]
    monkeypatch.setattr(gpu_parts.time, "monotonic", lambda: clock[0])
    part = gpu_parts.part_train(check, 100.0)  # the runs take no time
    caps = [r[3] for r in gpu_parts.TRAIN_RUNS]
    assert rooms == [min(100.0, cap) for cap in caps]
    statuses = [r["status"] for r in part["runs"]]
    assert statuses == ["timeout"] + ["ok"] * 5 and part["status"] == "partial"
    assert part["runs"][1]["ratio"] == 0.9
    rooms.clear()
    monkeypatch.setattr(
        check,
        "run",
        lambda *a, **k: (clock.__setitem__(0, clock[0] + 95.0), Outcome("timeout", None, 95.0))[1],
    )
    spent = gpu_parts.part_train(check, 100.0)  # the first run takes all but 5 s
    assert [r["status"] for r in spent["runs"]] == ["timeout"] + ["skipped"] * 5
    no_cache = Check(tmp_path, 60.0, tmp_path, {})
    assert gpu_parts.part_train(no_cache, 60.0)["status"] == "skipped"


# ------------------------------------------------------------------------------ profiler


def test_profile_steps_write_a_trace_in_the_first_epoch(tmp_path: Path) -> None:
    data = L.TrialData(
        "tiny",
        DataConfig(root="r", size=SIZE, max_frames=1),
        {
            "train": tiny_split("train", 24, 1),
            "val": tiny_split("val", 6, 2),
            "test": tiny_split("test", 6, 3),
        },
    )
    L.train(config(epochs=2, profile_steps=2), data, tmp_path, progress=False)
    traces = list((tmp_path / L.PROFILE_DIR).glob("*.pt.trace.json"))
    assert len(traces) == 1  # the first epoch only
    events = json.loads(traces[0].read_text())["traceEvents"]
    steps = {e["name"] for e in events if str(e.get("name", "")).startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#4", "ProfilerStep#5"}  # after 3 skipped and 1 warm-up
    assert any(e.get("name", "").startswith("aten::convolution") for e in events)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_the_profile_flag_and_its_config_key() -> None:
    args = CLI.build_parser().parse_args(["--model", "basic_r18", "--cache", "c", "--profile", "5"])
    assert CLI.config_from_args(args).profile_steps == 5
    with pytest.raises(UserError, match="--profile"):
        CLI.parse_sets(["profile_steps=5"])
    with pytest.raises(ConfigError, match="profile_steps"):
        TrainConfig(profile_steps=-1)


# --------------------------------------------------------------------------- CUDA graphs


def test_cuda_graphs_are_a_user_error_off_cuda_and_for_sequence_models() -> None:
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        ST.make_step(config(cuda_graphs=True), build_model("basic_r18"), 8, torch.device("cpu"))
    with pytest.raises(UserError, match="single-frame"):
        ST.check_cuda_graphs(torch.device("cuda"), build_model("seq_ugru_fs").input_frames)
    ST.check_cuda_graphs(torch.device("cuda"), build_model("basic_mv3s").input_frames)


def test_graphed_backbone_routes_only_full_training_batches_to_the_graphs(monkeypatch) -> None:
    """The routing, with the capture faked (it needs CUDA): full batches in training mode go to
    the graphs, a smaller batch and eval mode to the eager forward; the capture's warm-up
    passes leave BatchNorm's statistics as they were; state-dict keys do not change."""
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    keys = list(backbone.state_dict())
    calls: list[str] = []

    def fake_capture(module, sample_args):
        for _ in range(3):
            module(*sample_args)  # the warm-up passes, as make_graphed_callables runs them
        eager = module.forward
        module.forward = lambda x: (calls.append("graph"), eager(x))[1]
        return module

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_capture)
    graphs = ST.GraphedBackbone(backbone, batch_size=4, compiled=False)
    before = backbone[1].running_mean.clone()
    backbone(torch.randn(4, 3, 8, 8))  # captures, then replays for this batch
    assert calls == ["graph"] and graphs.replays == 1
    assert not torch.equal(backbone[1].running_mean, before)  # moved once, by the real step
    backbone(torch.randn(4, 3, 8, 8))
    backbone(torch.randn(2, 3, 8, 8))  # the epoch's last, smaller batch
    backbone.eval()
    backbone(torch.randn(4, 3, 8, 8))
    assert calls == ["graph", "graph"] and (graphs.replays, graphs.eager_calls) == (2, 2)
    assert list(backbone.state_dict()) == keys


def test_bench_train_states_determinism_and_refuses_cuda_graphs_on_cpu(
    tmp_path, monkeypatch, capsys
) -> None:
    from jersey_ray.bench import train as bench

    monkeypatch.setattr(bench, "load_split", lambda cache, split, device: tiny_split(split, 12, 0))
    out = tmp_path / "b.json"
    argv = [
        "--model",
        "basic_r18",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--rounds",
        "1",
        "--cache",
        str(tmp_path),
        "--json",
        str(out),
    ]
    assert bench.main([*argv, "--no-deterministic"]) == 0
    result = json.loads(out.read_text())
    assert result["deterministic"] is False and result["cuda_graphs"] is False
    assert result["graph_replays"] == 0
    assert bench.main([*argv, "--cuda-graphs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda_graphs needs a CUDA GPU" in err[0]
    ST.set_determinism(True)  # the trainer's default, for the tests that follow
