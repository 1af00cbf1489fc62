"""The deployment variants of ``bench infer``: one model, many ways to run its forward pass.

Each :class:`Variant` builds a :class:`Runner` from the fp32 eval model: ``prepare`` turns the
packed frames [N,3,H,W] and mask [B,T] (on the benchmark device) into the call's arguments
outside the clock (a dtype cast, a NumPy copy, an ONNX Runtime I/O binding), ``call`` is what is
timed, ``logits`` turns its output into (tens, ones) float32 logits on the host. A variant that
cannot be built here raises :class:`Unsupported` with the reason, which becomes its row.

Every variant gets its own copy of the model, so a cast or a quantization never changes the
fp32 baseline (the reference converted its one model to half in place, report-spec 6.1).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jersey_ray.bench.timing import CUDA_EVENTS, PERF_COUNTER
from jersey_ray.models.export import ONNX_OUTPUTS, Export, ExportError, TwoHeads
from jersey_ray.models.export import export_onnx as shared_export

Logits = tuple[torch.Tensor, torch.Tensor]

INT8_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.GRU, nn.LSTM)
"""What dynamic int8 quantization replaces. Convolutions have no dynamic int8 kernels, and
``nn.RNN`` (tanh) has no dynamic quantized module, so those stay fp32."""


class Unsupported(Exception):
    """The variant cannot run on this machine or in this torch; the message says why."""


@dataclass
class Context:
    model: nn.Module
    """The fp32 model in eval mode, on ``device``."""
    device: torch.device
    example: tuple[torch.Tensor, torch.Tensor]
    """A small packed batch (frames, mask) on ``device`` for tracing."""
    scratch: Path
    """A temporary folder (the ONNX file)."""
    steps: int
    """The longest mask any input will have (the ONNX export's example and check T)."""
    exported: Export | None = None
    """The ONNX export, once an ONNX Runtime variant made it."""


@dataclass
class Runner:
    call: Callable[..., Any]
    prepare: Callable[[torch.Tensor, torch.Tensor], tuple]
    logits: Callable[[Any], Logits]
    clock: str
    notes: list[str] = field(default_factory=list)
    after: Callable[[], list[str]] = list
    """Notes known only once the variant has run (graph breaks, recompilations)."""


@dataclass(frozen=True)
class Variant:
    name: str
    """Id for ``--variants``."""
    setting: str
    """Table 4's "Setting" column."""
    precision: str
    runtime: str
    """Table 4's "Compiled" column: what executes the graph."""
    build: Callable[[Context], Runner]


def _clock(device: torch.device) -> str:
    return CUDA_EVENTS if device.type == "cuda" else PERF_COUNTER


def _torch_logits(out: Any) -> Logits:
    return out[0].float().cpu(), out[1].float().cpu()


def _same(frames: torch.Tensor, mask: torch.Tensor) -> tuple:
    return frames, mask


def _cast_inputs(dtype: torch.dtype) -> Callable[[torch.Tensor, torch.Tensor], tuple]:
    return lambda frames, mask: (frames.to(dtype), mask)


DEPRECATED = re.compile(r"`([^`]+)` is deprecated")


def summarize_warnings(messages: list[str], prefix: str) -> list[str]:
    """One note for the deprecated APIs that were used, one per other distinct warning (its
    first sentence, with a count)."""
    deprecated = sorted({m[1] for msg in messages if (m := DEPRECATED.search(msg))})
    others = Counter(
        re.split(r"(?<=\.)\s", msg.strip())[0] for msg in messages if not DEPRECATED.search(msg)
    )
    notes = (
        [f"deprecated in torch {torch.__version__}: {', '.join(deprecated)}"] if deprecated else []
    )
    return notes + [
        f"{prefix} warned: {m}" + (f" (x{n})" if n > 1 else "") for m, n in others.items()
    ]


@contextmanager
def _quiet(notes: list[str], prefix: str) -> Iterator[None]:
    """Turn the warnings raised while building into notes (deprecations, tracer warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    notes += summarize_warnings([str(w.message) for w in caught], prefix)


def _autocast_check(device: torch.device, dtype: torch.dtype) -> None:
    if not torch.amp.is_autocast_available(device.type):
        raise Unsupported(f"autocast is not available on {device.type}")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise Unsupported("this GPU has no bf16 support")


def brief_error(err: BaseException, chars: int = 240) -> str:
    """An exception as one line: its type and the start of its message."""
    text = " ".join(x.strip() for x in str(err).splitlines() if x.strip())
    return f"{type(err).__name__}: {text}"[:chars]


def _smoke(runner: Runner, ctx: Context) -> Runner:
    """One call on the example batch: an eager variant whose kernels do not exist for this
    dtype and device fails here, as an unsupported row rather than a crash."""
    try:
        with torch.inference_mode():
            runner.call(*runner.prepare(*ctx.example))
    except (RuntimeError, NotImplementedError) as err:
        raise Unsupported(f"forward fails on {ctx.device.type}: {brief_error(err)}") from err
    return runner


# ---------------------------------------------------------------------------------- eager


def eager_fp32(ctx: Context) -> Runner:
    return Runner(ctx.model, _same, _torch_logits, _clock(ctx.device))


def autocast(dtype: torch.dtype) -> Callable[[Context], Runner]:
    def build(ctx: Context) -> Runner:
        _autocast_check(ctx.device, dtype)
        model, kind = ctx.model, ctx.device.type

        def call(frames: torch.Tensor, mask: torch.Tensor) -> Any:
            with torch.autocast(kind, dtype=dtype):
                return model(frames, mask)

        return _smoke(Runner(call, _same, _torch_logits, _clock(ctx.device)), ctx)

    return build


def cast(dtype: torch.dtype) -> Callable[[Context], Runner]:
    def build(ctx: Context) -> Runner:
        model = copy.deepcopy(ctx.model).to(dtype)
        runner = Runner(model, _cast_inputs(dtype), _torch_logits, _clock(ctx.device))
        runner.notes.append(f"weights and input frames cast to {dtype} (outside the clock)")
        return _smoke(runner, ctx)

    return build


# ----------------------------------------------------------------------------- TorchScript


def script(ctx: Context) -> Runner:
    notes: list[str] = []
    try:
        with _quiet(notes, "torch.jit.script"):
            scripted = torch.jit.script(copy.deepcopy(ctx.model))
    except Exception as err:  # the scripting frontend's errors have no common type
        raise Unsupported(f"torch.jit.script cannot compile the model: {brief_error(err)}") from err
    return Runner(scripted, _same, _torch_logits, _clock(ctx.device), notes)


def trace(dtype: torch.dtype) -> Callable[[Context], Runner]:
    def build(ctx: Context) -> Runner:
        model = TwoHeads(copy.deepcopy(ctx.model).to(dtype))  # a trace outputs tensors only
        prepare = _cast_inputs(dtype)
        notes = ["torch.jit.trace on the example batch, then torch.jit.optimize_for_inference"]
        with _quiet(notes, "torch.jit.trace"), torch.no_grad():
            traced = torch.jit.trace(model, prepare(*ctx.example), check_trace=False)
            traced = torch.jit.optimize_for_inference(traced)
        return _smoke(Runner(traced, prepare, _torch_logits, _clock(ctx.device), notes), ctx)

    return build


# ------------------------------------------------------------------------------ compile


RECOMPILE_LIMIT = 64
"""Per compiled model: past dynamo's default of 8 it would fall back to eager without an
error, and a benchmark over many batch sizes and test batches must not time that."""


def _dynamo_counts() -> tuple[Counter, int]:
    from torch._dynamo.utils import counters

    breaks = Counter({k.splitlines()[0]: v for k, v in counters["graph_break"].items()})
    return breaks, counters["stats"]["unique_graphs"]


def compiled(mode: str, dtype: torch.dtype | None = None) -> Callable[[Context], Runner]:
    def build(ctx: Context) -> Runner:
        if dtype is not None:
            _autocast_check(ctx.device, dtype)
        # process-wide (torch.compile takes no recompile_limit before torch 2.14): a benchmark
        # process compiles only these variants
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, RECOMPILE_LIMIT)
        model = torch.compile(ctx.model, mode=None if mode == "default" else mode)
        kind = ctx.device.type
        breaks_before, graphs_before = _dynamo_counts()

        def call(frames: torch.Tensor, mask: torch.Tensor) -> Any:
            if dtype is None:
                return model(frames, mask)
            with torch.autocast(kind, dtype=dtype):
                return model(frames, mask)

        def after() -> list[str]:
            breaks, graphs = _dynamo_counts()
            notes = [f"{graphs - graphs_before} graphs compiled (new shapes recompile)"]
            return notes + [
                f"graph break x{n}: {why}" for why, n in (breaks - breaks_before).items()
            ]

        notes = [
            f"torch.compile(mode={mode!r}), default dynamic shapes; compilation happens in "
            "the first call of each input shape (first-call column)"
        ]
        return Runner(call, _same, _torch_logits, _clock(ctx.device), notes, after)

    return build


# --------------------------------------------------------------------------------- ONNX


def export_onnx(ctx: Context) -> tuple[Path, list[str]]:
    """The shared export (:func:`jersey_ray.models.export.export_onnx`: N, B and T dynamic,
    checked against PyTorch before it is written), once per run: both ONNX Runtime variants
    run the same file."""
    if ctx.exported is None:
        height, width = ctx.example[0].shape[2:]
        size = (height, width)
        try:
            ctx.exported = shared_export(
                ctx.model, ctx.scratch / "model.onnx", size, steps=ctx.steps
            )
        except ExportError as err:
            raise Unsupported(str(err)) from err
    done = ctx.exported
    notes = [
        f"exported once ({'; '.join(done.notes)}): packed frames [N,3,H,W] float32 with N "
        "dynamic, mask [B,T] bool with B and T dynamic, so every batch runs at its own T; "
        f"outputs tens and ones logits; {done.summary}"
    ]
    return done.path, notes


def _ort_cpu_inputs(frames: torch.Tensor, mask: torch.Tensor) -> tuple:
    return ({"frames": frames.float().cpu().contiguous().numpy(), "mask": mask.cpu().numpy()},)


def onnxruntime_cpu(ctx: Context) -> Runner:
    import onnxruntime as ort

    path, notes = export_onnx(ctx)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as torch
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    notes.append(
        f"onnxruntime {ort.__version__}, CPUExecutionProvider, "
        f"{options.intra_op_num_threads} intra-op threads; inputs copied to host NumPy "
        "before the clock"
    )

    def call(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(list(ONNX_OUTPUTS), feeds)

    def logits(out: list[np.ndarray]) -> Logits:
        return torch.from_numpy(out[0]).float(), torch.from_numpy(out[1]).float()

    return Runner(call, _ort_cpu_inputs, logits, PERF_COUNTER, notes)


def onnxruntime_cuda(ctx: Context) -> Runner:
    import onnxruntime as ort

    if ctx.device.type != "cuda":
        raise Unsupported("needs --device cuda")
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        raise Unsupported(
            f"this onnxruntime build has no CUDAExecutionProvider (has {', '.join(providers)}); "
            "install onnxruntime-gpu"
        )
    path, notes = export_onnx(ctx)
    index = ctx.device.index or 0
    session = ort.InferenceSession(
        str(path), providers=[("CUDAExecutionProvider", {"device_id": index})]
    )
    notes.append(
        "CUDAExecutionProvider with I/O binding to the device-resident torch tensors; "
        "timed with perf_counter (ORT returns once its stream is done)"
    )

    def prepare(frames: torch.Tensor, mask: torch.Tensor) -> tuple:
        frames, mask = frames.float().contiguous(), mask.contiguous()
        binding = session.io_binding()
        for name, t, kind in (("frames", frames, np.float32), ("mask", mask, np.bool_)):
            binding.bind_input(name, "cuda", index, kind, tuple(t.shape), t.data_ptr())
        for name in ONNX_OUTPUTS:
            binding.bind_output(name, "cuda", index)
        return binding, frames, mask  # the tensors must outlive the binding

    def call(binding: Any, *_: torch.Tensor) -> Any:
        session.run_with_iobinding(binding)
        return binding

    def logits(binding: Any) -> Logits:
        out = binding.copy_outputs_to_cpu()
        return torch.from_numpy(out[0]).float(), torch.from_numpy(out[1]).float()

    return Runner(call, prepare, logits, PERF_COUNTER, notes)


# --------------------------------------------------------------------------------- int8


def quantized_int8(ctx: Context) -> Runner:
    if ctx.device.type != "cpu":
        raise Unsupported("dynamic int8 kernels are CPU-only; run with --device cpu")
    notes: list[str] = []
    fp32 = copy.deepcopy(ctx.model)
    before = Counter(type(m).__name__ for m in fp32.modules() if isinstance(m, INT8_TYPES))
    with _quiet(notes, "quantize_dynamic"):
        model = torch.ao.quantization.quantize_dynamic(fp32, set(INT8_TYPES), dtype=torch.qint8)
    after = Counter(type(m).__name__ for m in model.modules() if "quantized" in type(m).__module__)
    done = ", ".join(f"{k} x{after.get(k, 0)}" for k in sorted(before))
    notes.insert(
        0,
        f"torch.ao.quantization.quantize_dynamic, qint8 weights: {done}; convolutions "
        "and everything else stay fp32",
    )
    return _smoke(Runner(model, _same, _torch_logits, PERF_COUNTER, notes), ctx)


VARIANTS: tuple[Variant, ...] = (
    Variant("fp32", "baseline", "fp32", "eager", eager_fp32),
    Variant(
        "fp16-autocast", "mixed precision", "fp16 (autocast)", "eager", autocast(torch.float16)
    ),
    Variant(
        "bf16-autocast", "mixed precision", "bf16 (autocast)", "eager", autocast(torch.bfloat16)
    ),
    Variant("fp16-cast", "half model", "fp16 (model cast)", "eager", cast(torch.float16)),
    Variant("bf16-cast", "half model", "bf16 (model cast)", "eager", cast(torch.bfloat16)),
    Variant("torchscript-script", "TorchScript", "fp32", "torch.jit.script", script),
    Variant("torchscript-trace", "TorchScript", "fp32", "torch.jit.trace", trace(torch.float32)),
    Variant(
        "torchscript-trace-fp16",
        "TorchScript",
        "fp16 (model cast)",
        "torch.jit.trace",
        trace(torch.float16),
    ),
    Variant("compile", "compiled", "fp32", "torch.compile default", compiled("default")),
    Variant(
        "compile-bf16",
        "compiled",
        "bf16 (autocast)",
        "torch.compile default",
        compiled("default", torch.bfloat16),
    ),
    Variant(
        "compile-reduce-overhead-bf16",
        "compiled",
        "bf16 (autocast)",
        "torch.compile reduce-overhead (CUDA graphs on a GPU)",
        compiled("reduce-overhead", torch.bfloat16),
    ),
    Variant(
        "compile-max-autotune",
        "compiled",
        "fp32",
        "torch.compile max-autotune",
        compiled("max-autotune"),
    ),
    Variant(
        "compile-max-autotune-bf16",
        "compiled",
        "bf16 (autocast)",
        "torch.compile max-autotune",
        compiled("max-autotune", torch.bfloat16),
    ),
    Variant("onnxruntime-cpu", "exported", "fp32", "ONNX Runtime CPU EP", onnxruntime_cpu),
    Variant("onnxruntime-cuda", "exported", "fp32", "ONNX Runtime CUDA EP", onnxruntime_cuda),
    Variant("int8-dynamic", "quantized", "int8 dynamic + fp32", "eager", quantized_int8),
)
BY_NAME = {v.name: v for v in VARIANTS}
BASELINE = "fp32"
