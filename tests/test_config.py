"""Config round trips and strictness; metric names; the CLI front door."""

import json

import pytest
import torch

from jersey_ray import metrics
from jersey_ray.__main__ import main as front_door
from jersey_ray.config import (
    ConfigError,
    DataConfig,
    SweepSpec,
    TrainConfig,
    from_dict,
    from_json,
    layered,
    replace,
    to_dict,
    to_json,
)


def test_defaults_are_the_report_protocol():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.grad_clip) == (
        30,
        64,
        1e-3,
        1e-4,
        1.0,
    )
    assert (cfg.lr_backbone, cfg.lr_temporal, cfg.lr_heads) == (1e-4, 3e-4, 3e-4)
    assert (cfg.warmup_epochs, cfg.deterministic) == (1, True)
    data = DataConfig()
    assert (data.size, data.max_frames, data.split_seed, data.split) == (
        (192, 96),
        16,
        42,
        "tracks",
    )


def test_json_round_trip_restores_tuples():
    cfg = TrainConfig(model="attn_bgru_luong", betas=(0.8, 0.9), seed=7)
    back = from_json(TrainConfig, to_json(cfg))
    assert back == cfg and isinstance(back.betas, tuple)
    data = DataConfig(root="/d", size=(64, 32), numbers=("4", "48"), split="heldout",
                      heldout_numbers=("48",))  # fmt: skip
    again = from_json(DataConfig, to_json(data))
    assert again == data
    assert isinstance(again.size, tuple) and isinstance(again.numbers, tuple)
    assert json.loads(to_json(data))["size"] == [64, 32]


def test_train_config_holds_no_data_settings():
    assert not {"size", "max_frames", "split_seed", "numbers", "cache", "data_root"} & set(
        to_dict(TrainConfig())
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"size": (4, 4)}, "at least 8x8"),
        ({"size": [1, 2, 3]}, "size must have 2 items"),
        ({"split": "random"}, "split must be one of tracks, heldout"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
        ({"numbers": ["4", "100"]}, "not 1-2 digit jersey numbers"),
        ({"heldout_numbers": ["48"]}, "heldout_numbers needs split 'heldout'"),
    ],
)
def test_bad_data_values_are_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DataConfig, {**to_dict(DataConfig()), **changes})


def test_layers_apply_in_order_and_name_their_sources():
    cfg, sources = layered(
        TrainConfig,
        [("protocol", {"lr_scheme": "discriminative"}), ("sweep file", {"epochs": 5, "lr": 0.1}),
         ("command line", {"epochs": 2})],
    )  # fmt: skip
    assert (cfg.lr_scheme, cfg.epochs, cfg.lr, cfg.batch_size) == ("discriminative", 2, 0.1, 64)
    assert sources == {"epochs": "command line", "lr": "sweep file", "lr_scheme": "protocol"}
    with pytest.raises(ConfigError, match="preset quick: unknown TrainConfig key"):
        layered(TrainConfig, [("preset quick", {"epoch": 3})])


def test_unknown_key_is_an_error_listing_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown TrainConfig key\(s\) lrr; valid keys: .*lr,"):
        from_dict(TrainConfig, {"lrr": 0.1})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"optimizer": "sgd"}, "optimizer must be one of adam, adamw"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"gpu_fraction": 1.5}, "gpu_fraction must be in"),
        ({"seed": "42"}, "seed must be int"),
        ({"betas": [1, 2, 3]}, "betas must have 2 items"),
        ({"warmup_epochs": 40}, "warmup_epochs"),
    ],
)
def test_bad_values_are_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, {**to_dict(TrainConfig()), **changes})


def test_replace_is_strict_and_frozen():
    cfg = replace(TrainConfig(), lr=0.5)
    assert cfg.lr == 0.5
    with pytest.raises(ConfigError):
        replace(cfg, nope=1)
    with pytest.raises(AttributeError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_int_given_for_float_is_accepted():
    assert from_dict(TrainConfig, {"lr": 1}).lr == 1.0


def test_sweep_spec_rejects_unknown_keys_and_seed_axes():
    with pytest.raises(ConfigError, match="unknown TrainConfig key"):
        SweepSpec(name="x", phase="x", models=("basic_r18",), train={"learning_rate": 1})
    with pytest.raises(ConfigError, match="use models/seeds"):
        SweepSpec(name="x", phase="x", models=("basic_r18",), axes={"seed": (1, 2)})
    with pytest.raises(ConfigError, match="scheduler"):
        SweepSpec(name="x", phase="x", models=("basic_r18",), scheduler="pbt")
    with pytest.raises(ConfigError, match="unknown DataConfig key"):
        SweepSpec(name="x", phase="x", models=("basic_r18",), data={"frames": 4})
    with pytest.raises(ConfigError, match="comes from --data"):
        SweepSpec(name="x", phase="x", models=("basic_r18",), data={"root": "/d"})


def test_metric_names_are_split_underscore_metric():
    assert metrics.VAL_ACC_NUMBER == "val_acc_number"
    assert metrics.TEST_ACC_ONES == "test_acc_ones"
    assert metrics.key("train", "loss") == "train_loss"
    with pytest.raises(ValueError):
        metrics.key("dev", "loss")


def test_split_counter_counts_number_only_when_both_heads_right():
    counter = metrics.SplitCounter("cpu")
    tens_logits = torch.eye(11)[[1, 2, 10, 10]]
    ones_logits = torch.eye(10)[[1, 2, 3, 4]]
    tens, ones = torch.tensor([1, 2, 10, 5]), torch.tensor([1, 0, 3, 4])
    counter.update(torch.tensor(2.0), tens_logits[:2], ones_logits[:2], tens[:2], ones[:2])
    counter.update(torch.tensor(1.0), tens_logits[2:], ones_logits[2:], tens[2:], ones[2:])
    out = counter.compute("val")
    assert out["val_acc_number"] == 2 / 4  # rows 0 and 2
    assert out["val_acc_tens"] == 3 / 4
    assert out["val_acc_ones"] == 3 / 4
    assert out["val_loss"] == pytest.approx((2.0 * 2 + 1.0 * 2) / 4)


def test_confusion_and_number_strings():
    cm = metrics.confusion(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 3)  # true, pred
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert metrics.number_string(metrics.BLANK, 7) == "7"
    assert metrics.number_string(0, 7) == "07"


def test_tensorboard_tags_group_by_split():
    assert metrics.tensorboard_tag("val_acc_number") == "val/acc_number"
    assert metrics.tensorboard_tag("unseen_acc_tens") == "unseen/acc_tens"
    assert metrics.tensorboard_tag(metrics.FRAMES_PER_S) == "system/frames_per_s"
    assert metrics.tensorboard_tag(metrics.BEST_VAL_ACC_NUMBER) == "best/val_acc_number"


def test_front_door_lists_commands_and_rejects_unknown(capsys):
    assert front_door([]) == 0
    assert "sweep" in capsys.readouterr().out
    assert front_door(["nope"]) == 2
    assert "unknown command" in capsys.readouterr().err
