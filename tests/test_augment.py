"""The on-device augmentations: parameter statistics, each op, and the batch entry point."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from jersey_ray.cache import augment as A


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _frames(n: int = 4, h: int = 24, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=_gen(seed))


def test_parameter_statistics_match_the_spec() -> None:
    n = 4000
    p = A.sample_params(n, _gen(1))
    for factor in (p.brightness, p.contrast, p.saturation):
        assert factor.min() >= 0.8 and factor.max() <= 1.2
        assert abs(factor.mean().item() - 1.0) < 0.01  # U(0.8, 1.2): sd of the mean ~0.0018
        assert factor.std().item() == pytest.approx(0.4 / math.sqrt(12), rel=0.05)
    assert p.angle.abs().max() <= 5.0
    assert abs(p.angle.mean().item()) < 0.15 and p.angle.std().item() == pytest.approx(
        10 / math.sqrt(12), rel=0.05
    )
    blurred = p.blur > 0
    tol_blur = 4 * math.sqrt(0.3 * 0.7 / n)  # four binomial standard deviations
    assert abs(blurred.float().mean().item() - 0.3) < tol_blur
    radii = p.blur[blurred]
    assert set(radii.unique().tolist()) == {1.0, 1.5, 2.0}
    for r in (1.0, 1.5, 2.0):
        share = (radii == r).float().mean().item()
        assert abs(share - 1 / 3) < 4 * math.sqrt(2 / 9 / len(radii))
    noisy = p.noise > 0
    assert abs(noisy.float().mean().item() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n)
    assert p.noise[noisy].min() >= 0.01 and p.noise[noisy].max() <= 0.03
    # The draws are independent: blur and noise co-occur at about 0.3 * 0.2.
    assert abs((blurred & noisy).float().mean().item() - 0.06) < 4 * math.sqrt(0.06 * 0.94 / n)


def test_parameters_are_seeded() -> None:
    a, b, c = (A.sample_params(50, _gen(s)) for s in (3, 3, 4))
    assert torch.equal(a.angle, b.angle) and torch.equal(a.blur, b.blur)
    assert not torch.equal(a.angle, c.angle)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (A.brightness_, TF.adjust_brightness),
        (A.contrast_, TF.adjust_contrast),
        (A.saturation_, TF.adjust_saturation),
    ],
)
def test_colour_ops_follow_torchvision(ours, theirs) -> None:
    x = _frames()
    factor = torch.tensor([0.8, 0.95, 1.1, 1.2])
    expected = torch.stack([theirs(x[i], float(factor[i])) for i in range(len(x))])
    assert torch.allclose(ours(x.clone(), factor), expected, atol=1e-6)
    assert torch.allclose(ours(x.clone(), torch.ones(4)), x, atol=1e-6)  # factor 1: identity


def test_brightness_factor_one_is_exact_identity_and_clamps() -> None:
    x = _frames()
    assert torch.equal(A.brightness_(x.clone(), torch.ones(4)), x)
    assert A.brightness_(torch.ones(1, 3, 4, 4), torch.tensor([1.2])).max() == 1.0


def test_rotation() -> None:
    x = _frames()
    assert torch.allclose(A.rotate(x, torch.zeros(4)), x, atol=1e-5)
    angle = torch.tensor([-5.0, -1.5, 2.0, 5.0])
    # torchvision's tensor rotate (zeros padding, bilinear, about the centre) is the reference
    expected = torch.stack(
        [
            TF.rotate(x[i], float(angle[i]), interpolation=TF.InterpolationMode.BILINEAR)
            for i in range(4)
        ]
    )
    assert torch.allclose(A.rotate(x, angle), expected, atol=1e-4)
    assert not torch.allclose(A.rotate(x, -angle), expected, atol=1e-2)  # direction matters


def test_rotation_grid_equals_affine_grid() -> None:
    angle = torch.tensor([-4.0, 0.0, 3.0])
    a = torch.deg2rad(angle)
    c, s, z = a.cos(), a.sin(), torch.zeros(3)
    h, w = 24, 12
    theta = torch.stack([torch.stack([c, -s * h / w, z], 1), torch.stack([s * w / h, c, z], 1)], 1)
    expected = F.affine_grid(theta, [3, 3, h, w], align_corners=False)
    assert torch.allclose(A.rotation_grid(angle, h, w), expected, atol=1e-6)


def test_blur() -> None:
    x = torch.zeros(3, 3, 40, 30)
    x[:, :, 10:30, 8:22] = torch.rand(3, 3, 20, 14, generator=_gen(2))  # black margin >= 8 px
    sigma = torch.tensor([1.0, 1.5, 2.0])
    y = A.gaussian_blur(x, sigma)
    assert torch.allclose(y.sum((2, 3)), x.sum((2, 3)), rtol=1e-5)  # preserves the mean
    assert (y[:, :, 10:30, 8:22].std() < x[:, :, 10:30, 8:22].std()).item()
    for i in range(3):
        s = float(sigma[i])
        expected = TF.gaussian_blur(x[i], [13, 13], [s, s])
        assert torch.allclose(y[i], expected, atol=1e-5)
    assert torch.allclose(A.gaussian_blur(x, torch.zeros(3)), x)  # sigma 0: identity


def test_noise_std_matches_sigma() -> None:
    x = torch.full((2, 3, 64, 64), 0.5)
    y = A.add_noise_(x.clone(), torch.tensor([0.01, 0.03]), _gen(5))
    for i, sigma in enumerate((0.01, 0.03)):
        assert (y[i] - 0.5).std().item() == pytest.approx(sigma, rel=0.05)
        assert abs((y[i] - 0.5).mean().item()) < sigma / 20
    assert A.add_noise_(torch.ones(1, 3, 8, 8), torch.tensor([0.03]), _gen(5)).max() == 1.0


def test_cpu_subset_path_equals_applying_to_all() -> None:
    """The CPU path processes only the chosen frames; the GPU path applies identity to the
    rest. Both must give the same frames."""
    x = _frames(6)
    sigma = torch.tensor([0.0, 1.0, 0.0, 2.0, 1.5, 0.0])
    subset = A._apply_some(x.clone(), sigma, A.gaussian_blur)
    assert torch.allclose(subset, A.gaussian_blur(x, sigma), atol=1e-6)
    assert torch.equal(subset[0], x[0]) and not torch.allclose(subset[1], x[1])


def test_eval_input_is_normalization_only() -> None:
    u8 = torch.randint(0, 256, (5, 24, 12, 3), dtype=torch.uint8, generator=_gen(6))
    out = A.to_model_input(u8, augment=False)
    expected = TF.normalize(u8.permute(0, 3, 1, 2).float() / 255, A.IMAGENET_MEAN, A.IMAGENET_STD)
    assert out.dtype == torch.float32 and out.shape == (5, 3, 24, 12)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, expected, atol=1e-5)


def test_train_input_is_seeded_and_augmented() -> None:
    u8 = torch.randint(0, 256, (70, 24, 12, 3), dtype=torch.uint8, generator=_gen(7))
    a = A.to_model_input(u8, augment=True, generator=_gen(1))  # 70 > one CPU chunk of 32
    b = A.to_model_input(u8, augment=True, generator=_gen(1))
    c = A.to_model_input(u8, augment=True, generator=_gen(2))
    plain = A.to_model_input(u8, augment=False)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == plain.shape and a.is_contiguous(memory_format=torch.channels_last)
    assert (a - plain).abs().mean() > 0.05
    lo = (0 - torch.tensor(A.IMAGENET_MEAN)) / torch.tensor(A.IMAGENET_STD)
    hi = (1 - torch.tensor(A.IMAGENET_MEAN)) / torch.tensor(A.IMAGENET_STD)
    per_channel = a.permute(1, 0, 2, 3).reshape(3, -1)
    assert (per_channel.min(1).values >= lo - 1e-5).all()
    assert (per_channel.max(1).values <= hi + 1e-5).all()


def test_train_input_matches_the_ops_applied_in_order() -> None:
    u8 = torch.randint(0, 256, (6, 24, 12, 3), dtype=torch.uint8, generator=_gen(8))
    out = A.to_model_input(u8, augment=True, generator=_gen(3))
    gen = _gen(3)
    p = A.sample_params(6, gen, blur_scale=24 / A.REFERENCE_HEIGHT)
    x = u8.permute(0, 3, 1, 2).float() / 255
    x = A.saturation_(A.contrast_(A.brightness_(x, p.brightness), p.contrast), p.saturation)
    x = A.rotate(x, p.angle)
    x = A._apply_some(x, p.blur, A.gaussian_blur)
    x = A._apply_some(x, p.noise, lambda y, s: A.add_noise_(y, s, gen))
    assert torch.allclose(out, A.normalize_(x), atol=1e-5)


def test_augment_needs_a_generator_on_the_device() -> None:
    u8 = torch.zeros(2, 8, 4, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="Generator"):
        A.to_model_input(u8, augment=True)


def test_constants_are_made_once_per_device_and_dtype() -> None:
    a = A.constant((1.0, 2.0), "cpu")
    assert A.constant((1.0, 2.0), torch.device("cpu")) is a
    wide = A.constant((1.0, 2.0), "cpu", torch.float64)
    assert wide is not a and wide.dtype == torch.float64 and a.dtype == torch.float32
    assert torch.equal(a, torch.tensor([1.0, 2.0]))


def test_batches_build_no_constant_tensors_after_the_first(monkeypatch) -> None:
    """On CUDA each ``torch.tensor(..., device=cuda)`` is a blocking copy (a host sync per
    call): after the first batch on a device, a batch must build none, with the same result."""
    u8 = torch.randint(0, 256, (40, 24, 12, 3), dtype=torch.uint8, generator=_gen(9))
    first = A.to_model_input(u8, augment=True, generator=_gen(4))  # makes the constants
    plain = A.to_model_input(u8, augment=False)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.tensor called while augmenting or normalizing a batch")

    monkeypatch.setattr(torch, "tensor", refuse)
    again = A.to_model_input(u8, augment=True, generator=_gen(4))
    assert torch.equal(again, first)
    assert torch.equal(A.to_model_input(u8, augment=False), plain)


def test_blur_radii_scale_with_the_frame_height() -> None:
    """The reference's radii are pixels of 192-high frames: unchanged there, halved at 96."""
    full = A.sample_params(400, _gen(5))
    half = A.sample_params(400, _gen(5), blur_scale=0.5)
    assert torch.equal(half.blur, full.blur * 0.5) and torch.equal(half.angle, full.angle)
    assert set(full.blur[full.blur > 0].unique().tolist()) == {1.0, 1.5, 2.0}
    assert A.blur_half(A.REFERENCE_HEIGHT) == A.blur_half(32) == 6  # 3 sigma of radius 2
    assert A.blur_half(2 * A.REFERENCE_HEIGHT) == 12
    tall = torch.zeros(1, 3, 2 * A.REFERENCE_HEIGHT, 8)
    row = A.REFERENCE_HEIGHT
    tall[0, :, row] = 1.0  # one bright row: sigma 4 (radius 2 at twice the height) spreads it
    profile = A.gaussian_blur(tall, torch.tensor([4.0]))[0, 0, :, 4]
    taps = torch.arange(-12, 13, dtype=torch.float32)
    expected = torch.exp(-0.5 * (taps / 4) ** 2)
    expected /= expected.sum()
    assert torch.allclose(profile[row - 12 : row + 13], expected, atol=1e-6)  # 3 sigma, no cut
