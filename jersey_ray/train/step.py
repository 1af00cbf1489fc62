"""The optimizer step of the report's protocol, shared by the trial and ``bench train``.

Loss ``w_t*CE(tens) + w_o*CE(ones)`` (or the model's own ``training_loss``: the CTC reader's
CTC); Adam with coupled L2 weight decay (or AdamW); one LR or discriminative per-group LRs;
global-norm clipping; per-step linear warm-up then cosine to zero. Training uses bf16 autocast
on GPUs that support it, else fp16 with a GradScaler, and fp32 on the CPU. A step never waits
for the device: the loss and the counts stay there.

Two CUDA-only speed options: ``compile`` (the backbone through ``torch.compile``) and
``cuda_graphs`` (:class:`GraphedBackbone`: full batches of a single-frame model replay the
backbone's forward and backward as CUDA graphs). :func:`profiling` records a few steps with
``torch.profiler`` for ``profile_steps``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from jersey_ray import metrics as M
from jersey_ray.cache.loader import Batch, batch_bounds
from jersey_ray.config import TrainConfig
from jersey_ray.errors import UserError
from jersey_ray.models import ModelOutput

GROUP_LR = {"backbone": "lr_backbone", "temporal": "lr_temporal", "heads": "lr_heads"}
PROFILE_SKIP = 3
"""Training steps before the profiler records: the first ones pay cuDNN autotuning,
compilation and graph capture, which are not the steady state."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA if available, else the CPU; ``cuda`` without a GPU is a UserError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda requested but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16``: what the training forward pass runs in."""
    if cfg.precision != "auto":
        return cfg.precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def set_determinism(on: bool) -> None:
    """The reference's ``cudnn.deterministic = True`` and more: no cuDNN autotuning,
    deterministic algorithms where torch has them (a warning, not an error, where it has none)
    and the cuBLAS workspace setting they need. Off: cuDNN autotunes for speed."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on
    torch.use_deterministic_algorithms(on, warn_only=True)


def warmup_cosine(step: int, warmup: int, cosine: int) -> float:
    """LR multiplier after ``step`` optimizer steps: (s+1)/W during warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if cosine == 0:  # a run that is all warm-up (the reference's 1-epoch smoke test)
        return 1.0
    progress = min((step - warmup) / cosine, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    # drop_last=False, as the reference, except that a last batch of one sequence joins the one
    # before (BatchNorm cannot train on it): the training loader's own bounds
    return len(batch_bounds(n_train, batch_size, training=True))


def param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """Named optimizer groups from ``model.param_groups()``; empty groups are skipped."""
    groups = []
    # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
    for name, params in model.param_groups().items():  # type: ignore[operator]
        if not params:
            continue
        if cfg.lr_scheme == "uniform":
            lr = cfg.lr
        elif name in GROUP_LR:
            lr = getattr(cfg, GROUP_LR[name])
        else:
            raise ValueError(f"model group {name!r} has no discriminative LR in TrainConfig")
        groups.append({"params": params, "lr": lr, "name": name})
    grouped = {id(p) for g in groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if len(grouped) != len(trainable) or sum(len(g["params"]) for g in groups) != len(grouped):
        raise ValueError("model.param_groups() must hold every trainable parameter exactly once")
    return groups


def make_optimizer(
    cfg: TrainConfig, groups: list[dict[str, Any]], device: torch.device
) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    fused = device.type == "cuda"  # one kernel for all params; steps with the scaler sync-free
    return kind(groups, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused or None)


def check_cuda_graphs(device: torch.device, input_frames: int | None) -> None:
    """``cuda_graphs`` needs a CUDA device and fixed-shape batches: a UserError otherwise."""
    if device.type != "cuda":
        raise UserError(
            f"cuda_graphs needs a CUDA GPU and this run is on {device.type}; drop cuda_graphs"
        )
    if input_frames != 1:
        raise UserError(
            "cuda_graphs is for single-frame (Phase 0) models: a sequence model's batches hold a "
            "varying number of frames, which a CUDA graph cannot replay; drop cuda_graphs"
        )


class GraphedBackbone:
    """The backbone's training forward (and so its backward) of full batches as CUDA graphs.

    Installed as the backbone's ``forward`` (an instance attribute: the class and the
    state-dict keys stay as they were). A call in training mode, with gradients, whose input
    has the shape, strides, dtype and autocast of the first full batch replays the graphs;
    anything else (an epoch's last, smaller batch; evaluation in eval mode) runs the eager
    forward, so a graph only ever sees the shape it was made for and every sample still trains
    each epoch. Without ``compiled``, :func:`torch.cuda.make_graphed_callables` captures the
    graphs at the first full batch (its warm-up passes would move BatchNorm's running
    statistics, so those are restored); with it, the forward is ``torch.compile(mode=
    "reduce-overhead", dynamic=False)`` and inductor records the graphs.
    """

    def __init__(self, backbone: nn.Module, batch_size: int, compiled: bool) -> None:
        self.backbone = backbone
        self.batch_size = batch_size
        self.compiled = compiled
        self.eager = backbone.forward
        self.graphed: Callable[[torch.Tensor], torch.Tensor] | None = None
        if compiled:
            self.graphed = torch.compile(self.eager, mode="reduce-overhead", dynamic=False)
        self.key: tuple | None = None  # the input the graphs were made for
        self.replays = 0  # calls that ran the graphs (bench train reports them)
        self.eager_calls = 0
        backbone.forward = self.forward

    @staticmethod
    def _key(x: torch.Tensor) -> tuple:
        amp = torch.is_autocast_enabled(x.device.type)
        dtype = torch.get_autocast_dtype(x.device.type) if amp else None
        return tuple(x.shape), x.stride(), x.dtype, x.device, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone.training and torch.is_grad_enabled():
            key = self._key(x)
            if self.key is None and x.shape[0] == self.batch_size:
                self._make_graphs(x, key)
            if key == self.key:
                self.replays += 1
                assert self.graphed is not None  # made with self.key by _make_graphs
                return self.graphed(x)
        self.eager_calls += 1
        return self.eager(x)

    def _make_graphs(self, x: torch.Tensor, key: tuple) -> None:
        if not self.compiled:
            saved = {name: b.detach().clone() for name, b in self.backbone.named_buffers()}
            del self.backbone.forward  # capture the module itself, not this dispatcher
            try:
                sample = x.detach().clone(memory_format=torch.preserve_format)
                torch.cuda.make_graphed_callables(self.backbone, (sample,))
                self.graphed = self.backbone.forward
            finally:
                self.backbone.forward = self.forward
            with torch.no_grad():
                for name, buffer in self.backbone.named_buffers():
                    buffer.copy_(saved[name])
        self.key = key


@dataclass
class Step:
    """Everything one optimizer step touches; shared by the trial and ``bench train``."""

    module: nn.Module  # its backbone compiled in place when cfg.compile (without cuda_graphs)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    autocast: torch.dtype | None
    device: torch.device
    loss_weights: tuple[float, float]
    grad_clip: float
    params: list[nn.Parameter]  # what clipping sees: every trainable parameter
    graphs: GraphedBackbone | None = None  # cfg.cuda_graphs

    @property
    def input_frames(self) -> int | None:
        """Frames per sequence the model reads (what its batches need to hold)."""
        # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
        return self.module.input_frames  # type: ignore[return-value]


def make_step(cfg: TrainConfig, module: nn.Module, n_train: int, device: torch.device) -> Step:
    """Put ``module`` on ``device`` and build its optimizer, schedule, scaler and compiled form."""
    if cfg.cuda_graphs:
        # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
        check_cuda_graphs(device, module.input_frames)  # type: ignore[arg-type]
    module = module.to(device)
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, param_groups(cfg, module), device)
    per_epoch = steps_per_epoch(n_train, cfg.batch_size)
    warmup = cfg.warmup_epochs * per_epoch
    cosine = (cfg.epochs - cfg.warmup_epochs) * per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup, cosine)
    )
    precision = resolve_precision(cfg, device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    graphs = None
    if cfg.cuda_graphs:
        # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
        graphs = GraphedBackbone(module.backbone, cfg.batch_size, compiled=cfg.compile)  # type: ignore[arg-type]
    elif cfg.compile:
        # The per-frame CNN is nearly all the compute. Dynamo cannot capture nn.GRU (a graph
        # break at every call, a recompile per sequence length), so only the backbone is
        # compiled: in place (state-dict keys unchanged), for any number of packed frames.
        # a GroupedModel attribute, which nn.Module's __getattr__ types as Tensor | Module
        module.backbone.compile(dynamic=True)  # type: ignore[union-attr]
    return Step(
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        autocast=dtype,
        device=device,
        loss_weights=cfg.loss_weights,
        grad_clip=cfg.grad_clip,
        params=[p for p in module.parameters() if p.requires_grad],
        graphs=graphs,
    )


def loss_fn(
    out: ModelOutput, batch: Batch, weights: tuple[float, float], module: nn.Module | None = None
) -> torch.Tensor:
    """``w_t*CE(tens) + w_o*CE(ones)``, or the model's own ``training_loss(out, mask, tens,
    ones, weights)`` where it has one (the CTC reader's CTC loss)."""
    hook = getattr(module, "training_loss", None)
    if hook is not None:
        return hook(out, batch.mask, batch.tens, batch.ones, weights)
    tens = F.cross_entropy(out.tens.float(), batch.tens)
    ones = F.cross_entropy(out.ones.float(), batch.ones)
    return weights[0] * tens + weights[1] * ones


def train_step(step: Step, batch: Batch, counter: M.SplitCounter) -> None:
    """One optimizer step; no host sync (the loss and counts stay on the device)."""
    graphs = step.graphs
    if graphs is not None and graphs.compiled:
        torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs are spent
    # CUDA graphs need autocast's weight-cast cache off (their casts are inside the graph)
    with torch.autocast(
        step.device.type,
        dtype=step.autocast,
        enabled=step.autocast is not None,
        cache_enabled=graphs is None,
    ):
        out = step.module(batch.frames, batch.mask)
        loss = loss_fn(out, batch, step.loss_weights, step.module)
    step.optimizer.zero_grad(set_to_none=True)
    if step.scaler is not None:
        step.scaler.scale(loss).backward()
        step.scaler.unscale_(step.optimizer)  # clip the true gradients
    else:
        loss.backward()
    if step.grad_clip > 0:
        nn.utils.clip_grad_norm_(step.params, step.grad_clip)
    if step.scaler is not None:
        step.scaler.step(step.optimizer)
        step.scaler.update()
    else:
        step.optimizer.step()
    step.scheduler.step()  # also after a step the scaler skipped (decisions row 24)
    counter.update(loss, out.tens, out.ones, batch.tens, batch.ones)


def run_epoch(
    step: Step,
    batches: Iterable[Batch],
    counter: M.SplitCounter,
    *,
    total: int | None = None,
    desc: str = "train",
    progress: bool = False,
    after_step: Callable[[], Any] | None = None,
) -> int:
    """Train on every batch of ``batches``; returns the number of real frames seen.
    ``after_step`` is called after each step (the profiler's ``step``)."""
    step.module.train()
    n_frames = 0
    for batch in tqdm(batches, total=total, desc=desc, disable=not progress, leave=False):
        train_step(step, batch, counter)
        n_frames += batch.n_frames
        if after_step is not None:
            after_step()
    return n_frames


@contextmanager
def profiling(
    steps: int, folder: Path, device: torch.device, total: int | None = None
) -> Iterator[Callable[[], Any] | None]:
    """``torch.profiler`` over ``steps`` training steps after :data:`PROFILE_SKIP` (fewer in an
    epoch of only ``total`` steps); yields :func:`run_epoch`'s ``after_step`` (None when
    ``steps`` is 0). The trace, ``<host>_<pid>.<ns>.pt.trace.json``, lands in ``folder`` once
    the steps are recorded: TensorBoard's PyTorch profiler plugin reads the folder, Perfetto
    and chrome://tracing read the file."""
    if steps <= 0:
        yield None
        return
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    total = total if total is not None else PROFILE_SKIP + 1 + steps
    skip = max(0, min(PROFILE_SKIP, total - 2))  # the recorded steps must start in this epoch
    warmup = 1 if total > 1 else 0  # the profiler's own warm-up step, never recorded
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    folder.mkdir(parents=True, exist_ok=True)
    with profile(
        activities=activities,
        schedule=schedule(wait=skip, warmup=warmup, active=steps, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(folder)),
        record_shapes=True,
        profile_memory=True,
    ) as prof:
        yield prof.step
