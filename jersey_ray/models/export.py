"""ONNX export of a model: the one exporter of the product (``predict --export`` and the ONNX
Runtime variants of ``bench infer``).

The graph takes the loader's batch and returns the two heads' logits:

* ``frames`` float32 [N,3,H,W]: the batch's real frames packed sequence-major (sequence 0's
  frames, then sequence 1's, ...), each letterboxed to the model's size, RGB scaled to [0,1]
  and ImageNet-normalized; a sequence's first frame is its anchor;
* ``mask`` bool [B,T]: True for t < the sequence's length (N == mask.sum());
* ``tens`` [B,11] (index 10 = no tens digit) and ``ones`` [B,10] logits.

N, B and T are dynamic; H and W are the model's. Single-frame models read each sequence's
anchor, so one frame per sequence (T = 1) is all they need.

Exporter: TorchScript-based (``dynamo=False``, opset 17), deprecated since torch 2.9 but the
only one that keeps T dynamic reliably. Measured in torch 2.14.1 (CPU): the torch.export-based
exporter kept T dynamic for the first nn.GRU model exported in a process but silently fixed T
to the example's length in the next one (seq_bgru_mp after seq_ugru_fs: ONNX Runtime then
rejects any other T), and took 46-63 s per registry model against about 5 s. The TorchScript
exporter keeps every registry model's RNN/GRU/LSTM as one ONNX recurrent op over a dynamic T
(max |Δlogit| < 1e-6 for all 18 models at T = 1..16). Two things it does not trace as torch
runs them are handled here: a cumulative sum of a bool mask (ONNX CumSum has no bool kernel;
torch counts in int64, so does the graph) and the top-k pooling's k = min(3, T), which it
records as a constant: the exported wrapper appends top_k - 1 padding steps to the mask, so T
is at least k, which changes nothing a length-aware model computes.

Every export is checked before it is written (:func:`check_onnx`): ONNX Runtime and PyTorch
run the same batches (several batch sizes and T, lengths that vary within a batch) and must
agree within :data:`ATOL` on every logit with the same predicted digits. The file is written
under a temporary name and renamed only when the check passes.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from jersey_ray.cache.augment import IMAGENET_MEAN, IMAGENET_STD
from jersey_ray.errors import UserError
from jersey_ray.models.attention import TopKPool

ONNX_INPUTS = ("frames", "mask")
ONNX_OUTPUTS = ("tens", "ones")
OPSET = 17
ATOL = 1e-3
"""Largest |ONNX Runtime - PyTorch| on any logit the check accepts (fp32 both sides: the
registry models differ by < 1e-6)."""
EXPORTER = "torch.onnx.export, TorchScript-based (dynamo=False), opset 17"
INPUT_TEXT = (
    "frames float32 [N,3,H,W]: the real frames of the batch packed sequence-major (anchor "
    "first), letterboxed, RGB/255, ImageNet-normalized; mask bool [B,T]: True for t < length"
)
OUTPUT_TEXT = "tens [B,11] logits (index 10 = no tens digit), ones [B,10] logits"


class ExportError(UserError):
    """The model could not be exported, or the exported graph disagrees with PyTorch."""


class TwoHeads(nn.Module):
    """The model's (tens, ones): what a trace or an ONNX graph returns (attention weights are
    not a deployment output). ``pad_steps`` False columns are appended to the mask first."""

    def __init__(self, model: nn.Module, pad_steps: int = 0) -> None:
        super().__init__()
        self.model = model
        self.pad_steps = pad_steps

    def forward(
        self, frames: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pad_steps:
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], self.pad_steps)], dim=1)
        out = self.model(frames, mask)
        return out[0], out[1]


@dataclass
class Export:
    """A written, checked ONNX file."""

    path: Path
    max_abs_diff: float
    """Largest |ONNX Runtime - PyTorch| logit over the check batches."""
    checked: list[tuple[int, int]]
    """(B, T) of each check batch."""
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        shapes = ", ".join(f"B={b} T={t}" for b, t in self.checked)
        return (
            f"checked against PyTorch on batches {shapes} with varied lengths: max "
            f"|Δlogit| {self.max_abs_diff:.1e}, same predictions"
        )


def random_batch(
    lengths: list[int], size: tuple[int, int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded normal frames packed [N,3,H,W] and the prefix mask of ``lengths``."""
    gen = torch.Generator().manual_seed(seed)
    n = torch.tensor(lengths)
    mask = torch.arange(int(n.max()))[None, :] < n[:, None]
    return torch.randn(int(n.sum()), 3, *size, generator=gen), mask


def check_lengths(steps: int) -> list[list[int]]:
    """Lengths of the check batches: B = 3 at T = steps (full, 1, half), B = 2 at T = steps + 2
    (longer than training) and B = 1 at T = 1 (a single-frame batch)."""
    return [[steps, 1, math.ceil(steps / 2)], [steps + 2, 2], [1]]


def onnx_example(size: tuple[int, int], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The trace's input: lengths (T, 1) with T >= 2, so no branch on a one-step mask (the
    single-frame models' shortcut) is recorded as the graph's only path."""
    return random_batch([max(steps, 2), 1], size)


def pad_steps(model: nn.Module) -> int:
    """Mask columns the wrapper appends: top_k - 1 for top-k pooling (its k is traced as a
    constant and must never exceed T), else 0."""
    return max((m.top_k - 1 for m in model.modules() if isinstance(m, TopKPool)), default=0)


def _write_graph(model: nn.Module, path: Path, size: tuple[int, int], steps: int) -> None:
    wrapper = TwoHeads(model, pad_steps(model)).eval()
    axes = {"frames": {0: "frames"}, "mask": {0: "batch", 1: "steps"}}
    axes.update({name: {0: "batch"} for name in ONNX_OUTPUTS})
    # the exporter's deprecation and tracer warnings (a Python bool inside nn.GRU's input
    # checks) are nothing a user can act on; the check below is what proves the graph
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            onnx_example(size, steps),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(ONNX_INPUTS),
            output_names=list(ONNX_OUTPUTS),
            dynamic_axes=axes,
        )


def _add_metadata(path: Path, size: tuple[int, int], metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    props = {
        "jersey_ray.inputs": INPUT_TEXT,
        "jersey_ray.outputs": OUTPUT_TEXT,
        "jersey_ray.size": f"{size[0]}x{size[1]}",
        "jersey_ray.normalize": f"mean {list(IMAGENET_MEAN)} std {list(IMAGENET_STD)}",
        **metadata,
    }
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


def _same_choice(ref: torch.Tensor, got: torch.Tensor, atol: float) -> bool:
    """ONNX Runtime picks PyTorch's digit, or one PyTorch scores within 2 * atol of its best
    (a tie that rounding may break either way)."""
    picked = ref.gather(1, got.argmax(1, keepdim=True)).squeeze(1)
    return bool((picked >= ref.max(1).values - 2 * atol).all())


def check_onnx(
    model: nn.Module, path: Path, size: tuple[int, int], steps: int, atol: float = ATOL
) -> tuple[float, list[tuple[int, int]]]:
    """Run the ONNX file and ``model`` (CPU, fp32, eval) on :func:`check_lengths` batches;
    (max |Δlogit|, [(B, T)]) or an ExportError saying where they disagree."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst, shapes = 0.0, list[tuple[int, int]]()
    for seed, lengths in enumerate(check_lengths(steps)):
        frames, mask = random_batch(lengths, size, seed)
        shapes.append((mask.shape[0], mask.shape[1]))
        with torch.no_grad():
            out = model(frames, mask)
        at = f"B={mask.shape[0]} T={mask.shape[1]} lengths {lengths}"
        try:
            got = session.run(list(ONNX_OUTPUTS), {"frames": frames.numpy(), "mask": mask.numpy()})
        except Exception as err:  # onnxruntime's errors have no common public type
            text = " ".join(str(err).split())[:200]
            raise ExportError(f"ONNX Runtime cannot run it at {at} ({text})") from err
        for name, ref, new in zip(ONNX_OUTPUTS, out[:2], got, strict=True):
            new = torch.from_numpy(new)
            where = f"{name} at {at}"
            if new.shape != ref.shape:
                raise ExportError(
                    f"shape {list(new.shape)} != PyTorch's {list(ref.shape)}: {where}"
                )
            diff = float((new - ref).abs().max())
            worst = max(worst, diff)
            if diff > atol or not _same_choice(ref, new, atol):
                raise ExportError(
                    f"ONNX Runtime differs from PyTorch by {diff:.2e} (limit {atol:g}) or in "
                    f"the predicted digit: {where}"
                )
    return worst, shapes


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int],
    *,
    steps: int,
    metadata: dict[str, str] | None = None,
    atol: float = ATOL,
) -> Export:
    """Export ``model`` (any device, left untouched) to ``path``, checked first (module
    docstring). ``steps``: the longest sequence the model was trained on (the example's and
    the check's T; the graph takes any T). An ExportError names the file and the cause; a file
    that fails the check is never written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    cpu = copy.deepcopy(model).float().cpu().eval()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_graph(cpu, tmp, size, steps)
        _add_metadata(tmp, size, metadata or {})
        worst, shapes = check_onnx(cpu, tmp, size, steps, atol)
        tmp.replace(path)
    except ExportError as err:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"{path}: not written, the exported graph fails its check: {err}"
        ) from None
    except Exception as err:  # exporter and runtime errors have no common type
        tmp.unlink(missing_ok=True)
        text = " ".join(str(err).split())[:240]
        raise ExportError(f"{path}: ONNX export failed ({type(err).__name__}: {text})") from err
    notes = [f"{EXPORTER}; N, B and T dynamic"]
    if pad_steps(cpu):
        notes.append(f"{pad_steps(cpu)} padding steps appended inside the graph (top-k pooling)")
    return Export(path, worst, shapes, notes)
