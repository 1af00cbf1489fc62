"""Seed-aware ASHA: decisions on scripted and simulated result streams (every arrival order,
low concurrency, failures, restore), and small real Tune runs."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from asha_sim import CONTINUE, FIXED, PAUSE, STOP, FakeController, Sim, Watch, check_outcome
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler

from jersey_ray import metrics
from jersey_ray.errors import UserError
from jersey_ray.sweep.asha import (
    PRUNED_FILE,
    STATE_FILE,
    SeedAwareASHA,
    config_key,
    rung_epochs,
    searched_params,
)


def make(
    max_t: int = 10, grace: int = 2, rf: float = 3, **kw
) -> tuple[SeedAwareASHA, FakeController]:
    sched = SeedAwareASHA(max_t=max_t, grace_period=grace, reduction_factor=rf, **kw)
    return sched, FakeController(sched)


def run_to(ctl: FakeController, trial: Trial, epoch: int, acc: float) -> str:
    """Report epochs 1..epoch with ``acc`` until the scheduler says other than CONTINUE."""
    decision = CONTINUE
    for e in range(1, epoch + 1):
        decision = ctl.report(trial, e, acc)
        if decision != CONTINUE:
            break
    return decision


def test_rungs_below_max_t():
    assert rung_epochs(2, 3, 10) == [2, 6]
    assert rung_epochs(1, 2, 8) == [1, 2, 4]
    assert rung_epochs(5, 3, 5) == []
    assert SeedAwareASHA(max_t=20, grace_period=2, reduction_factor=3).rungs == [2, 6, 18]


def test_config_key_ignores_seed_and_order():
    a = config_key({"model": "basic_r18", "lr": 0.001, "weight_decay": 0.0001, "seed": 42})
    b = config_key({"seed": 7, "weight_decay": 0.0001, "model": "basic_r18", "lr": 0.001})
    assert a == b == "lr=0.001,model=basic_r18,weight_decay=0.0001"
    assert config_key({"model": "attn_bgru_luong", "seed": 1}) == "model=attn_bgru_luong"
    assert config_key({"model": "m", "lr": 0.01, "seed": 1}) != a
    assert config_key({"model": "m", "opt": {"lr": 0.1}}) == "model=m,opt/lr=0.1"


def test_groups_come_from_the_searched_params():
    searched = Trial(
        "__fake",
        config={"a": 1, "seed": 2, **FIXED},
        evaluated_params={"a": 1, "seed": 2},
        stub=True,
    )
    assert config_key(searched_params(searched)) == "a=1"
    nothing_searched = Trial("__fake", config={"a": 1, "seed": 2}, stub=True)
    assert config_key(searched_params(nothing_searched)) == "a=1"


def test_early_seeds_wait_and_the_config_is_judged_once_on_all_seeds():
    sched, ctl = make()
    good = [ctl.add(s, "good") for s in range(3)]
    bad = [ctl.add(s, "bad") for s in range(3)]
    assert [run_to(ctl, t, 2, 0.8) for t in good] == [PAUSE, PAUSE, CONTINUE]
    assert [t.status for t in good] == [Trial.PAUSED, Trial.PAUSED, Trial.RUNNING]
    # bad seed 2 alone beats the good config, bad seed 0 alone loses: neither is judged
    assert run_to(ctl, bad[2], 2, 0.9) == PAUSE
    assert run_to(ctl, bad[0], 2, 0.2) == PAUSE
    assert "model=bad" not in sched.decisions[2] and not sched.pruned
    # the last seed completes the rung: mean 0.55 < 0.8, every seed stops, the good one too
    assert run_to(ctl, bad[1], 2, 0.55) == STOP
    assert all(t.status == Trial.TERMINATED for t in bad)
    assert sched.pruned == {
        "model=bad": {
            "epoch": 2,
            "rung_acc": pytest.approx(0.55),
            "cutoff": pytest.approx(0.8),
            "seeds": [0, 1, 2],
            "missing": [],
        }
    }
    assert sched.decisions[2]["model=good"]["kept"] and not sched.decisions[2]["model=bad"]["kept"]
    # the good seeds that waited are released, each once
    assert {ctl.start(), ctl.start()} == set(good[:2]) and ctl.start() is None
    assert ctl.report(good[0], 3, 0.8) == CONTINUE


def test_plain_asha_splits_the_seeds_of_a_config():
    """The bias the seed-aware scheduler exists for: same stream, plain ASHA."""
    asha = AsyncHyperBandScheduler(
        time_attr=metrics.EPOCH,
        metric=metrics.VAL_ACC_NUMBER,
        mode="max",
        max_t=10,
        grace_period=2,
        reduction_factor=3,
    )
    ctl = FakeController(asha)
    good = [ctl.add(s, "good") for s in range(3)]
    mixed = [ctl.add(s, "mixed") for s in range(3)]
    for t in good:
        run_to(ctl, t, 2, 0.8)
    decisions = [run_to(ctl, t, 2, acc) for t, acc in zip(mixed, (0.85, 0.85, 0.5), strict=True)]
    assert decisions == [CONTINUE, CONTINUE, STOP]


def test_good_config_with_one_bad_seed_is_kept():
    sched, ctl = make()
    good = [ctl.add(s, "good") for s in range(3)]
    bad = [ctl.add(s, "bad") for s in range(3)]
    mixed = [ctl.add(s, "mixed") for s in range(3)]
    for t in good:
        run_to(ctl, t, 2, 0.8)
    assert [run_to(ctl, t, 2, 0.3) for t in bad] == [PAUSE, PAUSE, STOP]
    # judged at rung 2: good 0.8, bad 0.3 -> cutoff at the 2/3 quantile = 0.633
    decisions = [run_to(ctl, t, 2, acc) for t, acc in zip(mixed, (0.85, 0.85, 0.5), strict=True)]
    assert decisions == [PAUSE, PAUSE, CONTINUE]  # mean 0.733 >= 0.633
    assert set(sched.pruned) == {"model=bad"}
    assert sched.decisions[2]["model=mixed"]["cutoff"] == pytest.approx(0.6333, abs=1e-4)
    assert sched.recorded[2]["model=mixed"] == {"0": 0.85, "1": 0.85, "2": 0.5}
    assert all(t.status == Trial.TERMINATED for t in bad)


def test_first_config_at_a_rung_is_kept_and_later_rungs_prune():
    sched, ctl = make(max_t=10)
    hi = [ctl.add(s, "hi") for s in range(2)]
    lo = [ctl.add(s, "lo") for s in range(2)]
    assert [run_to(ctl, t, 5, 0.5) for t in lo] == [PAUSE, CONTINUE]  # first judged at 2
    assert ctl.start() is lo[0]
    assert all(ctl.report(lo[0], e, 0.5) == CONTINUE for e in (3, 4, 5))
    assert [run_to(ctl, t, 6, 0.9) for t in hi] == [PAUSE, PAUSE]  # waits at 2, then at 6
    assert ctl.start() is hi[0] and ctl.start() is None  # hi[1] waits for it at 6
    assert all(ctl.report(hi[0], e, 0.9) == CONTINUE for e in (3, 4, 5, 6))
    assert ctl.report(lo[0], 6, 0.5) == PAUSE
    assert ctl.report(lo[1], 6, 0.99) == STOP  # mean 0.745 < 0.9
    assert sched.pruned["model=lo"] == {
        "epoch": 6, "rung_acc": pytest.approx(0.745), "cutoff": pytest.approx(0.9),
        "seeds": [0, 1], "missing": [],
    }  # fmt: skip
    assert lo[0].status == Trial.TERMINATED
    assert ctl.start() is hi[1]
    for t in hi:  # past the last rung nobody is judged
        assert all(ctl.report(t, e, 0.9) == CONTINUE for e in range(7, 10))


def test_results_without_the_metric_are_ignored():
    sched, ctl = make()
    t = ctl.add(0)
    t.set_status(Trial.RUNNING)
    assert sched.on_trial_result(ctl, t, {metrics.EPOCH: 2}) == CONTINUE
    assert sched.recorded[2] == {}


def test_a_seed_that_ends_at_a_rung_is_not_judged_there():
    """A model with fewer epochs than max_t: its last epoch may be a rung; its finished seeds
    are never judged, so they are never finished seeds of a pruned configuration."""
    sched, ctl = make(max_t=10)
    short = [ctl.add(s, "short") for s in range(2)]
    long = [ctl.add(s, "long") for s in range(2)]
    for t in (*short, *long):
        run_to(ctl, t, 2, 0.9 if t in long else 0.1)
    while ctl.start() is not None:
        pass
    assert "model=short" in sched.decisions[2] and "model=long" in sched.decisions[2]
    for t in short:
        assert all(ctl.report(t, e, 0.1) == CONTINUE for e in range(3, 6))
        assert ctl.report(t, 6, 0.1, final=True) == CONTINUE
    assert "model=short" not in sched.decisions[6] and "model=short" not in sched.pruned


def test_trial_added_after_pruning_never_runs():
    sched, ctl = make()
    run_to(ctl, ctl.add(0, "good"), 2, 0.8)
    run_to(ctl, ctl.add(0, "bad"), 2, 0.1)
    late_bad = ctl.add(1, "bad")
    late_good = ctl.add(1, "good")
    assert sched.choose_trial_to_run(ctl) is late_good
    assert late_bad.status == Trial.TERMINATED


def test_search_properties_and_bad_arguments():
    sched, _ = make()
    assert sched.set_search_properties(None, None)
    assert sched.set_search_properties(metrics.VAL_ACC_NUMBER, "max")
    assert sched.set_search_properties(metrics.TUNE_METRIC, "max")  # TuneConfig's, for ranking
    assert not sched.set_search_properties(metrics.VAL_LOSS, "min")
    with pytest.raises(UserError, match="grace_period"):
        SeedAwareASHA(max_t=10, grace_period=0)
    with pytest.raises(UserError, match="reduction_factor"):
        SeedAwareASHA(max_t=10, reduction_factor=1)


# -- the issue's stub scenario, every arrival order, concurrency, failures ------------------

LRS = {"1e-05": 0.80, "0.003": 0.70, "0.03": 0.75}  # the first seeds' rung values (issue 13)


def test_issue_scenario_leader_waits_and_one_config_finishes_whole():
    sched, ctl = make(max_t=4, grace=1, rf=2)
    first = {lr: ctl.add(0, "basic_mv3s", lr=lr) for lr in LRS}
    second = {lr: ctl.add(1, "basic_mv3s", lr=lr) for lr in LRS}
    for lr, acc in LRS.items():  # the first seeds reach rung 1 long before their siblings
        assert ctl.report(first[lr], 1, acc) == PAUSE
    assert all(d == {} for d in sched.decisions.values()) and not sched.pruned
    assert ctl.report(second["1e-05"], 1, 0.60) == CONTINUE  # leader: mean 0.70, judged first
    assert first["1e-05"].status == Trial.PAUSED  # it waited for its sibling, not ran on alone
    acc = {("1e-05", 1): 0.60, ("0.003", 1): 0.72, ("0.03", 1): 0.50}
    sim = Sim(ctl, lambda t, e: acc.get((t.config["lr"], t.config["seed"]), LRS[t.config["lr"]]),
              epochs=4, watch=Watch(2))  # fmt: skip
    sim.progress = {t.trial_id: 1 for t in (*first.values(), second["1e-05"])}
    sim.run()
    check_outcome(sched, ctl, sim.finished)
    rung1 = sched.decisions[1]
    assert rung1["lr=0.003,model=basic_mv3s"]["cutoff"] == pytest.approx(0.70)  # 0.71 kept
    # 0.03: mean 0.625 < median(0.70, 0.71); pruned on both seeds, neither ran past epoch 1
    assert sched.pruned["lr=0.03,model=basic_mv3s"] == {
        "epoch": 1, "rung_acc": pytest.approx(0.625), "cutoff": pytest.approx(0.705),
        "seeds": [0, 1], "missing": [],
    }  # fmt: skip
    assert all(sim.progress[t.trial_id] == 1 for t in (first["0.03"], second["0.03"]))
    assert len(sim.finished) == 2 * (3 - len(sched.pruned))


MEANS = {"a": 0.8, "b": 0.6, "c": 0.75}  # no rung mean ties a cutoff


def _acc(trial: Trial, epoch: int) -> float:
    return MEANS[trial.config["model"]] + 0.02 * (trial.config["seed"] - 0.5) + 0.001 * epoch


def test_seeds_arriving_in_every_order():
    for order in itertools.permutations(range(6)):
        sched, ctl = make(max_t=4, grace=1, rf=2)
        trials = [ctl.add(s, m) for m in MEANS for s in range(2)]
        position = {trials[i].trial_id: p for p, i in enumerate(order)}
        sim = Sim(ctl, _acc, 4, key=lambda t, done: (done, position[t.trial_id]), watch=Watch(2))
        sim.run()
        check_outcome(sched, ctl, sim.finished)
        last_seed = {}
        for i in order:
            last_seed.pop(ctl.group(trials[i]), None)  # keep insertion at the last arrival
            last_seed[ctl.group(trials[i])] = i
        assert list(sched.decisions[1]) == list(last_seed), order


@pytest.mark.parametrize("max_concurrent", [1, 2])
def test_low_concurrency_runs_seeds_together_without_deadlock(max_concurrent):
    sched, ctl = make(max_t=6, grace=1, rf=2, max_concurrent=max_concurrent)
    for s in range(3):  # the grid's order: the seed varies slowest
        for m in MEANS:
            ctl.add(s, m)
    sim = Sim(ctl, _acc, 6, watch=Watch(2)).run()
    assert sim.max_running == max_concurrent
    check_outcome(sched, ctl, sim.finished)
    first_starts = list(dict.fromkeys(t.trial_id for t in ctl.starts))
    groups = [ctl.group(next(t for t in ctl.trials if t.trial_id == i)) for i in first_starts]
    blocks = [g for g, _ in itertools.groupby(groups)]
    assert len(blocks) == len(set(blocks)) == 3, f"a config's seeds start together: {groups}"


def test_failed_seed_is_named_missing_and_a_retry_is_waited_for():
    sched, ctl = make(max_t=6, grace=2, rf=3)
    a = [ctl.add(s, "a") for s in range(3)]
    b = [ctl.add(s, "b") for s in range(3)]
    for t in a:
        run_to(ctl, t, 2, 0.8)
    assert run_to(ctl, b[0], 2, 0.5) == PAUSE
    ctl.report(b[1], 1, 0.5)
    ctl.fail(b[1], retry=True)  # requeued: still a seed of b
    assert run_to(ctl, b[2], 2, 0.5) == PAUSE
    started = list(iter(ctl.start, None))  # the waiting "a" seeds, and the retry
    assert b[1] in started and "model=b" not in sched.decisions[2]
    assert ctl.report(b[1], 2, 0.9) == STOP  # the retry went on from its checkpoint
    assert sched.pruned["model=b"]["seeds"] == [0, 1, 2] and not sched.pruned["model=b"]["missing"]

    sched, ctl = make(max_t=6, grace=2, rf=3)
    a = [ctl.add(s, "a") for s in range(3)]
    b = [ctl.add(s, "b") for s in range(3)]
    for t in a:
        run_to(ctl, t, 2, 0.8)
    for t in (b[0], b[2]):
        assert run_to(ctl, t, 2, 0.5) == PAUSE
    ctl.report(b[1], 1, 0.5)
    ctl.fail(b[1])  # for good, after its retries
    sched.choose_trial_to_run(ctl)
    assert sched.pruned["model=b"] == {
        "epoch": 2, "rung_acc": 0.5, "cutoff": pytest.approx(0.8), "seeds": [0, 2],
        "missing": [1],
    }  # fmt: skip
    assert [t.status for t in b] == [Trial.TERMINATED, Trial.ERROR, Trial.TERMINATED]


# -- trial folders, state files, restore ----------------------------------------------------


def test_parked_trials_have_folders_and_never_break_the_reporter(tmp_path):
    sched = SeedAwareASHA(max_t=4, grace_period=1, reduction_factor=2, max_concurrent=1)
    ctl = FakeController(sched, storage_root=tmp_path)
    trials = [ctl.add(s, m) for s in range(2) for m in ("a", "b")]
    with pytest.raises(RuntimeError, match="trial_dir_name"):
        assert trials[0].error_file is None  # what crashed Tune's reporter for never-started seeds
    first = ctl.start()
    assert first is trials[0] and ctl.start() is None  # max_concurrent=1
    assert [t.status for t in trials[1:]] == [Trial.PAUSED] * 3
    assert all(t.error_file is None and t.local_path for t in trials)
    assert all(not ctl.start() for _ in range(3))


def _waiting(sched: SeedAwareASHA, ctl: FakeController, sim: Sim) -> list[Trial]:
    """Seeds paused at a rung whose configuration is not judged there yet."""
    return [
        t
        for t in ctl.trials
        if t.trial_id in ctl.held and ctl.group(t) not in sched.decisions[sim.progress[t.trial_id]]
    ]


def _interrupted(tmp_path) -> tuple[SeedAwareASHA, FakeController, Sim]:
    """A run stopped after its first pruning, with a seed waiting at a rung."""
    sched = SeedAwareASHA(max_t=6, grace_period=1, reduction_factor=2)
    ctl = FakeController(sched, storage_root=tmp_path)
    for s in range(2):
        for m in MEANS:
            ctl.add(s, m)
    sim = Sim(ctl, _acc, 6, watch=Watch(2))
    sim.run(until=lambda sim: bool(sched.pruned and _waiting(sched, ctl, sim)))
    return sched, ctl, sim


def test_restore_in_the_middle_keeps_every_decision(tmp_path):
    sched, ctl, sim = _interrupted(tmp_path)
    staging = tmp_path / "session" / "driver_artifacts"
    assert json.loads((staging / PRUNED_FILE).read_text()) == sched.pruned
    before = json.loads((staging / STATE_FILE).read_text())
    waiting = _waiting(sched, ctl, sim)
    assert waiting and sim.finished == []

    # Tuner.restore: the scheduler from tuner.pkl (empty), trials re-added, unfinished ones PENDING
    restored = pickle.loads(
        pickle.dumps(SeedAwareASHA(max_t=6, grace_period=1, reduction_factor=2))
    )
    ctl2 = FakeController(restored, storage_root=tmp_path)
    for t in ctl.trials:
        if t.status != Trial.TERMINATED:
            t.set_status(Trial.PENDING)
        ctl2.readd(t)
    assert restored.state() == before
    released = []
    while (t := ctl2.start()) is not None:
        released.append(t)
    assert released and not set(released) & set(waiting), "a seed waiting at a rung was released"
    ctl2.held = {t.trial_id for t in waiting}
    resumed = Sim(ctl2, _acc, 6, watch=sim.watch)  # the watch fails on any changed decision
    resumed.progress = sim.progress
    resumed.run()
    check_outcome(restored, ctl2, resumed.finished)
    assert restored.pruned.items() >= sched.pruned.items()


def test_state_files_and_their_errors(tmp_path):
    sched, _, _ = _interrupted(tmp_path)
    again = pickle.loads(pickle.dumps(sched))
    assert again.state() == sched.state() and again._trials == {}
    sched.save(str(tmp_path / "state.json"))
    fresh = SeedAwareASHA(max_t=6, grace_period=1, reduction_factor=2)
    fresh.restore(str(tmp_path / "state.json"))
    assert fresh.state() == sched.state()
    with pytest.raises(UserError, match="same --grace-period"):
        SeedAwareASHA(max_t=6, grace_period=2, reduction_factor=2).restore(
            str(tmp_path / "state.json")
        )
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        fresh.restore(str(tmp_path / "bad.json"))
    (tmp_path / "v1.json").write_text(json.dumps({"version": 1, "rungs": [1, 2, 4]}))
    with pytest.raises(UserError, match="another version"):
        fresh.restore(str(tmp_path / "v1.json"))
    path = sched.write_pruned(tmp_path / "out" / "pruned.json")
    record = json.loads(path.read_text())
    assert record == sched.pruned and record
    assert all(
        set(r) == {"epoch", "rung_acc", "cutoff", "seeds", "missing"} for r in record.values()
    )


# -- real Tune runs -------------------------------------------------------------------------

MAX_T = 8  # rungs 2 and 6 with grace 2, rf 3
EPOCH_S = {"good": 0.25, "bad": 0.1}
ACC = {"good": 0.8, "bad": 0.2}
TIME_BUDGET_S = 150  # only a guard against a trial left waiting
# Plain strings: referencing jersey_ray.metrics in the trainable would import torch per worker.
EPOCH, VAL_ACC = metrics.EPOCH, metrics.VAL_ACC_NUMBER


def _wait_for(folder: Path, names: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not all((folder / n).exists() for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {names} in {folder}")
        time.sleep(0.05)


def _fake_training(config: dict, sync_dir: str, max_t: int) -> None:
    """Resumes from its checkpoint like the real trainable. A "bad" seed reports epoch 2 only
    once every "good" seed reported it, so "good" is judged first there whatever the start
    order; each epoch's wall-clock interval goes to intervals.jsonl."""
    model, seed, sync = config["model"], config["seed"], Path(sync_dir)
    start = 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as d:
            start = json.loads(Path(d, "state.json").read_text())["epoch"]
    for epoch in range(start + 1, max_t + 1):
        t0 = time.time()
        time.sleep(EPOCH_S[model])
        if model == "bad" and epoch == 2:
            _wait_for(sync, [f"good-{s}-2" for s in range(3)])
            time.sleep(1.0)  # let the driver judge "good" first
        (sync / f"{model}-{seed}-{epoch}").touch()
        with open(sync / "intervals.jsonl", "a") as f:
            f.write(json.dumps({"trial": f"{model}-{seed}", "t0": t0, "t1": time.time()}) + "\n")
        with tempfile.TemporaryDirectory() as d:
            Path(d, "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report(
                {EPOCH: epoch, VAL_ACC: ACC[model] + 0.001 * seed, "resumed_from": start},
                checkpoint=tune.Checkpoint.from_directory(d),
            )


class Reports(tune.Callback):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], list[dict]] = {}
        self.end: dict[tuple[str, int], str] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = (trial.config["model"], trial.config["seed"])
        self.rows.setdefault(key, []).append({k: result[k] for k in (EPOCH, "resumed_from")})

    def on_experiment_end(self, trials, **info):
        self.end = {(t.config["model"], t.config["seed"]): t.status for t in trials}


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray workers cannot import this test module: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def _tune(storage: Path, sync: Path, seeds: int, max_t: int, max_concurrent: int | None):
    sched = SeedAwareASHA(max_t=max_t, grace_period=2, reduction_factor=3)
    sched.limit_concurrency(max_concurrent)
    reports = Reports()
    trainable = tune.with_resources(
        tune.with_parameters(_fake_training, sync_dir=str(sync), max_t=max_t), {"cpu": 0.5}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={  # Tune's grid order: model varies fastest, the seed slowest
            "model": tune.grid_search(["good", "bad"]),
            "seed": tune.grid_search(list(range(seeds))),
            **FIXED,  # fixed params stay out of the config key
        },
        tune_config=tune.TuneConfig(scheduler=sched, time_budget_s=TIME_BUDGET_S),
        run_config=tune.RunConfig(
            name="asha", storage_path=str(storage), callbacks=[reports], verbose=1
        ),
    )
    start = time.monotonic()
    tuner.fit()
    return SimpleNamespace(
        sched=sched,
        rows=reports.rows,
        end=reports.end,
        seconds=time.monotonic() - start,
        path=storage / "asha",
        trainable=trainable,
        intervals=[json.loads(x) for x in (sync / "intervals.jsonl").read_text().splitlines()],
    )


@pytest.fixture(scope="module")
def real_run(ray_local, tmp_path_factory):
    return _tune(tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("sync"), 3, MAX_T, None)


@pytest.mark.slow
def test_real_run_pauses_seeds_at_rungs_and_prunes_the_whole_config(real_run):
    assert real_run.seconds < TIME_BUDGET_S - 5, "hit the time budget: a trial was left waiting"
    assert set(real_run.end.values()) == {Trial.TERMINATED}
    epochs = {k: [r[EPOCH] for r in rows] for k, rows in real_run.rows.items()}
    for seed in range(3):  # paused and resumed from its checkpoint: every epoch once
        assert epochs[("good", seed)] == list(range(1, MAX_T + 1))
        assert epochs[("bad", seed)] == [1, 2], "a pruned seed ran past its rung"
    resumes = {r["resumed_from"] for rows in real_run.rows.values() for r in rows}
    assert resumes == {0, 2, 6}, "the seeds that waited at rungs 2 and 6 went on from there"
    assert list(real_run.sched.decisions[2]) == ["model=good", "model=bad"]
    assert real_run.sched.pruned == {
        "model=bad": {
            "epoch": 2, "rung_acc": pytest.approx(0.201), "cutoff": pytest.approx(0.801),
            "seeds": [0, 1, 2], "missing": [],
        }
    }  # fmt: skip


@pytest.mark.slow
def test_real_run_state_reaches_the_run_folder_and_survives_restore(real_run):
    assert json.loads((real_run.path / PRUNED_FILE).read_text()) == real_run.sched.pruned
    restored = tune.Tuner.restore(str(real_run.path), trainable=real_run.trainable)
    restored.fit()  # every trial is finished: it only re-adds them, loading the state
    sched = restored._local_tuner._tune_config.scheduler  # no public accessor in Ray 2.60
    assert sched is not real_run.sched
    assert sched.state() == real_run.sched.state()
    # the restored trials still carry their searched params, so they map to the same configs
    assert {group for group, _ in sched._members.values()} == {"model=good", "model=bad"}


@pytest.mark.slow
def test_real_run_one_at_a_time_with_more_seeds_than_slots(ray_local, tmp_path):
    """The issue's crash: with max_concurrent 1, seeds that never started were stopped without
    a trial folder and Tune's reporter raised. Here they wait parked, nothing overlaps."""
    run = _tune(tmp_path / "runs", tmp_path, seeds=3, max_t=4, max_concurrent=1)
    assert run.seconds < TIME_BUDGET_S - 5
    assert set(run.end.values()) == {Trial.TERMINATED}
    spans = sorted((x["t0"], x["t1"], x["trial"]) for x in run.intervals)
    for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
        assert a == b or end <= begin, f"{a} and {b} ran at the same time"
    assert set(run.sched.pruned) == {"model=bad"} and run.sched.pruned["model=bad"]["seeds"] == [
        0,
        1,
        2,
    ]
    assert all(run.rows[("good", s)][-1][EPOCH] == 4 for s in range(3))


SWEEP_FILE = """
from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="asha_tiny", phase="asha_tiny", models=("basic_sv2",), seeds=(1, 2),
    axes={"lr": (1e-5, 3e-2)}, scheduler="asha", grace_period=1, reduction_factor=2,
)
"""


@pytest.mark.slow
def test_sweep_cli_one_at_a_time_ends_cleanly_with_whole_configs(tmp_path):
    """The issue's real run, small: python -m jersey_ray.sweep with an ASHA sweep file and
    --max-concurrent 1 (fewer slots than seeds), on tiny synthetic data."""
    from jersey_ray.data import synth

    root = tmp_path / "data"
    synth.generate(root, sequences=48, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    (tmp_path / "asha_tiny.py").write_text(SWEEP_FILE)
    args = [
        sys.executable, "-m", "jersey_ray.sweep", str(tmp_path / "asha_tiny.py"), "--data",
        str(root), "--size", "32x16", "--pretrained", "none", "--epochs", "2",
        "--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "tiny",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "trial_dir_name" not in out, out
    exp = tmp_path / "runs" / "tiny"
    pruned = json.loads((exp / PRUNED_FILE).read_text())
    trials: dict[str, list[list[dict]]] = {}
    for params in exp.glob("*/params.json"):
        p = json.loads(params.read_text())
        rows = [json.loads(x) for x in (params.parent / "result.json").read_text().splitlines()]
        assert [r[EPOCH] for r in rows] == list(range(1, len(rows) + 1)), "paused, resumed once"
        trials.setdefault(config_key({"model": p["model"], "lr": p["lr"]}), []).append(rows)
    assert len(trials) == 2 and all(len(seeds) == 2 for seeds in trials.values())
    for key, record in pruned.items():
        assert record["epoch"] == 1 and record["seeds"] == [1, 2] and not record["missing"]
        assert all(rows[-1][EPOCH] == 1 for rows in trials[key]), "judged on both seeds"
    done = {k for k, runs in trials.items() if all(metrics.TEST_ACC_NUMBER in r[-1] for r in runs)}
    assert done and done == set(trials) - set(pruned)
    summary = json.loads((tmp_path / "results" / "tiny" / "summary.json").read_text())
    for record in summary["models"]:
        assert record["n_finished"] == (0 if record["pruned"] else 2), record


# -- an honest controller: PAUSE waits for the checkpoint, retries wait for a release ---------


def test_a_pause_holds_its_slot_until_the_checkpoint_is_saved():
    _, ctl = make(max_t=4, grace=1, rf=2, max_concurrent=1)
    ctl.defer_saves = True
    a = [ctl.add(s, "a") for s in range(2)]
    assert ctl.start() is a[0] and ctl.report(a[0], 1, 0.8) == PAUSE
    assert a[0].status == Trial.RUNNING, "Tune pauses only once the checkpoint is saved"
    assert ctl.start() is None, "the pausing seed still holds the only slot"
    ctl.saved(a[0])
    assert a[0].status == Trial.PAUSED
    assert ctl.start() is a[1] and ctl.report(a[1], 1, 0.8) == CONTINUE
    with pytest.raises(AssertionError, match="while waiting"):
        ctl.report(a[0], 2, 0.8)  # the fake refuses what Tune cannot do: released, not started


def test_a_config_pruned_while_a_seed_saves_stops_that_seed_once_paused():
    sched, ctl = make(max_t=4, grace=1, rf=2)
    ctl.defer_saves = True
    good = [ctl.add(s, "good") for s in range(2)]
    bad = [ctl.add(s, "bad") for s in range(2)]
    for t in good:
        run_to(ctl, t, 1, 0.8)
        ctl.saved(t)
    assert ctl.report(bad[0], 1, 0.2) == PAUSE  # its save is pending: still RUNNING
    assert ctl.report(bad[1], 1, 0.2) == STOP
    assert "model=bad" in sched.pruned and bad[0].status == Trial.RUNNING
    ctl.saved(bad[0])
    assert bad[0].status == Trial.PAUSED
    started = list(iter(ctl.start, None))
    assert bad[0] not in started and bad[0].status == Trial.TERMINATED
    with pytest.raises(AssertionError, match="after it stopped"):
        ctl.report(bad[0], 2, 0.2)


def test_a_retried_seed_reports_only_once_the_scheduler_releases_it():
    _, ctl = make(max_t=4, grace=1, rf=2)
    a = [ctl.add(s, "a") for s in range(2)]
    assert ctl.report(a[0], 1, 0.8) == PAUSE
    ctl.start()  # nothing to release: a[0] waits at the rung
    a1 = a[1]
    a1.set_status(Trial.RUNNING)
    ctl.fail(a1, retry=True)
    with pytest.raises(AssertionError, match="retry not released"):
        ctl.report(a1, 1, 0.8)
    assert ctl.start() is a1 and ctl.report(a1, 1, 0.8) == CONTINUE
    assert ctl.start() is a[0]


def _flaky_sim(seed: int, save_lag: int, max_concurrent: int | None) -> tuple:
    """Three configs x three seeds, a random arrival order, failures at random epochs: one
    trial fails for good, one is retried, one crashes while its PAUSE is being saved."""
    rng = random.Random(seed)
    sched, ctl = make(max_t=8, grace=1, rf=2, max_concurrent=max_concurrent)
    trials = [ctl.add(s, m) for s in range(3) for m in MEANS]
    position = {t.trial_id: rng.random() for t in trials}
    doomed, retried, crashed = rng.sample(trials, 3)
    sim = Sim(
        ctl, _acc, 8, key=lambda t, done: (position[t.trial_id], done), watch=Watch(2),
        save_lag=save_lag, fail_at={doomed.trial_id: rng.randint(1, 8)},
        retry_at={retried.trial_id: rng.randint(1, 8)}, fail_saving={crashed.trial_id},
    )  # fmt: skip
    return sched, ctl, sim.run(), (doomed, retried, crashed)


@pytest.mark.parametrize("max_concurrent", [None, 1, 2])
def test_failures_and_slow_saves_keep_every_decision_sound(max_concurrent):
    """The invariants (Watch: each decision made once, on every seed, against the complete
    configurations; no seed past an undecided rung; whole configs finish) over many orders."""
    crashed_while_saving = 0
    for seed in range(40):
        sched, ctl, sim, (doomed, _, crashed) = _flaky_sim(seed, seed % 4, max_concurrent)
        check_outcome(sched, ctl, sim.finished)
        if max_concurrent:
            assert sim.max_running <= max_concurrent
        failed = {t for t, _, again in sim.failures if not again}
        assert failed <= {doomed.trial_id}
        assert [t.trial_id for t in ctl.trials if t.status == Trial.ERROR] == sorted(failed)
        assert not ctl.saving and not ctl.requeued, "a pause or a retry never completed"
        for t, epoch, again in sim.failures:
            if again:  # retried from its checkpoint: every epoch reported once, in order
                assert sim.progress.get(t, 0) >= epoch - 1
        crashed_while_saving += any(t == crashed.trial_id for t, _, _ in sim.failures)
    assert crashed_while_saving >= 10, "the crash-while-saving case is exercised"


def test_restore_recovers_a_rung_value_the_state_file_missed(tmp_path):
    """Tune uploads its experiment state and the scheduler's file in one sync, which a killed
    driver can cut between them: the trial's checkpoint (and last result) is at the rung, the
    file has no value there for it. Restored, it is recorded from the last result and the seed
    waits again; without it, the seed's next epoch would be recorded at the rung."""
    sched, ctl, sim = _interrupted(tmp_path)
    waiting = _waiting(sched, ctl, sim)[0]
    group, seed = ctl.group(waiting), str(waiting.config["seed"])
    rung = sim.progress[waiting.trial_id]
    staging = tmp_path / "session" / "driver_artifacts"
    state = json.loads((staging / STATE_FILE).read_text())
    value = state["recorded"][str(rung)][group].pop(seed)
    (staging / STATE_FILE).write_text(json.dumps(state))

    restored = SeedAwareASHA(max_t=6, grace_period=1, reduction_factor=2)
    ctl2 = FakeController(restored, storage_root=tmp_path)
    for t in ctl.trials:
        if t.status != Trial.TERMINATED:
            t.set_status(Trial.PENDING)
        ctl2.readd(t)
    assert restored.recorded[rung][group][seed] == value
    assert restored.state() == sched.state()
    released = list(iter(ctl2.start, None))
    assert waiting not in released, "it waits for its siblings again"
    ctl2.held = {t.trial_id for t in _waiting(sched, ctl, sim)}
    resumed = Sim(ctl2, _acc, 6, watch=sim.watch)
    resumed.progress = sim.progress
    resumed.run()
    check_outcome(restored, ctl2, resumed.finished)
