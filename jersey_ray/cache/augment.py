"""The reference's train-time frame augmentations (report-spec 1.7), on the device, vectorised.

Every frame draws its own parameters from a seeded :class:`torch.Generator` that lives on the
frames' device, and every op runs on the whole batch at once (no Python loop over frames):

1. brightness, contrast, saturation factors ~ U(0.8, 1.2), torchvision semantics (contrast
   blends with the frame's mean grayscale value, saturation with the grayscale frame; clamp to
   [0, 1] after each);
2. rotation ~ U(-5, +5) degrees (positive = counter-clockwise) about the centre, bilinear, black
   fill (``affine_grid`` + ``grid_sample``);
3. with p = 0.3 a Gaussian blur whose sigma is the PIL radius, drawn from {1, 1.5, 2} pixels
   of the reference's 192-pixel-high frames and scaled with the frame height (separable
   per-frame kernels through one grouped convolution);
4. with p = 0.2 additive Gaussian noise, sigma ~ U(0.01, 0.03), clamped to [0, 1];

then ImageNet normalization. Eval frames get the normalization only.

The blur is the one augmentation measured in pixels, so it scales with the frame: a 2-pixel
radius on a 32-pixel-high number crop would be a 12-pixel blur at the reference's size, which
smears the digits away (measured: from scratch on 32x32 synthetic number crops, a Phase B
model reached 0.27 test acc_number in 4 epochs with the unscaled blur, 0.72 without any
augmentation). At the reference's size nothing changes.

Deliberate differences from the reference, which augments the resized image *before* pasting it
into the black letterbox canvas: here the ops run on the letterboxed canvas (the cache stores
canvases, not content boxes). So contrast's mean includes the black padding (a frame with
padding gets a slightly darker blend target), rotation keeps corners that the reference would
have cut off at the content box edge, and blur mixes a few black padding pixels into the content
edge. The reference also rounds to uint8 after every PIL op; this runs in float32 throughout.

On a CUDA device the random blur and noise choices are applied as identity kernels / zero noise
to the frames that did not draw them, so the shapes never depend on the draw and nothing waits
for the host. On the CPU, where there is no such wait, only the chosen frames are processed
(same results, about 3x less work for these two ops).

Small constant tensors (the blur radii, the grayscale weights, the normalization's per-channel
scale and bias) are made once per device and dtype and kept (:func:`constant`): on CUDA a
``torch.tensor(values, device=...)`` is a blocking host-to-device copy, which made every
training step wait for the GPU about four times and every eval batch twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from jersey_ray.config import DEFAULT_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLOR_RANGE = (0.8, 1.2)
MAX_ANGLE_DEG = 5.0
BLUR_P = 0.3
BLUR_RADII = (1.0, 1.5, 2.0)
NOISE_P = 0.2
NOISE_SIGMA = (0.01, 0.03)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
_CPU_CHUNK = 32  # frames: ~7 MB of float32 at the report's size, cache-sized
REFERENCE_HEIGHT = DEFAULT_SIZE[0]
"""The frame height the blur radii are given for (the reference's frames)."""
_BLUR_HALF = math.ceil(3 * max(BLUR_RADII))  # taps beyond 3 sigma of the widest kernel are ~0
_CONSTANTS: dict[tuple, torch.Tensor] = {}


def constant(
    values: tuple[float, ...], device: torch.device | str, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``values`` as a 1-D tensor on ``device``, made on first use and reused after that.

    Callers must not modify it in place. One per (values, device, dtype): a handful in all.
    """
    key = (values, torch.device(device), dtype)
    tensor = _CONSTANTS.get(key)
    if tensor is None:
        tensor = _CONSTANTS[key] = torch.tensor(values, device=device, dtype=dtype)
    return tensor


@dataclass(frozen=True)
class AugParams:
    """Per-frame parameters, each a [N] float32 tensor on the frames' device."""

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    angle: torch.Tensor  # degrees, counter-clockwise
    blur: torch.Tensor  # Gaussian sigma (= PIL radius); 0 = no blur
    noise: torch.Tensor  # noise standard deviation on the [0, 1] scale; 0 = no noise

    def select(self, index) -> AugParams:
        """The parameters of the frames ``index`` picks (a slice or an index tensor)."""
        return AugParams(*(getattr(self, f.name)[index] for f in fields(self)))


def sample_params(n: int, generator: torch.Generator, blur_scale: float = 1.0) -> AugParams:
    """Draw the parameters of ``n`` frames on ``generator``'s device; blur radii are scaled by
    ``blur_scale`` (frame height / :data:`REFERENCE_HEIGHT`)."""
    u = torch.rand(8, n, generator=generator, device=generator.device)
    lo, hi = COLOR_RANGE
    color = lo + (hi - lo) * u[:3]
    radii = constant(tuple(r * blur_scale for r in BLUR_RADII), u.device)
    radius = radii[(u[5] * len(BLUR_RADII)).long().clamp_(max=len(BLUR_RADII) - 1)]
    sigma = NOISE_SIGMA[0] + (NOISE_SIGMA[1] - NOISE_SIGMA[0]) * u[7]
    return AugParams(
        brightness=color[0],
        contrast=color[1],
        saturation=color[2],
        angle=(2 * u[3] - 1) * MAX_ANGLE_DEG,
        blur=torch.where(u[4] < BLUR_P, radius, 0.0),
        noise=torch.where(u[6] < NOISE_P, sigma, 0.0),
    )


def _per_frame(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] -> [N,1,H,W] luma with torchvision's weights (fast on planar NCHW)."""
    g = x[:, 0:1] * GRAY_WEIGHTS[0]
    return g.add_(x[:, 1:2], alpha=GRAY_WEIGHTS[1]).add_(x[:, 2:3], alpha=GRAY_WEIGHTS[2])


def brightness_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale by ``factor`` [N]; overwrites and returns ``x``."""
    return x.mul_(_per_frame(factor)).clamp_(0.0, 1.0)


def contrast_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with each frame's mean grayscale value; overwrites and returns ``x``."""
    mean = x.mean(dim=(2, 3)) @ constant(
        GRAY_WEIGHTS, x.device, x.dtype
    )  # = mean of the grayscale frame, without building it
    return x.mul_(_per_frame(factor)).add_(_per_frame((1 - factor) * mean)).clamp_(0.0, 1.0)


def saturation_(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the grayscale frame; overwrites and returns ``x``."""
    gray = grayscale(x)
    f = _per_frame(factor)
    return x.mul_(f).addcmul_(gray, 1 - f).clamp_(0.0, 1.0)


def rotation_grid(angle_deg: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``affine_grid`` of a rotation about the centre, [N,h,w,2], without its batched matmul.

    Maps each output pixel centre to its input position in normalized coordinates; the aspect
    factors keep it a true rotation in pixel space although x and y are normalized by
    different lengths. Positive angles turn the content counter-clockwise (as torchvision).
    """
    a = torch.deg2rad(angle_deg).view(-1, 1, 1)
    cos, sin = torch.cos(a), torch.sin(a)
    dev = angle_deg.device
    xs = ((torch.arange(w, device=dev) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, device=dev) * 2 + 1) / h - 1).view(1, h, 1)
    grid = torch.empty((a.shape[0], h, w, 2), device=dev)
    grid[..., 0] = cos * xs - (sin * (h / w)) * ys
    grid[..., 1] = (sin * (w / h)) * xs + cos * ys
    return grid


def rotate(x: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each frame by its angle about the centre; bilinear, black outside."""
    grid = rotation_grid(angle_deg, x.shape[2], x.shape[3]).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def blur_half(height: int) -> int:
    """Taps on each side of the widest blur kernel for frames of ``height`` (3 sigma)."""
    return max(_BLUR_HALF, math.ceil(3 * max(BLUR_RADII) * height / REFERENCE_HEIGHT))


def gaussian_kernels(sigma: torch.Tensor, half: int = _BLUR_HALF) -> torch.Tensor:
    """[M] sigmas -> [M, 2*half+1] normalized taps; sigma 0 gives the identity."""
    taps = torch.arange(-half, half + 1, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (taps / sigma.clamp(min=1e-3).unsqueeze(1)) ** 2)
    k = k / k.sum(1, keepdim=True)
    delta = (taps == 0).float().expand_as(k)
    return torch.where(sigma.unsqueeze(1) > 0, k, delta)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-frame sigma [M]; edges replicated (as PIL)."""
    m, c, h, w = x.shape
    pad = blur_half(h)
    k = gaussian_kernels(sigma, pad).to(x.dtype).repeat_interleave(c, 0)  # [M*C, K]
    size, groups = k.shape[1], m * c
    y = x.contiguous().view(1, groups, h, w)
    y = F.pad(y, (0, 0, pad, pad), mode="replicate")
    y = F.conv2d(y, k.view(groups, 1, size, 1), groups=groups)
    y = F.pad(y, (pad, pad, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(groups, 1, 1, size), groups=groups)
    return y.view(m, c, h, w)


def add_noise_(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add N(0, sigma^2) per pixel and channel, clamp to [0, 1]; overwrites and returns ``x``."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x.addcmul_(noise, _per_frame(sigma)).clamp_(0.0, 1.0)


def _apply_some(x: torch.Tensor, value: torch.Tensor, op) -> torch.Tensor:
    """``op(frames, value)`` where value > 0: only those frames on the CPU, all elsewhere."""
    if x.device.type != "cpu":
        return op(x, value)
    chosen = (value > 0).nonzero().squeeze(1)
    if chosen.numel():
        x[chosen] = op(x[chosen], value[chosen])
    return x


def augment_(
    x: torch.Tensor, params: AugParams, generator: torch.Generator, *, scale: float = 1.0
) -> torch.Tensor:
    """Augment float frames [N,3,H,W] (planar NCHW is fastest); may overwrite ``x``.

    ``x * scale`` must lie in [0, 1]; the scale is folded into the brightness multiply (so raw
    0-255 values cost no extra pass).
    """
    x = brightness_(x, params.brightness * scale)
    x = contrast_(x, params.contrast)
    x = saturation_(x, params.saturation)
    x = rotate(x, params.angle)
    x = _apply_some(x, params.blur, gaussian_blur)
    return _apply_some(x, params.noise, lambda y, s: add_noise_(y, s, generator))


NORM_SCALE = tuple(1.0 / s for s in IMAGENET_STD)
NORM_BIAS = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
"""ImageNet normalization as ``x * scale + bias`` per channel."""


def _norm_affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return constant(NORM_SCALE, device), constant(NORM_BIAS, device)


def normalize_(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalization of [0, 1] frames [N,3,H,W]; overwrites and returns ``x``."""
    scale, bias = _norm_affine(x.device)
    return x.mul_(scale.view(1, 3, 1, 1)).add_(bias.view(1, 3, 1, 1))


def _rows(frames: torch.Tensor) -> torch.Tensor:
    """Channels_last [N,3,H,W] (or NHWC) storage as [N*H, W*3] rows."""
    if frames.shape[-1] != 3:
        frames = frames.permute(0, 2, 3, 1)  # channels_last storage is NHWC
    n, h, w, c = frames.shape
    return frames.view(n * h, w * c)  # a view, never a copy: ``out=`` must write through


def _normalize_rows(src: torch.Tensor, out: torch.Tensor, src_scale: float) -> torch.Tensor:
    """Normalize ``src`` (NHWC or channels_last) into channels_last ``out`` as one pass over
    [N*H, W*3] rows: per-channel constants broadcast along a contiguous row vectorise,
    [1,3,1,1] over channels_last does not (3-4x slower on the CPU)."""
    w = out.shape[3]
    bias = constant(NORM_BIAS * w, out.device)
    scale = constant(tuple(v * src_scale for v in NORM_SCALE) * w, out.device)
    return torch.addcmul(bias, _rows(src), scale, out=_rows(out))


def to_model_input(
    frames: torch.Tensor, *, augment: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 frames [N,H,W,3] -> float32 [N,3,H,W] channels_last, augmented if asked, normalized.

    Augmentation runs on planar copies (per-channel and per-plane ops vectorise there) in
    chunks of ``_CPU_CHUNK`` frames on the CPU, so the dozen passes over a chunk stay in cache
    and its temporaries are recycled by the allocator; on a GPU the whole batch is one chunk.
    """
    frames = frames.contiguous()
    n, h, w, _ = frames.shape
    out = torch.empty((n, 3, h, w), device=frames.device, memory_format=torch.channels_last)
    if not augment:
        _normalize_rows(frames, out, 1.0 / 255.0)
        return out
    if generator is None or generator.device.type != frames.device.type:
        raise ValueError("augment=True needs a torch.Generator on the frames' device")
    params = sample_params(n, generator, blur_scale=h / REFERENCE_HEIGHT)
    step = _CPU_CHUNK if frames.device.type == "cpu" else max(n, 1)
    for i in range(0, n, step):
        j = min(i + step, n)
        x = torch.empty((j - i, 3, h, w), device=frames.device)
        x.copy_(frames[i:j].permute(0, 3, 1, 2))  # 0-255 floats; 1/255 goes into brightness
        x = augment_(x, params.select(slice(i, j)), generator, scale=1.0 / 255.0)
        chunk = out[i:j]
        chunk.copy_(x)  # the layout change, then normalize in place as rows
        _normalize_rows(chunk, chunk, 1.0)
    return out
