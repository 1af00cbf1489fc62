"""One training trial with the reference study's protocol: resumable, observable, fast.

``train(cfg, data, out_dir, report, resume)`` is what Ray Tune runs for every grid point; it also
runs alone (``python -m jersey_ray.train``, no Ray). The protocol (report-spec 3, decisions):
loss ``w_t*CE(tens) + w_o*CE(ones)``; Adam with coupled L2 weight decay (or AdamW); one LR or
discriminative per-group LRs; global-norm clipping; per-step linear warm-up then cosine to zero;
after every epoch train and val metrics, the best val ``acc_number`` checkpoint kept (ties keep
the earlier); at the end that checkpoint is evaluated once on test, which never influences any
choice. Evaluation runs in fp32 (as the reference); training uses bf16 autocast on GPUs that
support it, else fp16 with a GradScaler, and fp32 on the CPU.

A seed drives three streams: initialisation (global torch RNG before ``build_model``),
shuffling (a CPU generator) and augmentation (a generator on the device). Same seed and config on
the CPU give bit-identical metrics, also across a stop and ``resume``.

Reporter protocol: ``report(metrics, checkpoint_dir)`` once per epoch. The callee copies or moves
what it wants out of ``checkpoint_dir`` before returning; the directory is deleted afterwards.
``checkpoint_dir`` holds ``best.pt`` = {"model", "config" (JSON), "epoch", "metrics" (val_* of
that epoch, plus test_* in the final epoch's copy)} and ``last.pt`` (the full state, see
:func:`_full_state`); ``last.pt`` is left out of the final epoch's directory unless the reporter
has ``keeps_final_state = True`` (:class:`LocalReporter` does). Every file loads with
``torch.load(weights_only=True)``; configs are JSON strings (``config.from_json``).

``train`` itself writes into ``out_dir``: ``config.json``, ``metrics.jsonl`` (one row per
epoch), ``test.json`` and TensorBoard events. With ``report=None`` a :class:`LocalReporter`
moves the checkpoint files into ``out_dir`` too.

Fault injection (for the sweep's retry tests): with ``JERSEY_RAY_FAIL_AT_EPOCH=N`` in the
environment, the trial raises RuntimeError once when epoch N starts, after creating
``out_dir/.fault_injected``; a retry into the same ``out_dir`` finds the marker and goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from jersey_ray import cli
from jersey_ray import metrics as M
from jersey_ray.cache import cache_name
from jersey_ray.config import TrainConfig, from_dict, from_json, to_dict, to_json
from jersey_ray.errors import UserError, run_cli
from jersey_ray.loader import Batch, SplitData, iter_batches, load_split
from jersey_ray.models import build_model, count_params, get_spec

Reporter = Callable[[dict[str, float], Path | None], None]
"""``report(metrics, checkpoint_dir)``; the callee copies what it keeps from the directory."""

FAIL_ENV = "JERSEY_RAY_FAIL_AT_EPOCH"
FAULT_MARKER = ".fault_injected"
RESUME_FREE = ("device", "gpu_fraction", "precision", "compile", "channels_last", "eval_batch_size")
"""Config keys that may differ between a checkpoint and its resume (where and how fast it runs)."""
AUG_SEED_OFFSET = 1_000_003  # the augmentation stream must not replay the shuffle stream
GROUP_LR = {"backbone": "lr_backbone", "temporal": "lr_temporal", "heads": "lr_heads"}


class LocalReporter:
    """The reporter of a run without Ray: moves each epoch's checkpoint files into ``out_dir``."""

    keeps_final_state = True

    def __init__(self, out_dir: Path, echo: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.echo = echo

    def __call__(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is not None:
            for path in sorted(checkpoint_dir.iterdir()):
                tmp = self.out_dir / f".{path.name}.tmp"
                shutil.move(path, tmp)  # a rename on one file system, else a copy
                os.replace(tmp, self.out_dir / path.name)  # atomic: never a half-written file
        if self.echo:
            print(epoch_line(metrics), flush=True)


def epoch_line(row: dict[str, float]) -> str:
    """One human line per epoch."""
    return (
        f"epoch {int(row[M.EPOCH])}: train loss {row[M.TRAIN_LOSS]:.4f} "
        f"acc {row[M.TRAIN_ACC_NUMBER]:.4f} | val loss {row[M.VAL_LOSS]:.4f} "
        f"acc {row[M.VAL_ACC_NUMBER]:.4f} (tens {row[M.VAL_ACC_TENS]:.4f}, "
        f"ones {row[M.VAL_ACC_ONES]:.4f}) | best {row[M.BEST_VAL_ACC_NUMBER]:.4f} "
        f"@{int(row[M.BEST_EPOCH])} | lr {row[M.LR]:.2e} | {row[M.FRAMES_PER_S]:.0f} frames/s "
        f"{row[M.EPOCH_TIME_S]:.1f} s"
    )


# ---------------------------------------------------------------- protocol pieces


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


def warmup_cosine(step: int, warmup: int, cosine: int) -> float:
    """LR multiplier after ``step`` optimizer steps: (s+1)/W during warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if cosine == 0:  # a run that is all warm-up (the reference's 1-epoch smoke test)
        return 1.0
    progress = min((step - warmup) / cosine, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)  # drop_last=False, as the reference


def param_groups(cfg: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """Named optimizer groups from ``model.param_groups()``; empty groups are skipped."""
    groups = []
    for name, params in model.param_groups().items():
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


# ---------------------------------------------------------------- the training step


@dataclass
class Step:
    """Everything one optimizer step touches; shared by :func:`train` and ``bench train``."""

    module: nn.Module  # its backbone compiled in place when cfg.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    autocast: torch.dtype | None
    device: torch.device
    sequence: bool
    loss_weights: tuple[float, float]
    grad_clip: float
    params: list[nn.Parameter]  # what clipping sees: every trainable parameter


def make_step(cfg: TrainConfig, module: nn.Module, n_train: int, device: torch.device) -> Step:
    """Put ``module`` on ``device`` and build its optimizer, schedule, scaler and compiled form."""
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
    if cfg.compile:
        # The per-frame CNN is nearly all the compute. Dynamo cannot capture nn.GRU (a graph
        # break at every call, a recompile per sequence length), so only the backbone is
        # compiled: in place (state-dict keys unchanged), for any number of packed frames.
        module.backbone.compile(dynamic=True)
    return Step(
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        autocast=dtype,
        device=device,
        sequence=get_spec(cfg.model).sequence,
        loss_weights=cfg.loss_weights,
        grad_clip=cfg.grad_clip,
        params=[p for p in module.parameters() if p.requires_grad],
    )


def forward(model: nn.Module, batch: Batch, sequence: bool) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(batch.frames, batch.mask) if sequence else model(batch.frames)
    return out[0], out[1]  # attention models add their frame weights


def loss_fn(
    tens_logits: torch.Tensor, ones_logits: torch.Tensor, batch: Batch, weights: tuple[float, float]
) -> torch.Tensor:
    tens = F.cross_entropy(tens_logits, batch.tens)
    ones = F.cross_entropy(ones_logits, batch.ones)
    return weights[0] * tens + weights[1] * ones


def train_step(step: Step, batch: Batch, counter: M.SplitCounter) -> None:
    """One optimizer step; no host sync (the loss and counts stay on the device)."""
    with torch.autocast(step.device.type, dtype=step.autocast, enabled=step.autocast is not None):
        tens_logits, ones_logits = forward(step.module, batch, step.sequence)
        loss = loss_fn(tens_logits, ones_logits, batch, step.loss_weights)
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
    counter.update(loss, tens_logits, ones_logits, batch.tens, batch.ones)


def run_epoch(
    step: Step,
    batches: Iterable[Batch],
    counter: M.SplitCounter,
    *,
    total: int | None = None,
    desc: str = "train",
    progress: bool = False,
) -> int:
    """Train on every batch of ``batches``; returns the number of real frames seen."""
    step.module.train()
    n_frames = 0
    for batch in tqdm(batches, total=total, desc=desc, disable=not progress, leave=False):
        train_step(step, batch, counter)
        n_frames += batch.n_frames
    return n_frames


@torch.no_grad()
def evaluate(
    step: Step, data: SplitData, batch_size: int, *, predictions: bool = False
) -> tuple[dict[str, float], dict[str, torch.Tensor] | None]:
    """Metrics of ``data`` in fp32 eval mode, and optionally all predictions and targets."""
    step.module.eval()
    counter = M.SplitCounter(step.device)
    parts: dict[str, list[torch.Tensor]] = {
        "tens": [],
        "ones": [],
        "tens_true": [],
        "ones_true": [],
    }
    for batch in iter_batches(data, batch_size, sequence=step.sequence, shuffle=False):
        tens_logits, ones_logits = forward(step.module, batch, step.sequence)
        loss = loss_fn(tens_logits, ones_logits, batch, step.loss_weights)
        counter.update(loss, tens_logits, ones_logits, batch.tens, batch.ones)
        if predictions:
            parts["tens"].append(tens_logits.argmax(1))
            parts["ones"].append(ones_logits.argmax(1))
            parts["tens_true"].append(batch.tens)
            parts["ones_true"].append(batch.ones)
    step.module.train()
    preds = {k: torch.cat(v).cpu() for k, v in parts.items()} if predictions else None
    return counter.compute(data.split), preds


# ---------------------------------------------------------------- run state and checkpoints


@dataclass
class RunState:
    """What survives an epoch besides the step: progress, best-so-far and the history."""

    shuffle: torch.Generator
    augment: torch.Generator
    epoch: int = 0
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_model: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def consider(self, epoch: int, val: dict[str, float], module: nn.Module) -> None:
        """Keep ``epoch`` as the best if its val acc_number is strictly greater (ties: earlier)."""
        if self.best_model is None or val[M.VAL_ACC_NUMBER] > self.best_metrics[M.VAL_ACC_NUMBER]:
            self.best_epoch = epoch
            self.best_metrics = dict(val)
            self.best_model = {k: v.detach().clone() for k, v in module.state_dict().items()}


def make_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    shuffle = torch.Generator().manual_seed(seed)
    augment = torch.Generator(device=device).manual_seed(seed + AUG_SEED_OFFSET)
    return shuffle, augment


def _full_state(cfg: TrainConfig, step: Step, state: RunState) -> dict[str, Any]:
    """``last.pt``: everything needed to continue bit-identically."""
    cuda = torch.cuda.get_rng_state_all() if step.device.type == "cuda" else None
    return {
        "model": step.module.state_dict(),
        "optimizer": step.optimizer.state_dict(),
        "scheduler": step.scheduler.state_dict(),
        "scaler": step.scaler.state_dict() if step.scaler is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": cuda,
            "shuffle": state.shuffle.get_state(),
            "augment": state.augment.get_state(),
        },
        "epoch": state.epoch,
        "best": {"epoch": state.best_epoch, "metrics": dict(state.best_metrics)},
        "history": [dict(row) for row in state.history],
        "config": to_json(cfg),
    }


def _best_state(cfg: TrainConfig, state: RunState, extra: dict[str, float]) -> dict[str, Any]:
    assert state.best_model is not None
    return {
        "model": {k: v.cpu() for k, v in state.best_model.items()},
        "config": to_json(cfg),
        "epoch": state.best_epoch,
        "metrics": {**state.best_metrics, **extra},
    }


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file, safely (weights_only); UserError naming the file if it is unusable."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found (resume needs last.pt and best.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files all mean the same to the user
        raise UserError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err


def config_diff(saved: TrainConfig, cfg: TrainConfig) -> list[str]:
    """Keys that differ, ignoring where and how fast the run executes."""
    a, b = to_dict(saved), to_dict(cfg)
    return sorted(k for k in a if k not in RESUME_FREE and a[k] != b[k])


def read_resume(directory: Path, cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(last, best) checkpoints of ``directory``, refusing a config that differs from ``cfg``."""
    last = load_checkpoint(directory / "last.pt")
    best = load_checkpoint(directory / "best.pt")
    diff = config_diff(from_json(TrainConfig, last["config"]), cfg)
    if diff:
        raise UserError(
            f"{directory / 'last.pt'}: cannot resume, the config differs in {', '.join(diff)}; "
            "resume with the same settings or start a new run in another folder"
        )
    if last["epoch"] >= cfg.epochs:
        raise UserError(f"{directory}: the run already finished its {cfg.epochs} epochs")
    return last, best


def restore(step: Step, state: RunState, last: dict[str, Any], best: dict[str, Any]) -> None:
    step.module.load_state_dict(last["model"])
    step.optimizer.load_state_dict(last["optimizer"])
    step.scheduler.load_state_dict(last["scheduler"])
    if step.scaler is not None and last["scaler"] is not None:
        step.scaler.load_state_dict(last["scaler"])
    rng = last["rng"]
    torch.set_rng_state(rng["torch"])
    if step.device.type == "cuda" and rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])
    state.shuffle.set_state(rng["shuffle"])
    state.augment.set_state(rng["augment"])
    state.epoch = last["epoch"]
    state.best_epoch = last["best"]["epoch"]
    state.best_metrics = dict(last["best"]["metrics"])
    state.best_model = {k: v.to(step.device) for k, v in best["model"].items()}
    state.history = [dict(row) for row in last["history"]]


def _write_json(path: Path, payload: Any, lines: bool = False) -> None:
    """Write atomically, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    if lines:
        text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in payload)
    else:
        text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- observability


def _log_epoch(writer: Any, row: dict[str, float], optimizer: torch.optim.Optimizer) -> None:
    epoch = int(row[M.EPOCH])
    for name, value in row.items():
        if name != M.EPOCH:
            writer.add_scalar(name, value, epoch)
    for group in optimizer.param_groups:
        writer.add_scalar(f"lr/{group['name']}", group["lr"], epoch)


def confusion_figure(matrix: torch.Tensor, labels: list[str], title: str) -> Any:
    """A row-normalised confusion matrix (true rows, predicted columns) with the raw counts."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    counts = matrix.long().tolist()
    shares = matrix.double() / matrix.sum(1, keepdim=True).clamp(min=1)
    fig = Figure(figsize=(0.5 * len(labels) + 2, 0.5 * len(labels) + 1.5))
    ax = fig.add_subplot()
    ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), title=title)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_xticklabels(labels)
    ax.set_yticklabels(labels)
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, n, ha="center", va="center", fontsize=7)
    fig.tight_layout()
    return fig


def _log_final(
    writer: Any, cfg: TrainConfig, row: dict[str, float], preds: dict[str, torch.Tensor]
) -> None:
    from torch.utils.tensorboard.summary import hparams

    epoch = int(row[M.EPOCH])
    tens = M.confusion(preds["tens"], preds["tens_true"], M.N_TENS)
    ones = M.confusion(preds["ones"], preds["ones_true"], M.N_ONES)
    tens_labels = [str(d) for d in range(10)] + ["blank"]
    writer.add_figure(
        "confusion/test_tens", confusion_figure(tens, tens_labels, "test tens"), epoch
    )
    ones_labels = [str(d) for d in range(10)]
    writer.add_figure(
        "confusion/test_ones", confusion_figure(ones, ones_labels, "test ones"), epoch
    )
    flat = {
        k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
        for k, v in to_dict(cfg).items()
    }
    # the metric names are the scalar tags already written, so no duplicate scalars are needed
    final = {k: row[k] for k in (*_test_keys(), M.BEST_VAL_ACC_NUMBER, M.BEST_EPOCH)}
    for summary in hparams(flat, final):
        writer.file_writer.add_summary(summary)


def _test_keys() -> tuple[str, ...]:
    return (M.TEST_LOSS, M.TEST_ACC_NUMBER, M.TEST_ACC_TENS, M.TEST_ACC_ONES)


# ---------------------------------------------------------------- the trial


@dataclass
class Trial:
    """What every epoch of one trial works with, from the step to its output folder."""

    cfg: TrainConfig
    step: Step
    state: RunState
    data: dict[str, SplitData]
    out_dir: Path
    writer: Any  # a SummaryWriter; tensorboard is imported only once a trial starts


def train(
    cfg: TrainConfig,
    data: dict[str, SplitData],
    out_dir: Path,
    report: Reporter | None = None,
    resume: Path | None = None,
    *,
    progress: bool | None = None,
) -> dict[str, float]:
    """Run the trial and return the test metrics of the best-val checkpoint.

    ``data`` maps train/val/test to splits already on the device ``cfg`` resolves to.
    ``resume`` is a directory with ``last.pt`` and ``best.pt`` from an earlier run of the same
    config. ``progress`` shows a tqdm bar per epoch (default: only when stderr is a terminal;
    pass False under Tune).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    check_data(cfg, data, device)
    saved = read_resume(Path(resume), cfg) if resume is not None else None
    if device.type == "cuda" and cfg.gpu_fraction > 0:
        torch.cuda.set_per_process_memory_fraction(cfg.gpu_fraction, device)
    torch.manual_seed(cfg.seed)
    module = build_model(cfg.model, cfg.pretrained)  # a WeightsError before any training
    n_params = count_params(module)
    step = make_step(cfg, module, len(data["train"].lengths), device)
    state = RunState(*make_generators(cfg.seed, device))
    if saved is not None:
        restore(step, state, *saved)
    report = report if report is not None else LocalReporter(out_dir)
    progress = sys.stderr.isatty() if progress is None else progress
    _write_json(out_dir / "config.json", to_dict(cfg))
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events a crashed attempt logged after its last checkpoint
    writer = SummaryWriter(str(out_dir), purge_step=state.epoch + 1 if saved else None)
    trial = Trial(cfg, step, state, data, out_dir, writer)
    try:
        test: dict[str, float] = {}
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            maybe_inject_fault(epoch, out_dir)
            row = train_and_validate(trial, n_params, progress)
            test = _checkpoint_and_report(trial, row, report)
        return test
    finally:
        writer.close()


def check_data(cfg: TrainConfig, data: dict[str, SplitData], device: torch.device) -> None:
    where = cfg.cache or "the given data"
    for split in M.SPLITS:
        if split not in data:
            raise UserError(f"{where}: no {split} split was loaded")
        part = data[split]
        if len(part.lengths) == 0:
            raise UserError(f"{where}: the {split} split is empty; the data needs more tracks")
        if part.tens.device.type != device.type:
            raise UserError(f"{where}: {split} split is on {part.tens.device}, the run on {device}")
        if tuple(part.size) != tuple(cfg.size):
            raise UserError(f"{where}: frames are {part.size}, the config says size {cfg.size}")


def maybe_inject_fault(epoch: int, out_dir: Path) -> None:
    """Fail once at epoch ``$JERSEY_RAY_FAIL_AT_EPOCH`` (the sweep's retry tests)."""
    target = os.environ.get(FAIL_ENV, "")
    if target and not target.isdigit():
        raise UserError(f"{FAIL_ENV} must be an epoch number, got {target!r}")
    marker = out_dir / FAULT_MARKER
    if target and int(target) == epoch and not marker.exists():
        marker.touch()
        raise RuntimeError(f"{FAIL_ENV}={target}: injected fault at the start of epoch {epoch}")


def train_and_validate(trial: Trial, n_params: int, progress: bool) -> dict[str, float]:
    """One epoch of training and validation; appends and returns the epoch's metric row."""
    cfg, step, state, data = trial.cfg, trial.step, trial.state, trial.data
    epoch = state.epoch + 1
    cuda = step.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(step.device)
    counter = M.SplitCounter(step.device)
    batches = iter_batches(
        data["train"],
        cfg.batch_size,
        sequence=step.sequence,
        shuffle=True,
        generator=state.shuffle,
        augment=cfg.augment,
        aug_generator=state.augment,
    )
    total = steps_per_epoch(len(data["train"].lengths), cfg.batch_size)
    start = time.perf_counter()
    desc = f"epoch {epoch}/{cfg.epochs}"
    n_frames = run_epoch(step, batches, counter, total=total, desc=desc, progress=progress)
    train_metrics = counter.compute("train")  # the epoch's one host sync
    if cuda:
        torch.cuda.synchronize(step.device)
    seconds = time.perf_counter() - start
    val, _ = evaluate(step, data["val"], cfg.eval_batch_size)
    state.epoch = epoch
    state.consider(epoch, val, step.module)
    row = {
        M.EPOCH: epoch,
        M.LR: step.optimizer.param_groups[0]["lr"],
        M.FRAMES_PER_S: n_frames / seconds,
        M.EPOCH_TIME_S: seconds,
        **train_metrics,
        **val,
        M.BEST_EPOCH: state.best_epoch,
        M.BEST_VAL_ACC_NUMBER: state.best_metrics[M.VAL_ACC_NUMBER],
        M.N_PARAMS: n_params,
        M.GPU_MEM_GB: torch.cuda.max_memory_allocated(step.device) / 1e9 if cuda else 0.0,
    }
    state.history.append(row)
    return row


def _checkpoint_and_report(
    trial: Trial, row: dict[str, float], report: Reporter
) -> dict[str, float]:
    """Write the epoch's checkpoint, files and events, test after the last epoch, and report."""
    cfg, state = trial.cfg, trial.state
    final = state.epoch == cfg.epochs
    # Staged outside the trial folder: on a single node Tune's driver syncs that folder while
    # the trial writes, and a staging file that vanishes mid-sync fails it with a traceback.
    ckpt = Path(tempfile.mkdtemp(prefix="jersey-ray-checkpoint-"))
    try:
        if not final or getattr(report, "keeps_final_state", False):
            # saved before the best weights are loaded for test: last.pt is the last epoch's
            torch.save(_full_state(cfg, trial.step, state), ckpt / "last.pt")
        test = final_test(trial, row) if final else {}
        torch.save(_best_state(cfg, state, test), ckpt / "best.pt")
        _write_json(trial.out_dir / "metrics.jsonl", state.history, lines=True)
        _log_epoch(trial.writer, row, trial.step.optimizer)
        trial.writer.flush()
        report(dict(row), ckpt)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    return test


def final_test(trial: Trial, row: dict[str, float]) -> dict[str, float]:
    """Evaluate the best-val weights on test once; adds test_* to ``row`` and writes test.json."""
    cfg, state = trial.cfg, trial.state
    assert state.best_model is not None
    trial.step.module.load_state_dict(state.best_model)
    test, preds = evaluate(trial.step, trial.data["test"], cfg.eval_batch_size, predictions=True)
    assert preds is not None
    row.update(test)
    _write_json(
        trial.out_dir / "test.json",
        {
            **test,
            M.BEST_EPOCH: state.best_epoch,
            **state.best_metrics,
            "model": cfg.model,
            "seed": cfg.seed,
        },
    )
    _log_final(trial.writer, cfg, row, preds)
    return test


# ---------------------------------------------------------------- command line

CACHE_ROOT = Path("results/cache")
FLAG_KEYS = {
    "model": "--model",
    "seed": "--seed",
    "epochs": "--epochs",
    "size": "--size",
    "max_frames": "--max-frames",
    "device": "--device",
    "pretrained": "--pretrained",
    "compile": "--compile",
    "cache": "--cache",
    "data_root": "--data",
}
MANIFEST_KEYS = ("size", "max_frames", "split_seed", "numbers")
"""Config keys a cache fixes: with --cache they come from its manifest (and data_root too)."""


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are JSON (``3e-4``, ``[0.9, 0.99]``) or plain strings."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set lr=3e-4")
        if key in FLAG_KEYS:
            raise UserError(f"--set {key}: use {FLAG_KEYS[key]} instead")
        if key in values:
            raise UserError(f"--set {key} given twice")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw  # a bare word: from_dict rejects it unless the field is a string
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(
        prog="python -m jersey_ray.train",
        description="Run one training trial (the report's protocol) without Ray. Writes OUT/"
        "config.json, metrics.jsonl, best.pt, last.pt, test.json and TensorBoard events.",
    )
    parser.add_argument("--model", required=True, help="model id (python -m jersey_ray.models)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        type=Path,
        metavar="ROOT",
        help=f"raw data root: builds or reuses its Parquet cache under {CACHE_ROOT}/",
    )
    source.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="an existing cache (its manifest fixes size, max_frames and split_seed)",
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default 30)")
    parser.add_argument("--seed", type=int, help="seed of init, shuffling, augmentation (42)")
    parser.add_argument("--size", type=cli.size, metavar="HxW", help="frame size (192x96)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="frames per sequence (16)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto")
    parser.add_argument("--pretrained", metavar="none|imagenet|PATH", help="default imagenet")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="run folder (default results/train/<model>/seed<seed>)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.pt"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig field, e.g. --set lr_scheme=discriminative "
        "(repeatable; JSON values)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The config the flags describe, and the keys the user set explicitly."""
    values = parse_sets(args.set)
    flags = {
        "model": args.model,
        "seed": args.seed,
        "epochs": args.epochs,
        "size": args.size,
        "max_frames": args.max_frames,
        "device": args.device,
        "pretrained": args.pretrained,
        "compile": True if args.compile else None,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    return from_dict(TrainConfig, values), set(values)


def check_out(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; pass a folder as --out")
    if resume:
        if not (out / "last.pt").is_file():
            raise UserError(f"{out}: no last.pt to resume from; drop --resume to start a run")
    elif out.exists() and any(out.iterdir()):
        raise UserError(
            f"{out} already holds a run; pass --resume to continue it, or another --out"
        )


def cache_folder(root: Path, cfg: TrainConfig) -> Path:
    """Where ``--data`` caches ``root`` (named as the sweep names it)."""
    return CACHE_ROOT / cache_name(root, cfg.size, cfg.max_frames, cfg.split_seed, cfg.numbers)


def cache_root(root: Path, cfg: TrainConfig) -> Path:
    """Build the cache of raw data ``root`` at ``cfg``'s size, frames, split and numbers (or
    reuse the one an earlier run built) in :func:`cache_folder`; returns its path."""
    from jersey_ray.cache import build_cache

    result = build_cache(
        root,
        cache_folder(root, cfg),
        size=cfg.size,
        max_frames=cfg.max_frames,
        split_seed=cfg.split_seed,
        numbers=cfg.numbers or None,
    )
    return Path(result.path)


def prepare_cache(
    args: argparse.Namespace, cfg: TrainConfig, explicit: set[str]
) -> tuple[TrainConfig, Path]:
    """Build or reuse the cache (--data) or verify the given one (--cache)."""
    from jersey_ray.cache import verify_cache

    if args.data is not None:
        cache = cache_root(args.data, cfg)
        fixed = {"data_root": str(args.data), "cache": str(cache)}
        return from_dict(TrainConfig, {**to_dict(cfg), **fixed}), cache
    manifest = verify_cache(args.cache)
    fixed = {k: manifest[k] for k in ("size", "max_frames", "split_seed")}
    fixed.update(numbers=manifest["numbers"] or [], data_root=manifest["root"])
    cached = from_dict(TrainConfig, {**to_dict(cfg), **fixed, "cache": str(args.cache)})
    clash = sorted(
        k for k in explicit & set(MANIFEST_KEYS) if getattr(cfg, k) != getattr(cached, k)
    )
    if clash:
        built = ", ".join(f"{k}={getattr(cached, k)}" for k in clash)
        raise UserError(
            f"{args.cache}: the cache was built with {built}; "
            "drop those options or build another cache with --data"
        )
    return cached, Path(args.cache)


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        cfg, explicit = config_from_args(args)
        build_model(cfg.model, cfg.pretrained)  # bad ids or missing weights fail before data
        out = args.out or Path("results/train") / cfg.model / f"seed{cfg.seed}"
        check_out(out, args.resume)
        cfg, cache = prepare_cache(args, cfg, explicit)
        device = resolve_device(cfg.device)
        data = {split: load_split(cache, split, device) for split in M.SPLITS}
        resume = out if args.resume else None
        test = train(cfg, data, out, LocalReporter(out, echo=True), resume=resume)
        print(
            f"test (best val epoch): acc_number {test[M.TEST_ACC_NUMBER]:.4f}, "
            f"tens {test[M.TEST_ACC_TENS]:.4f}, ones {test[M.TEST_ACC_ONES]:.4f}, "
            f"loss {test[M.TEST_LOSS]:.4f}; files in {out}"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
