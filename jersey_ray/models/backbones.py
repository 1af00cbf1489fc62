"""CNN backbones that map images [N,3,H,W] to pooled features [N,F], and their pretrained weights.

The torchvision backbones are built with ``get_model(name, weights=None)`` and lose exactly the
layers the reference dropped (report-spec 2.2): the final classifier Linear and its Dropout.
MobileNetV3 keeps its ImageNet Linear + Hardswish as part of the feature extractor, which the
report's parameter counts require. EfficientNet-Lite0 comes from timm (torchvision has none).

``"imagenet"`` weights live where torchvision and timm put them: torchvision's in the torch hub
cache (``$TORCH_HOME/hub/checkpoints``), timm's in the Hugging Face cache (or the torch hub cache).
Only code inside :func:`downloading` fetches a missing file, through torchvision's and timm's own
download functions: the sweep's preflight on the driver and ``python -m jersey_ray.models
fetch-weights``. Everywhere else (trials) a missing file is a one-line :class:`WeightsError`
raised while the model is built, so a trial fails before it trains.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator
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
    model.classifier = nn.Sequential(
        model.get_submodule("classifier.0"), model.get_submodule("classifier.1")
    )
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


@dataclass(frozen=True)
class _Source:
    """Where one backbone's ImageNet weights come from and where the ecosystem caches them."""

    name: str
    url: str
    path: Path  # the torch hub cache file for ``url``
    hf_repo: str | None  # timm's Hugging Face repo, searched first
    fetch: Callable[[], object]  # torchvision's or timm's own download into its cache


_DOWNLOADS: contextvars.ContextVar[dict[str, Path] | None] = contextvars.ContextVar(
    "jersey_ray_weight_downloads", default=None
)


@contextlib.contextmanager
def downloading() -> Iterator[dict[str, Path]]:
    """Inside this block a missing ``"imagenet"`` file is downloaded (with a progress bar) into
    its standard cache, unless ``HF_HUB_OFFLINE`` is set. Yields backbone name -> weights file
    for every backbone resolved in the block.

    Only the driver's preflight and ``fetch-weights`` open it: N trials downloading the same
    file at once would waste their GPU time, and an offline worker would fail late."""
    fetched: dict[str, Path] = {}
    token = _DOWNLOADS.set(fetched)
    try:
        yield fetched
    finally:
        _DOWNLOADS.reset(token)


def imagenet_weights_path(name: str) -> Path:
    """The cached ImageNet weights file for ``name`` (downloaded first inside
    :func:`downloading`); if it cannot be had, a one-line WeightsError saying where to put it."""
    source = _source(name)
    fetched = _DOWNLOADS.get()
    path = _cached(source)
    if path is None:
        if fetched is None:
            raise WeightsError(
                f"ImageNet weights for {name} not found at {source.path}: run `python -m "
                f"jersey_ray.models fetch-weights` on this machine, or download {source.url} "
                "to that path (or set TORCH_HOME to where it is), or pass --pretrained none"
            )
        path = _download(source)
    if fetched is not None:
        fetched[name] = path
    return path


def _source(name: str) -> _Source:
    if name == "efficientnet_lite0":
        import timm

        cfg = timm.models.get_pretrained_cfg("efficientnet_lite0")
        assert cfg is not None and isinstance(cfg.url, str)  # timm's registry entry
        # timm's own loader: the HF hub when huggingface_hub is there, else the URL
        fetch = functools.partial(timm.create_model, "efficientnet_lite0", pretrained=True)
        return _Source(name, cfg.url, _hub_path(cfg.url), cfg.hf_hub_id, fetch)
    from torchvision.models import get_model_weights

    weights = get_model_weights(name)["IMAGENET1K_V1"]
    fetch = functools.partial(weights.get_state_dict, progress=True, check_hash=True)
    return _Source(name, weights.url, _hub_path(weights.url), None, fetch)


def _hub_path(url: str) -> Path:
    # torch.hub.load_state_dict_from_url's cache file; get_dir() reads TORCH_HOME on each call
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _cached(source: _Source) -> Path | None:
    """The cached file, never the network: the HF cache (timm's first choice), the torch hub."""
    if source.hf_repo is not None:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(source.hf_repo, filename)
            if isinstance(cached, str):  # else None or the "known missing" sentinel
                return Path(cached)
    return source.path if source.path.is_file() else None


def _origin(source: _Source) -> str:
    """Where the download went: timm tries the Hugging Face hub first when it is installed."""
    if source.hf_repo is None:
        return source.url
    from huggingface_hub.constants import ENDPOINT

    return f"{ENDPOINT}/{source.hf_repo}"


def _download(source: _Source) -> Path:
    from huggingface_hub.constants import is_offline_mode

    where = f"put that file at {source.path} (or set TORCH_HOME to where it is)"
    if source.hf_repo is not None:
        where += f", or the Hugging Face repo {source.hf_repo} in the HF cache"
    if is_offline_mode():  # the ecosystem's offline switch, honoured for torchvision too
        raise WeightsError(
            f"ImageNet weights for {source.name} not in the cache and HF_HUB_OFFLINE is set: "
            f"download {source.url} elsewhere and {where}, or pass --pretrained none"
        )
    try:
        source.fetch()
    except Exception as err:  # urllib, httpx, HF hub and hash errors: one problem to the user
        lines = str(err).strip().splitlines() or [""]
        raise WeightsError(
            f"cannot download ImageNet weights for {source.name} from {_origin(source)} "
            f"({err.__class__.__name__}: {lines[0]}): {where}, or pass --pretrained none"
        ) from err
    path = _cached(source)
    if path is None:  # e.g. a custom HF cache_dir: nothing this module can find again
        raise WeightsError(f"downloaded {source.url} but found no file at {source.path}")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A tensor state dict from a .pth/.pt (weights_only) or .safetensors file."""
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found (pretrained: imagenet, none, a state dict file, "
            "or a run folder, trial folder or checkpoint of this project)"
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
