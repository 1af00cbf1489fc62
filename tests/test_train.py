"""The training trial: protocol pieces, determinism, resume, checkpoints, outputs, CLI.

Everything runs on the CPU at 32x16 with a few dozen sequences made here, so a whole trial takes
seconds. Their frames are noise over a per-class colour: ResNet-18 from scratch learns that in a
few dozen steps. The jersey renderings of ``jersey_ray.data.synth`` are not learnable in a CPU
test budget from scratch (measured at 64x32: 2 classes, 128 training sequences, 6 epochs gave
train 1.0 and val 0.56, i.e. chance), so they are not used here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from jersey_ray import metrics as M
from jersey_ray.cache.loader import SplitData, iter_batches
from jersey_ray.config import DataConfig, TrainConfig, from_dict, replace, to_dict
from jersey_ray.errors import UserError
from jersey_ray.models import build_model
from jersey_ray.train import __main__ as CLI
from jersey_ray.train import checkpoint as CK
from jersey_ray.train import loop as L
from jersey_ray.train import step as ST
from jersey_ray.train.evaluate import Evaluation

SIZE = (32, 16)
TIMING = {M.FRAMES_PER_S, M.EPOCH_TIME_S, M.GPU_MEM_GB}
NUMBERS = ("4", "48", "6", "66", "8", "89")
ATTENTION = {"model": "attn_bgru_luong", "lr_scheme": "discriminative"}


COLOURS = torch.tensor(
    [[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [200, 40, 200], [40, 200, 200]],
    dtype=torch.uint8,
)  # one shirt colour per class in NUMBERS: learnable in a few dozen steps from scratch


def tiny_split(split: str, n: int, seed: int) -> SplitData:
    """``n`` sequences of 2-4 noisy frames whose colour codes the jersey number."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 5, (n,), generator=gen)
    classes = torch.arange(n) % len(NUMBERS)
    owner = torch.repeat_interleave(classes, lengths)
    noise = torch.randint(0, 56, (int(lengths.sum()), *SIZE, 3), dtype=torch.uint8, generator=gen)
    jerseys = [NUMBERS[c] for c in classes.tolist()]
    return SplitData(
        split=split,
        size=SIZE,
        frames=COLOURS[owner][:, None, None, :] + noise,
        offsets=torch.cumsum(lengths, 0) - lengths,
        lengths=lengths,
        tens=torch.tensor([M.BLANK if len(j) == 1 else int(j[0]) for j in jerseys]),
        ones=torch.tensor([int(j[-1]) for j in jerseys]),
        jersey=jerseys,
        track=[f"{j}/t{i}" for i, j in enumerate(jerseys)],
        seq_id=[f"{j}/t{i}/s0" for i, j in enumerate(jerseys)],
    )


TINY = DataConfig(root="data/root", size=SIZE, max_frames=4, split_seed=7)


def trial_data(**splits: SplitData) -> L.TrialData:
    """Splits made here, as a trial gets them from a cache (with the cache's DataConfig)."""
    return L.TrialData("tiny-cache", TINY, splits)


@pytest.fixture(scope="module")
def data() -> L.TrialData:
    # 8 training sequences with batch 4: two steps an epoch (BatchNorm needs batches > 1)
    return trial_data(
        train=tiny_split("train", 8, 1), val=tiny_split("val", 6, 2), test=tiny_split("test", 6, 3)
    )


def config(**changes) -> TrainConfig:
    base = dict(
        model="basic_r18",
        pretrained="none",
        device="cpu",
        epochs=3,
        batch_size=4,
        eval_batch_size=5,
    )
    return TrainConfig(**{**base, **changes})


def rows(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


class Stop(Exception):
    pass


def stop_after(epoch: int, out: Path) -> L.Reporter:
    """A reporter that keeps the files like a local run, then dies after ``epoch``."""
    local = CK.LocalReporter(out)

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        local(metrics, checkpoint_dir)
        if metrics[M.EPOCH] == epoch:
            raise Stop

    return report


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data) -> tuple[Path, dict[str, float]]:
    """An uninterrupted 3-epoch attention-model run (discriminative LRs), shared by many tests."""
    out = tmp_path_factory.mktemp("straight")
    return out, L.train(config(**ATTENTION), data, out)


# ---------------------------------------------------------------- protocol pieces


def test_warmup_cosine_by_hand():
    # W = 3 warm-up steps, C = 6 cosine steps
    expected = [1 / 3, 2 / 3, 1.0, 1.0, 0.9330127, 0.75, 0.5, 0.25, 0.0669873, 0.0]
    got = [ST.warmup_cosine(s, 3, 6) for s in range(10)]
    assert got == pytest.approx(expected, abs=1e-7)
    assert [ST.warmup_cosine(s, 4, 0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # C = 0
    assert ST.warmup_cosine(0, 0, 4) == 1.0 and ST.warmup_cosine(2, 0, 4) == pytest.approx(0.5)


def test_scheduler_steps_per_batch_over_every_group():
    cfg = config(model="seq_bgru_mp", lr_scheme="discriminative", epochs=3, batch_size=4)
    step = ST.make_step(cfg, build_model(cfg.model), 10, torch.device("cpu"))  # 3 steps/epoch
    seen = []
    for _ in range(9):
        seen.append({g["name"]: g["lr"] for g in step.optimizer.param_groups})
        step.optimizer.step()
        step.scheduler.step()
    lam = [1 / 3, 2 / 3, 1.0, 1.0, 0.9330127, 0.75, 0.5, 0.25, 0.0669873]
    for s, lrs in enumerate(seen):
        assert lrs["backbone"] == pytest.approx(1e-4 * lam[s])
        assert lrs["temporal"] == pytest.approx(3e-4 * lam[s])
        assert lrs["heads"] == pytest.approx(3e-4 * lam[s])
    assert step.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # after 9


def test_steps_per_epoch_keeps_the_last_partial_batch():
    assert ST.steps_per_epoch(128, 64) == 2
    assert ST.steps_per_epoch(130, 64) == 3  # the last partial batch (2 sequences) is kept
    assert ST.steps_per_epoch(66, 64) == 2
    # a last batch of one sequence joins the one before: BatchNorm cannot train on it
    assert ST.steps_per_epoch(129, 64) == 2
    assert ST.steps_per_epoch(1, 64) == 1


def _ids(groups):
    return [id(p) for g in groups for p in g["params"]]


def test_param_groups_uniform_and_discriminative():
    model = build_model("basic_r18")
    uniform = ST.param_groups(config(lr=2e-3), model)
    assert [(g["name"], g["lr"]) for g in uniform] == [("backbone", 2e-3), ("heads", 2e-3)]
    model = build_model("attn_bgru_gate")
    groups = ST.param_groups(config(lr_scheme="discriminative", lr_temporal=5e-4), model)
    assert [(g["name"], g["lr"]) for g in groups] == [
        ("backbone", 1e-4),
        ("temporal", 5e-4),
        ("heads", 3e-4),
    ]
    trainable = sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert sorted(_ids(groups)) == trainable  # every parameter exactly once (decisions row 3)


def test_param_groups_refuse_a_missing_parameter():
    model = build_model("basic_r18")
    model.param_groups = lambda: {"backbone": list(model.backbone.parameters()), "heads": []}
    with pytest.raises(ValueError, match="exactly once"):
        ST.param_groups(config(), model)


def _grad_norm(step: ST.Step) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in step.params])))


@pytest.mark.parametrize("clip", [1.0, 0.0])
def test_clipping_bounds_the_global_gradient_norm(data, clip):
    cfg = config(loss_weights=(1e4, 1e4), grad_clip=clip)
    torch.manual_seed(0)
    step = ST.make_step(cfg, build_model(cfg.model), 8, torch.device("cpu"))
    before = [p.detach().clone() for p in step.params]
    batch = next(iter_batches(data["train"], 4, frames=1, shuffle=False))
    ST.train_step(step, batch, M.SplitCounter("cpu"))
    if clip:
        assert _grad_norm(step) == pytest.approx(1.0, rel=1e-4)
    else:
        assert _grad_norm(step) > 100.0  # what clipping cut down
    assert any(not torch.equal(a, p) for a, p in zip(before, step.params, strict=True))


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert ST.resolve_precision(config(), cpu) == "fp32"
    assert ST.resolve_precision(config(precision="bf16"), cpu) == "bf16"
    assert ST.make_step(config(), build_model("basic_r18"), 8, cpu).scaler is None


# ---------------------------------------------------------------- whole runs


def test_same_seed_same_metrics_other_seed_differs(tmp_path, data):
    cfg = config(epochs=1)
    a = L.train(cfg, data, tmp_path / "a")
    b = L.train(cfg, data, tmp_path / "b")
    L.train(replace(cfg, seed=7), data, tmp_path / "c")
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert a == b
    first = rows(tmp_path / "a")[0]
    other = rows(tmp_path / "c")[0]
    assert first[M.TRAIN_LOSS] != other[M.TRAIN_LOSS] and first[M.VAL_LOSS] != other[M.VAL_LOSS]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, data) -> Path:
    """The straight run's config, stopped by its reporter after epoch 1 (read-only for tests)."""
    out = tmp_path_factory.mktemp("stopped")
    with pytest.raises(Stop):
        L.train(config(**ATTENTION), data, out, report=stop_after(1, out))
    return out


def test_resume_after_a_stop_matches_the_straight_run(tmp_path, data, straight, stopped):
    out, expected = straight
    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    assert len(rows(run)) == 1 and not list(run.glob(".checkpoint-*"))
    resumed = L.train(config(**ATTENTION), data, run, resume=run)
    assert resumed == expected
    assert rows(run) == rows(out)  # epoch 1 came from another call: determinism as well
    best = torch.load(run / "best.pt", weights_only=True)
    reference = torch.load(out / "best.pt", weights_only=True)
    assert best["epoch"] == reference["epoch"]
    assert all(torch.equal(best["model"][k], v) for k, v in reference["model"].items())


def test_resume_refuses_another_config(data, straight, stopped):
    cfg = config(**ATTENTION)
    with pytest.raises(UserError, match=r"differs in batch_size, lr_heads;"):
        L.train(replace(cfg, lr_heads=3e-3, batch_size=2), data, stopped, resume=stopped)
    assert len(rows(stopped)) == 1  # refused before anything was written
    # where and how fast it runs may change
    free = replace(cfg, eval_batch_size=3, channels_last=False, compile=True, precision="fp32")
    last, best = CK.read_resume(stopped, free, TINY)
    assert last["epoch"] == 1 and best["epoch"] == 1
    with pytest.raises(UserError, match=r"differs in data\.max_frames"):
        CK.read_resume(stopped, cfg, replace(TINY, max_frames=5))
    with pytest.raises(UserError, match="already finished its 3 epochs"):
        CK.read_resume(straight[0], cfg, TINY)


def test_resume_needs_a_checkpoint(tmp_path, data):
    with pytest.raises(UserError, match=r"last\.pt"):
        L.train(config(), data, tmp_path, resume=tmp_path)
    (tmp_path / "last.pt").write_text("not a checkpoint")
    (tmp_path / "best.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        L.train(config(), data, tmp_path, resume=tmp_path)


def test_best_checkpoint_is_chosen_on_val_ties_keep_the_earlier(tmp_path, data, monkeypatch):
    scripted = iter([0.2, 0.5, 0.5, 0.4])
    real = L.evaluate
    tested = {}

    def fake(model, split_data, **kw):
        if split_data.split == "test":
            tested.update({k: v.clone() for k, v in model.state_dict().items()})
            return real(model, split_data, **kw)
        acc = next(scripted)
        metrics = {M.VAL_LOSS: 1.0, M.VAL_ACC_NUMBER: acc, M.VAL_ACC_TENS: acc, M.VAL_ACC_ONES: acc}
        return Evaluation(metrics, None)

    monkeypatch.setattr(L, "evaluate", fake)
    one_step = trial_data(**{**data.splits, "train": tiny_split("train", 4, 4)})
    L.train(config(epochs=4), one_step, tmp_path)
    got = rows(tmp_path)
    assert [r[M.BEST_EPOCH] for r in got] == [1, 2, 2, 2]
    assert [r[M.BEST_VAL_ACC_NUMBER] for r in got] == [0.2, 0.5, 0.5, 0.5]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["epoch"] == 2 and best["metrics"][M.VAL_ACC_NUMBER] == 0.5
    assert all(torch.equal(tested[k], v) for k, v in best["model"].items())  # test saw best
    assert not all(torch.equal(last["model"][k], v) for k, v in best["model"].items())
    assert json.loads((tmp_path / "test.json").read_text())[M.BEST_EPOCH] == 2


def test_a_short_run_beats_chance_on_val(tmp_path):
    """The whole trial learns: 27 steps from scratch take val acc_number far above 1/6.

    Two epochs gave best val 0.5-0.83 over seeds 42 and 1-4 (12 val sequences; 0.5 is only 3x
    chance); three epochs with 24 val sequences gave 0.75-0.96, hence three.
    """
    data = trial_data(
        train=tiny_split("train", 36, 11),
        val=tiny_split("val", 24, 12),
        test=tiny_split("test", 12, 13),
    )
    test = L.train(config(epochs=3, batch_size=4), data, tmp_path)
    got = rows(tmp_path)
    chance = 1 / len(NUMBERS)
    assert got[-1][M.BEST_VAL_ACC_NUMBER] >= 3 * chance
    assert got[-1][M.TRAIN_LOSS] < got[0][M.TRAIN_LOSS]
    assert test[M.TEST_ACC_NUMBER] >= 2 * chance


def test_output_files_and_reported_keys(straight):
    out, test = straight
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "best.pt",
        "last.pt",
        "test.json",
        "test_predictions.csv",
    } <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert not any(n.startswith(".checkpoint-") for n in names)  # temporary dirs are gone
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r[M.EPOCH] for r in lines] == [1, 2, 3]
    per_epoch = {
        M.EPOCH,
        M.LR,
        M.FRAMES_PER_S,
        M.EPOCH_TIME_S,
        M.BEST_EPOCH,
        M.BEST_VAL_ACC_NUMBER,
        M.N_PARAMS,
        M.GPU_MEM_GB,
        *(M.key(s, m) for s in ("train", "val") for m in M.METRICS),
    }
    tests = {M.key("test", m) for m in M.METRICS}
    assert set(lines[0]) == per_epoch
    assert set(lines[-1]) == per_epoch | tests
    assert {k: lines[-1][k] for k in tests} == test
    assert lines[-1][M.N_PARAMS] == 11740757  # the report's count for this model
    assert lines[-1][M.LR] == pytest.approx(0.0, abs=1e-12)  # cosine ends at zero
    saved = json.loads((out / "test.json").read_text())
    assert {k: saved[k] for k in tests} == test
    record = json.loads((out / "config.json").read_text())
    assert set(record) == {"train", "data", "cache"} and record["cache"] == "tiny-cache"
    assert from_dict(TrainConfig, record["train"]) == config(**ATTENTION)
    assert from_dict(DataConfig, record["data"]) == TINY


def test_checkpoints_round_trip_with_weights_only(straight):
    out, test = straight
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    assert set(last) == {
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
        "epoch",
        "best",
        "history",
        "train",
        "data",
    }
    assert set(best) == {"model", "train", "data", "epoch", "metrics"}
    cfg, data_cfg = CK.configs_of(last, "last.pt")
    assert (cfg, data_cfg) == CK.configs_of(best, "best.pt") and data_cfg == TINY
    assert cfg.model == "attn_bgru_luong" and cfg.lr_scheme == "discriminative"
    assert last["epoch"] == 3 and len(last["history"]) == 3 and last["scaler"] is None
    assert last["best"]["epoch"] == best["epoch"]
    assert {g["name"] for g in last["optimizer"]["param_groups"]} == {
        "backbone",
        "temporal",
        "heads",
    }
    assert {k: best["metrics"][k] for k in test} == test
    model = build_model(cfg.model)
    model.load_state_dict(best["model"])  # strict: the saved weights are the plain module's


def test_tensorboard_holds_the_expected_tags(straight):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = straight
    events = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    expected = {
        "train/loss",
        "val/acc_number",
        "val/acc_tens",
        "train/acc_ones",
        "lr/base",
        "system/frames_per_s",
        "system/epoch_time_s",
        "system/gpu_mem_gb",
        "best/val_acc_number",
        "test/acc_number",
        "test/loss",
        "lr/backbone",
        "lr/temporal",
        "lr/heads",
    }
    assert expected <= set(tags["scalars"])
    assert not any("_" in tag.split("/")[0] for tag in tags["scalars"])  # grouped by section
    assert [e.step for e in events.Scalars("val/loss")] == [1, 2, 3]
    assert [e.step for e in events.Scalars("test/acc_number")] == [3]
    assert {"confusion/test_tens", "confusion/test_ones"} <= set(tags["images"])
    hparams = events.PluginTagToContent("hparams")
    assert set(hparams) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    assert b"test/acc_number" in hparams["_hparams_/experiment"]
    assert b"attn_bgru_luong" in hparams["_hparams_/session_start_info"]


def test_data_problems_are_user_errors(tmp_path, data):
    with pytest.raises(UserError, match="no test split"):
        L.train(config(), trial_data(train=data["train"], val=data["val"]), tmp_path)
    with pytest.raises(UserError, match="the val split is empty"):
        L.train(config(), trial_data(**{**data.splits, "val": tiny_split("val", 0, 1)}), tmp_path)


def test_missing_weights_fail_before_training(tmp_path, data):
    from jersey_ray.models import WeightsError

    with pytest.raises(WeightsError):
        L.train(config(pretrained=str(tmp_path / "missing.pth")), data, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ---------------------------------------------------------------- command line


def test_cli_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    argv = [
        "--model",
        "basic_r18",
        "--cache",
        str(tmp_path / "nowhere"),
        "--pretrained",
        "none",
        "--out",
        str(out),
    ]
    assert CLI.main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--out" in err
    assert CLI.main([*argv[:-2], "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no last.pt" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["lr"], "expected key=value"),
        (["seed=3"], "use --seed"),
        (["lr=1", "lr=2"], "given twice"),
        (["no_such_key=1"], "unknown TrainConfig key"),
        (["size=[32, 16]"], "use --size"),
        (["batch_size=2.5"], "batch_size must be int"),
    ],
)
def test_cli_set_is_strict(tmp_path, capsys, sets, message):
    argv = ["--model", "basic_r18", "--cache", str(tmp_path), "--pretrained", "none"]
    for item in sets:
        argv += ["--set", item]
    assert CLI.main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_set_values_are_typed():
    values = CLI.parse_sets(["lr=3e-4", "optimizer=adamw", "betas=[0.9, 0.99]", "augment=false"])
    assert values == {"lr": 3e-4, "optimizer": "adamw", "betas": [0.9, 0.99], "augment": False}


def test_cli_checks_the_model_and_weights_first(tmp_path, capsys):
    argv = ["--model", "no_such_model", "--cache", str(tmp_path), "--out", str(tmp_path / "o")]
    assert CLI.main(argv) == 2
    assert "unknown model id" in capsys.readouterr().err
    argv = [
        "--model",
        "basic_r18",
        "--cache",
        str(tmp_path),
        "--pretrained",
        str(tmp_path / "none.pth"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert CLI.main(argv) == 2
    assert "weights file not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def fake_cache(tmp_path, data, monkeypatch) -> Path:
    """A cache folder whose manifest and splits are stubbed with the tiny data (no Ray)."""
    import jersey_ray.cache.store

    monkeypatch.setattr(
        jersey_ray.cache.store, "read_manifest", lambda cache: {"data": to_dict(TINY)}
    )
    monkeypatch.setattr(
        CLI, "load_data", lambda cache, device: L.TrialData(str(cache), TINY, data.splits)
    )
    return tmp_path / "cache"


def quick_run(out: Path, *flags: str) -> list[str]:
    """``train``'s command line for a small from-scratch CPU run into ``out``, plus ``flags``."""
    basics = ["--model", "basic_r18", "--pretrained", "none", "--device", "cpu"]
    return [*basics, "--out", str(out), "--set", "batch_size=4", *flags]


def test_cli_run_with_an_injected_fault_then_resume(tmp_path, fake_cache, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = quick_run(out, "--cache", str(fake_cache), "--epochs", "2")
    monkeypatch.setenv(L.FAIL_ENV, "2")
    with pytest.raises(RuntimeError, match="injected fault"):
        CLI.main(argv)
    assert (out / L.FAULT_MARKER).exists() and len(rows(out)) == 1
    assert capsys.readouterr().out.startswith("epoch 1: train loss")
    assert CLI.main(argv) == 2  # the folder holds a run now
    assert "pass --resume" in capsys.readouterr().err
    assert CLI.main([*argv, "--resume"]) == 0  # the retry does not fail again
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("epoch 2: train loss") and len(printed) == 2
    assert printed[1].startswith("test (best val epoch): acc_number") and str(out) in printed[1]
    assert [r[M.EPOCH] for r in rows(out)] == [1, 2]
    record = json.loads((out / "config.json").read_text())
    assert record["cache"] == str(fake_cache) and from_dict(DataConfig, record["data"]) == TINY
    assert from_dict(TrainConfig, record["train"]).epochs == 2
    assert CLI.main([*argv, "--resume"]) == 2
    assert "already finished its 2 epochs" in capsys.readouterr().err


def test_cli_defaults_to_the_protocol_of_the_models_phase(tmp_path):
    def resolved(*flags: str) -> TrainConfig:
        args = CLI.build_parser().parse_args(["--cache", str(tmp_path), *flags])
        return CLI.config_from_args(args)

    assert resolved("--model", "basic_r18").lr_scheme == "uniform"
    for model in ("seq_bgru_mp", "attn_bgru_luong"):
        cfg = resolved("--model", model)
        assert (cfg.lr_scheme, cfg.lr_backbone, cfg.lr_temporal) == ("discriminative", 1e-4, 3e-4)
    assert (
        resolved("--model", "attn_bgru_luong", "--set", "lr_scheme=uniform").lr_scheme == "uniform"
    )


def test_cli_refuses_options_the_cache_fixes(tmp_path, fake_cache, capsys):
    argv = [
        *quick_run(tmp_path / "run", "--cache", str(fake_cache)),
        *("--size", "64x32", "--split-seed", "7", "--numbers", "4"),
    ]
    assert CLI.main(argv) == 2
    err = capsys.readouterr().err
    assert "--size (built with [32, 16])" in err and "--numbers (built with [])" in err
    assert "split-seed" not in err  # the same as the cache's


def test_cli_data_builds_the_cache_sweeps_use(tmp_path, data, monkeypatch, capsys):
    """train --data and the sweep name one cache for the same data settings."""
    import argparse

    import jersey_ray.cache.build
    from jersey_ray.cache.plan import cache_location
    from jersey_ray.sweep import settings as sweep_settings
    from jersey_ray.sweep.__main__ import build_parser as sweep_parser
    from jersey_ray.sweep.__main__ import options_from_args

    built = []

    def build(data_cfg, out=None, **kw):
        built.append(data_cfg)
        return jersey_ray.cache.build.CacheResult(cache_location(data_cfg), {}, False)

    monkeypatch.setattr(jersey_ray.cache.build, "build_cache", build)
    monkeypatch.setattr(
        CLI, "load_data", lambda cache, device: L.TrialData(cache, TINY, data.splits)
    )
    root = tmp_path / "root"
    data_flags = ["--data", str(root), "--size", "32x16", "--max-frames", "4", "--numbers", "4,48"]
    assert CLI.main(quick_run(tmp_path / "run", *data_flags, "--epochs", "1")) == 0
    [train_data] = built
    assert train_data == DataConfig(root=str(root), size=SIZE, max_frames=4, numbers=("4", "48"))
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["cache"] == cache_location(train_data)
    assert "files in" in capsys.readouterr().out
    args: argparse.Namespace = sweep_parser().parse_args(["phaseB", *data_flags])
    opts = options_from_args(args)
    sweep = sweep_settings.resolve(sweep_settings.load_sweep("phaseB"), sweep_settings.FULL, opts)
    assert cache_location(sweep.data) == cache_location(train_data)


def test_fault_knob_rejects_a_bad_value(tmp_path, monkeypatch):
    monkeypatch.setenv(L.FAIL_ENV, "two")
    with pytest.raises(UserError, match=L.FAIL_ENV):
        L.maybe_inject_fault(1, tmp_path)
    monkeypatch.setenv(L.FAIL_ENV, "3")
    L.maybe_inject_fault(2, tmp_path)  # not yet
    assert not (tmp_path / L.FAULT_MARKER).exists()


def test_bench_train_runs_the_trainer_loop_and_the_ceiling(tmp_path, data, monkeypatch, capsys):
    from jersey_ray.bench import train as bench

    monkeypatch.setattr(bench, "load_split", lambda cache, split, device: data[split])
    out = tmp_path / "bench.json"
    argv = [
        "--model",
        "seq_ugru_fs",
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--cache",
        str(tmp_path),
        "--json",
        str(out),
    ]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["size"] == list(SIZE) and result["precision"] == "fp32"
    assert result["trial_frames_per_s"] > 0 and result["ceiling_frames_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["trial_frames_per_s"] / result["ceiling_frames_per_s"]
    )
    assert "bare step" in capsys.readouterr().out
    assert bench.main([*argv, "--size", "64x32"]) == 2  # the cache fixes the size


def test_a_heldout_cache_is_tested_on_its_unseen_numbers_too(tmp_path, data):
    with_unseen = trial_data(**data.splits, unseen=tiny_split("unseen", 5, 9))
    test = L.train(config(epochs=1), with_unseen, tmp_path)
    assert {M.UNSEEN_ACC_NUMBER, M.UNSEEN_ACC_TENS, M.UNSEEN_ACC_ONES} <= set(test)
    assert set(rows(tmp_path)[-1]) >= {M.UNSEEN_ACC_NUMBER, M.TEST_ACC_NUMBER}
    lines = (tmp_path / "unseen_predictions.csv").read_text().splitlines()
    assert len(lines) == 1 + 5 and lines[0].startswith("seq_id,track,jersey")
    right = sum(int(line.rsplit(",", 1)[1]) for line in lines[1:])
    assert right / 5 == pytest.approx(test[M.UNSEEN_ACC_NUMBER])


def test_resuming_on_another_kind_of_device_reseeds_the_augmentation(caplog):
    generator = torch.Generator().manual_seed(42 + L.AUG_SEED_OFFSET)
    cuda_state = {"augment": torch.zeros(16, dtype=torch.uint8), "augment_device": "cuda"}
    with caplog.at_level("WARNING"):
        CK._restore_augment(generator, cuda_state, epoch=3)
    assert "augmentation draws continue from a new seed" in caplog.text
    again = torch.Generator().manual_seed(42 + L.AUG_SEED_OFFSET)
    CK._restore_augment(again, cuda_state, epoch=3)
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=again))
    same = torch.Generator().manual_seed(5)
    saved = {"augment": same.get_state(), "augment_device": "cpu"}
    expected = torch.rand(3, generator=same)
    CK._restore_augment(same, saved, epoch=3)
    assert torch.equal(torch.rand(3, generator=same), expected)  # same device: where it stopped
