"""The CUDA path, on a CUDA GPU only (``pytest -m cuda``; ``python -m jersey_ray.bench gpu`` runs
them): data resident on the device, the on-device augmentation against the CPU path, bf16 and
fp16 steps in channels_last, no host sync inside an epoch, CUDA graphs, torch.compile, the
memory cap of a fractional trial, a checkpoint from CUDA read on the CPU, CUDA-event timing and
the profiler. Without a GPU every test here is skipped (``make test`` collects them).

Frames are random noise at 64x32, a few dozen sequences: the tests check what runs where and
what it computes, not what it learns. The compile test is last: it is the slow one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from jersey_ray import metrics as M
from jersey_ray.cache import augment as A
from jersey_ray.cache import loader
from jersey_ray.cache.loader import SplitData, iter_batches
from jersey_ray.config import DataConfig, TrainConfig
from jersey_ray.models import build_model
from jersey_ray.train import loop as L
from jersey_ray.train import step as ST
from jersey_ray.train.checkpoint import load_model
from jersey_ray.train.evaluate import infer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SIZE = (64, 32)
CUDA = torch.device("cuda")
DATA = DataConfig(root="noise", size=SIZE, max_frames=4)
HALF_GREY_LEVEL = 0.5 / 255


def tiny_split(split: str, n: int, seed: int, device: torch.device | str = CUDA) -> SplitData:
    """``n`` sequences of 1-4 random frames with random labels, as ``load_split`` holds them."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 5, (n,), generator=gen)
    frames = torch.randint(0, 256, (int(lengths.sum()), *SIZE, 3), dtype=torch.uint8, generator=gen)
    tens = torch.randint(0, M.N_TENS, (n,), generator=gen)
    ones = torch.randint(0, M.N_ONES, (n,), generator=gen)
    jersey = [M.number_string(t, o) for t, o in zip(tens.tolist(), ones.tolist(), strict=True)]
    return SplitData(
        split=split,
        size=SIZE,
        frames=frames.to(device),
        offsets=torch.cumsum(lengths, 0) - lengths,
        lengths=lengths,
        tens=tens.to(device),
        ones=ones.to(device),
        jersey=jersey,
        track=[f"{j}/t{i}" for i, j in enumerate(jersey)],
        seq_id=[f"{j}/t{i}/s0" for i, j in enumerate(jersey)],
    )


def trial_data(device: torch.device | str = CUDA) -> L.TrialData:
    # 44 training sequences at batch 8: five full batches and a last one of 4
    splits = {
        s: tiny_split(s, n, i, device)
        for i, (s, n) in enumerate((("train", 44), ("val", 12), ("test", 12)))
    }
    return L.TrialData("noise-cache", DATA, splits)


def config(**changes) -> TrainConfig:
    base = dict(
        model="basic_r18",
        pretrained="none",
        device="cuda",
        epochs=1,
        batch_size=8,
        eval_batch_size=16,
    )
    return TrainConfig(**{**base, **changes})


def new_step(cfg: TrainConfig, n_train: int = 44) -> ST.Step:
    ST.set_determinism(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    return ST.make_step(cfg, build_model(cfg.model, cfg.pretrained), n_train, CUDA)


def epoch(step: ST.Step, data: SplitData, gens) -> M.SplitCounter:
    counter = M.SplitCounter(CUDA)
    batches = iter_batches(
        data,
        8,
        frames=step.input_frames,
        shuffle=True,
        generator=gens[0],
        augment=True,
        aug_generator=gens[1],
    )
    ST.run_epoch(step, batches, counter)
    return counter


# ------------------------------------------------------------------------- data on the GPU


def test_the_loader_keeps_frames_on_the_device_and_batches_there() -> None:
    """``load_split``'s own copy (Arrow binary column -> device tensor), then batches."""
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (10, *SIZE, 3), dtype=np.uint8)
    column = pa.chunked_array(
        [
            pa.array([f.tobytes() for f in stored[:6]], pa.binary()),
            pa.array([f.tobytes() for f in stored[6:]], pa.binary()),
        ]
    )
    frames = loader._allocate_frames(10, *SIZE, CUDA)
    assert loader._copy_frames(column, frames, 0, math.prod(SIZE) * 3) == 10
    assert frames.device.type == "cuda" and torch.equal(frames.cpu(), torch.from_numpy(stored))
    data = tiny_split("train", 20, 0)
    for batch in iter_batches(data, 8, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert batch.frames.device.type == "cuda" and batch.frames.dtype == torch.float32
        assert batch.frames.is_contiguous(memory_format=torch.channels_last)
        assert batch.mask.device.type == "cuda" and batch.tens.device.type == "cuda"
        assert batch.index.device.type == "cpu"  # host rows: no sync to know them


def _on(params: A.AugParams, device: torch.device) -> A.AugParams:
    return A.AugParams(*(getattr(params, f.name).to(device) for f in fields(params)))


def test_augmentation_on_the_device_equals_the_cpu_path() -> None:
    """Same frames, same parameters, noise off (the two devices' generators differ): within half
    a grey level (cuDNN may run the blur in TF32), and the eval input to 1e-5."""
    u8 = torch.randint(0, 256, (24, *SIZE, 3), dtype=torch.uint8)
    params = A.sample_params(24, torch.Generator().manual_seed(0))
    params = A.AugParams(
        **{**{f.name: getattr(params, f.name) for f in fields(params)}, "noise": torch.zeros(24)}
    )
    assert (params.blur > 0).any()  # both blur paths are exercised

    def run(device: torch.device) -> torch.Tensor:
        x = u8.to(device).permute(0, 3, 1, 2).float()
        gen = torch.Generator(device=device).manual_seed(1)
        return A.augment_(x, _on(params, device), gen, scale=1 / 255).cpu()

    cpu, gpu = run(torch.device("cpu")), run(CUDA)
    assert (gpu - cpu).abs().max() < HALF_GREY_LEVEL
    assert (gpu - cpu).abs().mean() < 2e-4  # rounding, not a wrong op on some frames
    plain = A.to_model_input(u8.to(CUDA), augment=False).cpu()
    assert torch.allclose(plain, A.to_model_input(u8, augment=False), atol=1e-5)


def test_noise_and_seeding_on_the_device() -> None:
    y = A.add_noise_(
        torch.full((2, 3, 64, 64), 0.5, device=CUDA),
        torch.tensor([0.01, 0.03], device=CUDA),
        torch.Generator(device=CUDA).manual_seed(5),
    )
    for i, sigma in enumerate((0.01, 0.03)):
        assert (y[i] - 0.5).std().item() == pytest.approx(sigma, rel=0.05)
    u8 = torch.randint(0, 256, (16, *SIZE, 3), dtype=torch.uint8, device=CUDA)
    a, b, c = (
        A.to_model_input(u8, augment=True, generator=torch.Generator(CUDA).manual_seed(s))
        for s in (1, 1, 2)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------------------ the step


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_train_in_channels_last(precision: str) -> None:
    step = new_step(config(precision=precision))
    assert step.autocast == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert (step.scaler is not None) == (precision == "fp16")
    convs = [p for p in step.module.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    batch = next(iter_batches(tiny_split("train", 8, 3), 8, shuffle=False))
    losses = []
    for _ in range(12):  # one batch over and over (fp16 skips a few while it finds its scale)
        counter = M.SplitCounter(CUDA)
        ST.train_step(step, batch, counter)
        losses.append(counter.compute("train")[M.TRAIN_LOSS])
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


SYNC_CASES = [
    ("basic_r18", {}),
    ("basic_r18", {"precision": "fp16"}),
    ("basic_r18", {"cuda_graphs": True}),
    ("attn_bgru_luong", {"lr_scheme": "discriminative"}),
    ("attn_bgru_luong", {"lr_scheme": "discriminative", "deterministic": False}),
]


@pytest.mark.parametrize(("model", "changes"), SYNC_CASES)
def test_an_epoch_never_waits_for_the_gpu(model: str, changes: dict) -> None:
    """The training epoch (loader, augmentation, steps) and the evaluation batches run with
    ``set_sync_debug_mode("error")``: any host sync raises. By design the host waits only for
    ``SplitCounter.compute`` (once per epoch and split) and the epoch clock's synchronize,
    outside; the first epoch (cuDNN autotuning, graph capture, constants) is a warm-up."""
    cfg = config(model=model, **changes)
    step, data = new_step(cfg), tiny_split("train", 44, 1)
    gens = L.make_generators(cfg.seed, CUDA)
    epoch(step, data, gens).compute("train")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        counter = epoch(step, data, gens)
        step.module.eval()
        val = M.SplitCounter(CUDA)
        for batch, out in infer(step.module, data, batch_size=16, frames=step.input_frames):
            val.update(
                ST.loss_fn(out, batch, (1.0, 1.0)), out.tens, out.ones, batch.tens, batch.ones
            )
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(math.isfinite(v) for v in counter.compute("train").values())
    assert all(math.isfinite(v) for v in val.compute("val").values())


@pytest.mark.parametrize(("precision", "tol"), [("fp32", 1e-5), ("bf16", 2e-2)])
def test_cuda_graphs_train_as_the_eager_step(precision: str, tol: float) -> None:
    """Same seed, same batches: the captured backbone ends where the eager one does, full
    batches replay the graphs, the last partial batch and evaluation run eagerly, and the
    capture's warm-up leaves BatchNorm's running statistics alone."""
    data, ends = tiny_split("train", 44, 2), []
    for graphs in (False, True):
        step = new_step(config(precision=precision, cuda_graphs=graphs))
        gens = L.make_generators(0, CUDA)
        for _ in range(2):
            epoch(step, data, gens)
        ends.append({k: v.float().cpu() for k, v in step.module.state_dict().items()})
    assert step.graphs is not None and step.graphs.replays == 10 and step.graphs.eager_calls == 2
    step.module.eval()
    with torch.no_grad():
        frames = next(iter_batches(data, 8, frames=1, shuffle=False)).frames
        step.module(frames, torch.ones(8, 1, dtype=torch.bool, device=CUDA))
    assert step.graphs.eager_calls == 3  # eval mode: eager, although the shape fits
    for group in ("running", "weight"):  # BatchNorm statistics, then the trained weights
        keys = [k for k in ends[0] if group in k]
        eager = torch.cat([ends[0][k].flatten() for k in keys])
        graphed = torch.cat([ends[1][k].flatten() for k in keys])
        assert (graphed - eager).norm() <= tol * eager.norm(), group


# --------------------------------------------------------------------- trials and outputs


def test_a_fractional_trial_caps_its_cuda_memory(tmp_path: Path) -> None:
    """A trial with gpu_fraction 0.05 trains, and then cannot take 10% of the GPU (a process
    of its own: the cap is per process and stays)."""
    code = f"""
import importlib.util, json, torch
from pathlib import Path
spec = importlib.util.spec_from_file_location("cuda_tests", {str(Path(__file__))!r})
T = importlib.util.module_from_spec(spec); spec.loader.exec_module(T)
from jersey_ray.train import loop as L
L.train(T.config(gpu_fraction=0.05), T.trial_data(), Path({str(tmp_path)!r}), progress=False)
total = torch.cuda.get_device_properties(0).total_memory
try:
    torch.empty(int(0.10 * total), dtype=torch.uint8, device="cuda"); capped = False
except torch.cuda.OutOfMemoryError:
    capped = True
torch.empty(int(0.01 * total), dtype=torch.uint8, device="cuda")
print(json.dumps({{"capped": capped}}))
"""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"capped": True}
    assert (tmp_path / "best.pt").is_file()


def test_a_checkpoint_from_cuda_evaluates_on_the_cpu(tmp_path: Path) -> None:
    data = trial_data()
    L.train(config(), data, tmp_path, progress=False)
    on_cpu = load_model(tmp_path / "best.pt", "cpu")
    assert all(t.device.type == "cpu" for t in on_cpu.model.state_dict().values())
    on_gpu = load_model(tmp_path / "best.pt", CUDA)
    batch = next(iter_batches(data["test"], 12, frames=1, shuffle=False))
    with torch.no_grad():
        gpu = on_gpu.model(batch.frames, batch.mask)
        cpu = on_cpu.model(batch.frames.cpu(), batch.mask.cpu())
    for got, want in ((cpu.tens, gpu.tens), (cpu.ones, gpu.ones)):  # TF32 convs on the GPU
        assert (got - want.cpu()).norm() <= 1e-2 * want.norm().item()


def test_cuda_event_timing() -> None:
    from jersey_ray.bench.timing import CUDA_EVENTS, time_call

    a = torch.randn(2048, 2048, device=CUDA)
    timing = time_call(lambda: a @ a, warmup=2, iters=5, device=CUDA, clock=CUDA_EVENTS)
    assert timing.clock == CUDA_EVENTS and len(timing.samples_ms) == 5
    assert all(0 < s < 1000 for s in timing.samples_ms)


def test_the_profiler_trace_holds_gpu_kernels(tmp_path: Path) -> None:
    L.train(config(profile_steps=2), trial_data(), tmp_path, progress=False)
    traces = list((tmp_path / L.PROFILE_DIR).glob("*.pt.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]
    assert any(e.get("cat") == "kernel" for e in events)
    steps = [e for e in events if str(e.get("name", "")).startswith("ProfilerStep#")]
    assert len({e["name"] for e in steps}) == 2


def test_compiled_step_matches_eager_and_takes_any_frame_count() -> None:
    """Last: the slow one. The compiled backbone's first loss equals eager's (bf16), and an
    epoch of batches with different packed frame counts runs without a recompile each."""
    batch = next(iter_batches(tiny_split("train", 8, 4), 8, shuffle=False))
    losses = {}
    for compiled in (False, True):
        cfg = config(model="attn_bgru_luong", lr_scheme="discriminative", compile=compiled)
        step = new_step(cfg)
        counter = M.SplitCounter(CUDA)
        ST.train_step(step, batch, counter)
        losses[compiled] = counter.compute("train")[M.TRAIN_LOSS]
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)
    counts = epoch(step, tiny_split("train", 44, 5), L.make_generators(0, CUDA)).compute("train")
    assert all(math.isfinite(v) for v in counts.values())
