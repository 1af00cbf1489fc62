"""Digit splice: pixels from the two crops, composed labels, seeded draws, no held-out number,
training only."""

from __future__ import annotations

import pytest
import torch

from jersey_ray import metrics as M
from jersey_ray.cache import loader as L
from jersey_ray.cache.loader import SplitData, iter_batches
from jersey_ray.cache.splice import (
    CUT_RANGE,
    choose_pairs,
    epoch_generator,
    forbidden_labels,
    splice_batch,
)
from jersey_ray.config import ConfigError, DataConfig, TrainConfig
from jersey_ray.data.index import parse_label

H, W = 8, 20


def crop(value: int, n: int = 1) -> torch.Tensor:
    """``n`` frames whose every pixel of frame t is ``value + t`` (so sources are readable)."""
    return torch.stack([torch.full((H, W, 3), value + t, dtype=torch.uint8) for t in range(n)])


def labels(numbers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [parse_label(n) for n in numbers]
    return torch.tensor([t for t, _ in pairs]), torch.tensor([o for _, o in pairs])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_spliced_crop_is_the_left_of_one_and_the_right_of_the_other():
    frames = torch.cat([crop(10), crop(200)])
    tens, ones = labels(["23", "45"])
    out = splice_batch(frames, torch.tensor([1, 1]), tens, ones, 1.0, frozenset(), gen())
    assert out.partner.tolist() == [1, 0]  # each row's only partner
    for row, (left, right) in enumerate(((10, 200), (200, 10))):
        cut = int(out.cut[row])
        assert round(CUT_RANGE[0] * W) <= cut <= round(CUT_RANGE[1] * W)
        assert (out.frames[row, :, :cut] == left).all()
        assert (out.frames[row, :, cut:] == right).all()
    # tens from the left crop, ones from the right one: 23 | 45 -> 25, 45 | 23 -> 43
    assert out.tens.tolist() == [2, 4] and out.ones.tolist() == [5, 3]
    assert out.frames.shape == frames.shape and out.frames.dtype == torch.uint8


def test_sequences_are_spliced_frame_by_frame_to_the_shorter_length():
    frames = torch.cat([crop(10, 3), crop(100, 2)])  # A: 3 frames, B: 2
    tens, ones = labels(["23", "45"])
    out = splice_batch(frames, torch.tensor([3, 2]), tens, ones, 1.0, frozenset(), gen(1))
    assert out.lengths.tolist() == [2, 2]
    assert out.frames.shape[0] == 4
    for t in range(2):  # row 0, frame t: A's frame t left of the cut, B's frame t right of it
        cut = int(out.cut[0])
        assert (out.frames[t, :, :cut] == 10 + t).all()
        assert (out.frames[t, :, cut:] == 100 + t).all()
        cut = int(out.cut[1])
        assert (out.frames[2 + t, :, :cut] == 100 + t).all()
        assert (out.frames[2 + t, :, cut:] == 10 + t).all()


def test_a_heldout_number_is_never_composed():
    frames = torch.cat([crop(10), crop(100), crop(200)])
    tens, ones = labels(["23", "45", "67"])
    # every pair composes a held-out number: nothing may change
    held = forbidden_labels(["25", "27", "43", "47", "63", "65"])
    out = splice_batch(frames, torch.tensor([1, 1, 1]), tens, ones, 1.0, held, gen())
    assert out.partner.tolist() == [-1, -1, -1]
    assert torch.equal(out.frames, frames) and torch.equal(out.ones, ones)
    # one allowed pair left: the only splice made is 23 | 67 -> 27
    held = forbidden_labels(["25", "43", "47", "63", "65"])
    out = splice_batch(frames, torch.tensor([1, 1, 1]), tens, ones, 1.0, held, gen())
    assert out.partner.tolist() == [2, -1, -1]
    assert (int(out.tens[0]), int(out.ones[0])) == (2, 7)


def test_random_batches_never_yield_a_heldout_number():
    g = torch.Generator().manual_seed(7)
    held_numbers = ["14", "23", "26", "31", "58", "77", "90"]
    held = forbidden_labels(held_numbers)
    train = [f"{n}" for n in range(100) if f"{n}" not in held_numbers]
    made = set()
    for seed in range(30):
        pick = torch.randint(len(train), (64,), generator=g)
        tens, ones = labels([train[int(i)] for i in pick])
        partner, _ = choose_pairs(tens, ones, 1.0, held, W, gen(seed))
        for i, j in enumerate(partner.tolist()):
            if j >= 0:
                made.add((int(tens[i]), int(ones[j])))
    assert made and not made & held
    assert len(made) > 50  # the test is not vacuous: many compositions were made


def test_one_digit_numbers_take_no_part():
    tens, ones = labels(["7", "23", "4", "45"])
    partner, cut = choose_pairs(tens, ones, 1.0, frozenset(), W, gen())
    assert partner[0] == -1 and partner[2] == -1 and cut[0] == W
    assert set(partner[[1, 3]].tolist()) <= {1, 3} and (partner[[1, 3]] >= 0).all()


def test_splicing_is_seeded():
    tens, ones = labels([str(n) for n in range(10, 99, 3)])
    a = choose_pairs(tens, ones, 0.5, frozenset(), W, gen(3))
    b = choose_pairs(tens, ones, 0.5, frozenset(), W, gen(3))
    c = choose_pairs(tens, ones, 0.5, frozenset(), W, gen(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    spliced = (a[0] >= 0).float().mean()
    assert 0.2 < spliced < 0.8  # about the rate
    assert torch.equal(epoch_generator(1, 2).get_state(), epoch_generator(1, 2).get_state())
    assert not torch.equal(epoch_generator(1, 2).get_state(), epoch_generator(1, 3).get_state())


def test_rate_zero_changes_nothing():
    frames = torch.cat([crop(10), crop(100)])
    tens, ones = labels(["23", "45"])
    out = splice_batch(frames, torch.tensor([1, 1]), tens, ones, 0.0, frozenset(), gen())
    assert out.frames is frames and out.partner.tolist() == [-1, -1]


def split_data(numbers: list[str], lengths: list[int], split: str = "train") -> SplitData:
    frames = torch.cat([crop(20 * i, n) for i, n in enumerate(lengths)])
    tens, ones = labels(numbers)
    n = torch.tensor(lengths)
    return SplitData(
        split=split, size=(H, W), frames=frames, offsets=torch.cumsum(n, 0) - n, lengths=n,
        tens=tens, ones=ones, jersey=numbers, track=[f"t{i}" for i in range(len(numbers))],
        seq_id=[f"s{i}" for i in range(len(numbers))],
    )  # fmt: skip


def test_the_loader_splices_only_when_asked_and_keeps_masks_right():
    data = split_data(["23", "45", "67", "8"], [3, 2, 1, 2])
    plain = list(iter_batches(data, 4, shuffle=False))
    again = list(iter_batches(data, 4, shuffle=False, splice=0.0))
    assert torch.equal(plain[0].frames, again[0].frames)
    spliced = next(iter_batches(data, 4, shuffle=False, splice=1.0, splice_generator=gen(2)))
    lengths = spliced.mask.sum(1)
    assert spliced.n_frames == int(lengths.sum()) == spliced.frames.shape[0]
    assert lengths[3] == 2 and spliced.ones[3] == 8  # the one-digit row is untouched
    assert not torch.equal(spliced.ones[:3], data.ones[:3])  # something was composed
    with pytest.raises(ValueError, match="splice_generator"):
        next(iter_batches(data, 4, shuffle=False, splice=0.5))


def test_the_config_checks_the_rate():
    assert TrainConfig().splice == 0.0  # off: the report's protocol
    with pytest.raises(ConfigError, match="splice"):
        TrainConfig(splice=1.5)


def test_training_splices_the_train_split_only(tmp_path, monkeypatch):
    """A 1-epoch trial with splice 1.0: only training batches reach the splice, with the
    cache's held-out numbers forbidden; validation, test and unseen never do."""
    from jersey_ray.train import loop

    calls = []
    real = L.splice_batch

    def spy(frames, lengths, tens, ones, rate, forbidden, generator, labels=None):
        calls.append((frames.data_ptr(), rate, forbidden))
        return real(frames, lengths, tens, ones, rate, forbidden, generator, labels)

    monkeypatch.setattr(L, "splice_batch", spy)
    numbers = ["23", "45", "67", "28", "41", "63"]
    splits = {s: split_data(numbers, [1] * len(numbers), s) for s in (*M.SPLITS, M.UNSEEN)}
    data_cfg = DataConfig(size=(H, W), split="heldout", heldout_numbers=("25",))
    trial_data = loop.TrialData("mem", data_cfg, splits)
    cfg = TrainConfig(
        model="basic_sv2", epochs=1, batch_size=3, pretrained="none", splice=1.0,
        device="cpu", warmup_epochs=0, channels_last=False,
    )  # fmt: skip
    loop.train(cfg, trial_data, tmp_path / "run", progress=False)
    assert len(calls) == 2  # the two training batches of 6 sequences, nothing else
    assert all(rate == 1.0 and forbidden == {(2, 5)} for _, rate, forbidden in calls)
