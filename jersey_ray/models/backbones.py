"""CNN backbones that map images [N,3,H,W] to pooled features [N,F], and their pretrained weights.

The torchvision backbones are built with ``get_model(name, weights=None)`` and lose exactly the
layers the reference dropped (report-spec 2.2): the final classifier Linear and its Dropout.
MobileNetV3 keeps its ImageNet Linear + Hardswish as part of the feature extractor, which the
report's parameter counts require. EfficientNet-Lite0 comes from timm (torchvision has none).

Weights never come from the network: ``"imagenet"`` reads the file the torchvision/timm download
would have cached, and a missing file is a :class:`WeightsError` raised while the model is built,
so a trial fails before it trains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from jersey_ray.errors import UserError


class WeightsError(UserError):
    """Pretrained weights are missing or do not fit the backbone."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    features: int
    make: Callable[[], nn.Module]
    dropped: tuple[str, ...]
    """State-dict key prefixes of the original classifier layers the backbone no longer has."""


def _torchvision(name: str) -> nn.Module:
    from torchvision.models import get_model

    return get_model(name, weights=None)


def _resnet18() -> nn.Module:
    model = _torchvision("resnet18")
    model.fc = nn.Identity()
    return model


def _efficientnet_b0() -> nn.Module:
    model = _torchvision("efficientnet_b0")
    model.classifier = nn.Identity()  # Dropout + Linear(1280->1000); avgpool + flatten stay
    return model


def _mobilenet_v3(name: str) -> nn.Module:
    model = _torchvision(name)
    # classifier = Linear(C->hidden), Hardswish, Dropout, Linear(hidden->1000): keep the first two
    # (same indices, so torchvision's state dict keys still fit).
    model.classifier = nn.Sequential(model.classifier[0], model.classifier[1])
    return model


def _shufflenet_v2() -> nn.Module:
    model = _torchvision("shufflenet_v2_x1_0")
    model.fc = nn.Identity()
    return model


def _efficientnet_lite0() -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet18", 512, _resnet18, ("fc.",)),
        BackboneSpec("efficientnet_b0", 1280, _efficientnet_b0, ("classifier.",)),
        BackboneSpec("efficientnet_lite0", 1280, _efficientnet_lite0, ("classifier.",)),
        BackboneSpec(
            "mobilenet_v3_large",
            1280,
            lambda: _mobilenet_v3("mobilenet_v3_large"),
            ("classifier.3.",),
        ),
        BackboneSpec(
            "mobilenet_v3_small",
            1024,
            lambda: _mobilenet_v3("mobilenet_v3_small"),
            ("classifier.3.",),
        ),
        BackboneSpec("shufflenet_v2_x1_0", 1024, _shufflenet_v2, ("fc.",)),
    )
}


def build_backbone(name: str, pretrained: str = "none") -> tuple[nn.Module, int]:
    """The backbone ``name`` with weights from ``pretrained`` ("imagenet" | "none" | PATH)."""
    spec = BACKBONES[name]
    if pretrained == "none":
        return spec.make(), spec.features
    # find the file before building, so a missing one fails fast
    path = imagenet_weights_path(name) if pretrained == "imagenet" else Path(pretrained)
    model = spec.make()
    load_backbone_weights(model, spec, path)
    return model, spec.features


def imagenet_weights_path(name: str) -> Path:
    """The cached ImageNet weights file for ``name``; if absent, WeightsError saying where."""
    if name == "efficientnet_lite0":
        return _timm_weights_path()
    from torchvision.models import get_model_weights

    url = get_model_weights(name)["IMAGENET1K_V1"].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise WeightsError(
            f"ImageNet weights for {name} not found at {path}: download {url} to that path "
            "(or set TORCH_HOME to where it is), or pass --pretrained none"
        )
    return path


def _timm_weights_path() -> Path:
    """timm's Lite0 weights from the Hugging Face or torch hub cache, never the network."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg("efficientnet_lite0")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(cached, str):  # else None or the "known missing" sentinel
            return Path(cached)
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
    if not path.is_file():
        raise WeightsError(
            f"ImageNet weights for efficientnet_lite0 not found: download {cfg.url} to {path}, "
            f"or put the Hugging Face repo {cfg.hf_hub_id} in the HF cache, "
            "or pass --pretrained none"
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A tensor state dict from a .pth/.pt (weights_only) or .safetensors file."""
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found (pretrained: imagenet, none or a state dict file)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the same user-facing problem
        raise WeightsError(
            f"{path}: cannot read weights ({err.__class__.__name__}: {err})"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors (save model.state_dict())")
    return state


def load_backbone_weights(model: nn.Module, spec: BackboneSpec, path: Path) -> None:
    """Load a bare backbone state dict, or the full classifier one minus the dropped layers."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(spec.dropped)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        first = str(err).strip().splitlines()[-1].strip()
        raise WeightsError(f"{path}: weights do not fit {spec.name}: {first}") from err
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: not {spec.name} weights: missing keys {_few(result.missing_keys)}, "
            f"unexpected keys {_few(result.unexpected_keys)}"
        )


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)})"
