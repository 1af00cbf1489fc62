"""The model zoo: the reference study's 18 models by id, built exactly, with the bugs fixed.

``build_model(model_id, pretrained)`` returns an ``nn.Module`` with ``param_groups()``
("backbone" / "temporal" / "heads", together every trainable parameter once). Every model takes
``(frames, mask)`` and returns a :class:`~jersey_ray.models.heads.ModelOutput` (the contract is
in :mod:`jersey_ray.models.heads`). Architectures are pinned by the report's parameter counts
(``report_params``). :func:`protocol` is the training protocol of a model's phase.

After the report's 18, the ``comp_`` family (phase ``comp``; not in the report): compositional
two-digit readers on a small CNN that keeps the width axis (:mod:`jersey_ray.models.
compositional`); their ``report_params`` is their own count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from jersey_ray.errors import UserError
from jersey_ray.models.attention import (
    AdditivePool,
    AttentionModel,
    DotProductPool,
    GatePool,
    TopKPool,
)
from jersey_ray.models.backbones import WeightsError, build_backbone
from jersey_ray.models.compositional import CompositionalModel
from jersey_ray.models.heads import ModelOutput
from jersey_ray.models.recurrent import LengthAwareRNN
from jersey_ray.models.sequence import SequenceModel
from jersey_ray.models.single import SingleFrameModel
from jersey_ray.models.small_backbone import load_weights

__all__ = [
    "REGISTRY",
    "ModelOutput",
    "ModelSpec",
    "UnknownModelError",
    "WeightsError",
    "build_model",
    "count_params",
    "get_spec",
    "protocol",
]

HIDDEN = 128  # report-spec 2.4: hidden size 128, one layer
SEQUENCE_BACKBONE = "resnet18"  # every reported sequence model uses ResNet-18


class UnknownModelError(UserError):
    """A model id that is not in the registry."""


@dataclass(frozen=True)
class ModelSpec:
    id: str
    phase: str  # "phase0" | "phaseA" | "phaseB"
    display: str
    description: str  # one line: the formulation the code actually computes
    build: Callable[[str], nn.Module]  # pretrained ("imagenet" | "none" | PATH) -> model
    report_params: int  # trainable parameters in the report's tables
    note: str = ""  # why our count differs from the report's, where it does
    imagenet: bool = True  # has ImageNet weights (what fetch-weights fetches by default)


def _single(backbone: str) -> Callable[[str], nn.Module]:
    return lambda pretrained: SingleFrameModel(*build_backbone(backbone, pretrained))


def _recurrent(kind: str, bidirectional: bool, features: int) -> LengthAwareRNN:
    return LengthAwareRNN(kind, features, HIDDEN, bidirectional)


def _sequence(kind: str, bidirectional: bool, pooling: str) -> Callable[[str], nn.Module]:
    def build(pretrained: str) -> nn.Module:
        backbone, features = build_backbone(SEQUENCE_BACKBONE, pretrained)
        return SequenceModel(backbone, _recurrent(kind, bidirectional, features), pooling)

    return build


def _attention(bidirectional: bool, pool: type[nn.Module]) -> Callable[[str], nn.Module]:
    def build(pretrained: str) -> nn.Module:
        backbone, features = build_backbone(SEQUENCE_BACKBONE, pretrained)
        rnn = _recurrent("gru", bidirectional, features)
        return AttentionModel(backbone, rnn, pool(rnn.out_features))

    return build


_ANCHOR = "on the anchor frame -> Linear heads (11 tens incl. blank, 10 ones)"
_LITE0_NOTE = (
    "a real EfficientNet-Lite0 (timm efficientnet_lite0); the report's 4,034,449 is "
    "EfficientNet-B0, which the original built under this id (report-spec 8.1)"
)
_RNN_NAMES = {"rnn": "tanh RNN", "gru": "GRU", "lstm": "LSTM"}
_QUERY = "query q = final states [fwd at length-1; bwd at 0]"
_SCORE = "per-frame MLP score (D->64->1, ReLU)"
_TOPK = (
    f"{_SCORE} / learnable temperature (init 0.1, clamped to [1e-3, 10]), softmax over each "
    "sample's top-k valid frames (k = min(3, length)), zero elsewhere; deterministic"
)


def _phase0(mid: str, display: str, backbone: str, params: int, what: str) -> ModelSpec:
    note = _LITE0_NOTE if mid == "basic_effl0" else ""
    description = f"{what} {_ANCHOR}"
    return ModelSpec(mid, "phase0", display, description, _single(backbone), params, note)


def _phase_a(mid: str, display: str, kind: str, bidirectional: bool, params: int) -> ModelSpec:
    if bidirectional:
        how = "bidirectional {} (H=128) -> masked mean of the outputs over valid steps"
    else:
        how = "unidirectional {} (H=128) -> output at the last valid step (h_n)"
    description = f"ResNet-18 on the real frames -> {how.format(_RNN_NAMES[kind])} -> heads"
    pooling = "mean" if bidirectional else "final"
    build = _sequence(kind, bidirectional, pooling)
    return ModelSpec(mid, "phaseA", display, description, build, params)


def _phase_b(mid: str, display: str, pool: type[nn.Module], params: int, how: str) -> ModelSpec:
    bidirectional = mid.startswith("attn_bgru")
    gru = "BiGRU" if bidirectional else "UniGRU"
    description = f"ResNet-18 on the real frames -> {gru} (H=128) -> {how} -> weighted sum -> heads"
    build = _attention(bidirectional, pool)
    return ModelSpec(mid, "phaseB", display, description, build, params)


_SPECS = [
    _phase0("basic_r18", "ResNet-18", "resnet18", 11_187_285, "ResNet-18 (fc removed, 512-d)"),
    _phase0("basic_effb0", "EfficientNet-B0", "efficientnet_b0", 4_034_449, "EfficientNet-B0"),
    _phase0(
        "basic_effl0",
        "EfficientNet-Lite0",
        "efficientnet_lite0",
        4_034_449,
        "EfficientNet-Lite0 (timm; no squeeze-excite, ReLU6)",
    ),
    _phase0(
        "basic_mv3l",
        "MobileNetV3-Large",
        "mobilenet_v3_large",
        4_228_933,
        "MobileNetV3-Large (keeps Linear 960->1280 + Hardswish)",
    ),
    _phase0(
        "basic_mv3s",
        "MobileNetV3-Small",
        "mobilenet_v3_small",
        1_539_381,
        "MobileNetV3-Small (keeps Linear 576->1024 + Hardswish)",
    ),
    _phase0("basic_sv2", "ShuffleNetV2", "shufflenet_v2_x1_0", 1_275_129, "ShuffleNetV2 x1.0"),
    _phase_a("seq_brnn_mp", "BiRNN (mean pool)", "rnn", True, 11_346_261),
    _phase_a("seq_urnn_fs", "UniRNN (final state)", "rnn", False, 11_261_397),
    _phase_a("seq_bgru_mp", "BiGRU (mean pool)", "gru", True, 11_674_965),
    _phase_a("seq_ugru_fs", "UniGRU (final state)", "gru", False, 11_425_749),
    _phase_a("seq_blstm_mp", "BiLSTM (mean pool)", "lstm", True, 11_839_317),
    _phase_a("seq_ulstm_fs", "UniLSTM (final state)", "lstm", False, 11_507_925),
    _phase_b(
        "attn_bgru_bahdanau",
        "BiGRU + additive",
        AdditivePool,
        11_740_885,
        f"additive attention, {_QUERY}: e_t = v.tanh(W_q q + W_k o_t), masked softmax",
    ),
    _phase_b(
        "attn_bgru_luong",
        "BiGRU + dot-product",
        DotProductPool,
        11_740_757,
        f"scaled dot-product attention, {_QUERY}: e_t = (W_q q).(W_k o_t)/sqrt(128), masked "
        "softmax (not Luong's decoder-state attention)",
    ),
    _phase_b(
        "attn_bgru_gate",
        "BiGRU + gate (softmax)",
        GatePool,
        11_691_478,
        f"{_SCORE}, masked softmax (softmax attention, not a sigmoid gate)",
    ),
    _phase_b("attn_bgru_hc", "BiGRU + top-k (HC)", TopKPool, 11_691_479, _TOPK),
    _phase_b(
        "attn_ugru_gate",
        "UniGRU + gate (softmax)",
        GatePool,
        11_434_070,
        f"{_SCORE}, masked softmax (softmax attention, not a sigmoid gate)",
    ),
    _phase_b("attn_ugru_hc", "UniGRU + top-k (HC)", TopKPool, 11_434_071, _TOPK),
]


def _comp(mid: str, display: str, reader: str, sequence: bool, params: int, how: str) -> ModelSpec:
    def build(pretrained: str) -> nn.Module:
        return load_weights(CompositionalModel(reader, sequence), pretrained, mid)

    what = "every real frame" if sequence else "the anchor frame"
    description = f"6-conv CNN keeping the width axis (32x32 -> 128x4x8) on {what} -> {how}"
    return ModelSpec(mid, "comp", display, description, build, params, imagenet=False)


_TIED = (
    "2 learned spatial queries (tens, ones) pool the map + position embedding -> one shared "
    "11-way digit classifier (ones drops its blank logit)"
)
_CTC = (
    "columns (height mean) -> BiGRU (H=64) -> per-column 10 digits + CTC blank, CTC loss, "
    "greedy decode -> tens/ones scores of the decoded columns"
)
_COMP_SPECS = [
    _comp(
        "comp_pooled",
        "Small CNN + pooled heads",
        "pooled",
        False,
        290_165,
        "global average pool -> Linear heads (11 tens incl. blank, 10 ones)",
    ),
    _comp("comp_tied", "Small CNN + tied reader", "tied", False, 297_643, _TIED),
    _comp("comp_ctc", "Small CNN + CTC reader", "ctc", False, 363_371, _CTC),
    _comp(
        "comp_seq_tied",
        "Small CNN + tied reader (seq)",
        "tied",
        True,
        297_643,
        f"{_TIED}; per-frame log-softmax averaged over the valid frames",
    ),
]

REGISTRY: dict[str, ModelSpec] = {spec.id: spec for spec in [*_SPECS, *_COMP_SPECS]}


def get_spec(model_id: str) -> ModelSpec:
    """The registry entry for ``model_id``; UnknownModelError (a UserError) lists the valid ids."""
    try:
        return REGISTRY[model_id]
    except KeyError:
        valid = ", ".join(REGISTRY)
        raise UnknownModelError(f"unknown model id {model_id!r}; valid ids: {valid}") from None


PROTOCOLS: dict[str, dict[str, Any]] = {
    "phase0": {"lr_scheme": "uniform"},
    "phaseA": {"lr_scheme": "discriminative"},
    "phaseB": {"lr_scheme": "discriminative"},
    "comp": {"lr_scheme": "uniform", "lr": 3e-3, "pretrained": "none"},
}
"""The report's protocol per phase (decisions.md): Phase 0 trains with one LR (1e-3); Phases A
and B with discriminative LRs (backbone 1e-4, the rest 3e-4; report-spec 8.7). The rates
themselves are TrainConfig's defaults. The ``comp_`` family (not in the report) trains from
scratch (its small CNN has no ImageNet weights) with one LR, 3e-3: the quick preset's rate for
models trained from scratch."""


def protocol(model_id: str) -> dict[str, Any]:
    """TrainConfig overrides of ``model_id``'s phase: the layer right above the defaults."""
    return dict(PROTOCOLS[get_spec(model_id).phase])


def build_model(model_id: str, pretrained: str = "none") -> nn.Module:
    """Build ``model_id`` with backbone weights from ``"imagenet"`` (local cache), ``"none"`` or a
    state dict file, or with the matching weights of a run, trial or checkpoint of this project
    (:mod:`jersey_ray.models.warmstart`); a WeightsError (UserError) if the weights are missing
    or do not fit."""
    from jersey_ray.models import warmstart

    if warmstart.is_project_source(pretrained):
        return warmstart.warm_start(get_spec(model_id).build("none"), model_id, pretrained)
    return get_spec(model_id).build(pretrained)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, as the report counts them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
