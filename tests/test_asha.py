"""Seed-aware ASHA: decisions on a synthetic result stream, state, and one small real Tune run."""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

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

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE
FIXED = {"epochs": 10, "lr_scheme": "discriminative"}  # in every config, never in the key


class FakeController:
    """The two controller calls the scheduler makes, with Tune's status bookkeeping."""

    def __init__(self, scheduler: TrialScheduler) -> None:
        self.scheduler = scheduler
        self.trials: list[Trial] = []

    def add(self, model: str, seed: int) -> Trial:
        searched = {"model": model, "seed": seed}
        config = {**searched, **FIXED}
        trial = Trial("__fake", config=config, evaluated_params=searched, stub=True)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)
        return trial

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, {})
        trial.set_status(Trial.TERMINATED)

    def report(self, trial: Trial, epoch: int, acc: float) -> str:
        assert trial.status != Trial.TERMINATED, f"{trial.config} reported after it stopped"
        trial.set_status(Trial.RUNNING)
        result = {metrics.EPOCH: epoch, metrics.VAL_ACC_NUMBER: acc}
        decision = self.scheduler.on_trial_result(self, trial, result)
        if decision == STOP:
            self.stop_trial(trial)
        return decision


def make(max_t: int = 10) -> tuple[SeedAwareASHA, FakeController]:
    sched = SeedAwareASHA(max_t=max_t, grace_period=2, reduction_factor=3)
    return sched, FakeController(sched)


def run_to(ctl: FakeController, trial: Trial, epoch: int, acc: float) -> str:
    """Report epochs 1..epoch with ``acc``; returns the last decision."""
    decision = CONTINUE
    for e in range(1, epoch + 1):
        decision = ctl.report(trial, e, acc)
        if decision == STOP:
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


def test_bad_config_stops_all_seeds_even_its_good_one():
    sched, ctl = make()
    good = [ctl.add("good", s) for s in range(3)]
    bad = [ctl.add("bad", s) for s in range(3)]
    for t in good:
        assert run_to(ctl, t, 2, 0.8) == CONTINUE
    # bad seed 2 is individually better than the good config: the config is kept for now
    assert run_to(ctl, bad[2], 3, 0.9) == CONTINUE
    # bad seed 0 brings the mean to 0.55 < 0.8: the whole config goes, seed 1 never starts
    assert run_to(ctl, bad[0], 2, 0.2) == STOP
    assert bad[1].status == Trial.TERMINATED
    assert bad[0].status == Trial.TERMINATED
    assert bad[2].status == Trial.RUNNING  # running seeds stop at their next result ...
    assert ctl.report(bad[2], 4, 0.95) == STOP  # ... however good it is
    assert sched.pruned == {
        "model=bad": {
            "epoch": 2,
            "rung_acc": pytest.approx(0.55),
            "cutoff": pytest.approx(0.8),
            "seeds": [0, 2],
        }
    }
    assert all(t.status == Trial.RUNNING for t in good)
    assert sched.choose_trial_to_run(ctl) is None


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
    good = [ctl.add("good", s) for s in range(3)]
    mixed = [ctl.add("mixed", s) for s in range(3)]
    for t in good:
        run_to(ctl, t, 2, 0.8)
    decisions = [run_to(ctl, t, 2, acc) for t, acc in zip(mixed, (0.85, 0.85, 0.5), strict=True)]
    assert decisions == [CONTINUE, CONTINUE, STOP]


def test_good_config_with_one_bad_seed_is_kept():
    sched, ctl = make()
    good = [ctl.add("good", s) for s in range(3)]
    bad = [ctl.add("bad", s) for s in range(3)]
    mixed = [ctl.add("mixed", s) for s in range(3)]
    for t in good:
        run_to(ctl, t, 2, 0.8)
    assert run_to(ctl, bad[0], 2, 0.3) == STOP
    # others at rung 2: good 0.8, bad 0.3 -> cutoff at the 2/3 quantile = 0.633
    decisions = [run_to(ctl, t, 2, acc) for t, acc in zip(mixed, (0.85, 0.85, 0.5), strict=True)]
    assert decisions == [CONTINUE, CONTINUE, CONTINUE]  # mean 0.733 >= 0.633
    assert set(sched.pruned) == {"model=bad"}
    assert sched.recorded[2]["model=mixed"] == {"0": 0.85, "1": 0.85, "2": 0.5}
    assert all(t.status == Trial.TERMINATED for t in bad)


def test_decision_uses_the_mean_of_arrived_seeds():
    sched, ctl = make()
    ref = ctl.add("ref", 0)
    a, b, c = (ctl.add("m", s) for s in range(3))
    run_to(ctl, ref, 2, 0.6)
    # each seed alone: 0.7 keeps, 0.45 would be pruned; their mean 0.575 is pruned
    assert run_to(ctl, a, 2, 0.7) == CONTINUE
    assert "model=m" not in sched.pruned
    assert run_to(ctl, b, 2, 0.45) == STOP
    rec = sched.pruned["model=m"]
    assert rec["rung_acc"] == pytest.approx(0.575)
    assert rec["cutoff"] == pytest.approx(0.6)
    assert rec["seeds"] == [0, 1]
    assert c.status == Trial.TERMINATED  # pending seed 2 never ran
    assert ctl.report(a, 3, 0.9) == STOP


def test_first_config_at_a_rung_is_kept_and_later_rungs_prune():
    sched, ctl = make(max_t=10)
    hi = [ctl.add("hi", s) for s in range(2)]
    lo = [ctl.add("lo", s) for s in range(2)]
    for t in lo:  # first at rung 2: nothing to compare with
        assert run_to(ctl, t, 5, 0.5) == CONTINUE
    for t in hi:
        assert run_to(ctl, t, 6, 0.9) == CONTINUE
    assert ctl.report(lo[0], 6, 0.5) == STOP
    assert sched.pruned["model=lo"]["epoch"] == 6
    assert ctl.report(lo[1], 6, 0.99) == STOP  # not recorded: the config is gone
    assert sched.pruned["model=lo"]["seeds"] == [0]
    for t in hi:  # past the last rung nobody is judged
        assert run_to(ctl, t, 10, 0.9) == CONTINUE


def test_results_without_the_metric_are_ignored():
    sched, ctl = make()
    t = ctl.add("m", 0)
    t.set_status(Trial.RUNNING)
    assert sched.on_trial_result(ctl, t, {metrics.EPOCH: 2}) == CONTINUE
    assert sched.recorded[2] == {}


def test_trial_added_after_pruning_never_runs():
    sched, ctl = make()
    ctl.add("good", 0)
    run_to(ctl, ctl.trials[0], 2, 0.8)
    run_to(ctl, ctl.add("bad", 0), 2, 0.1)
    late_bad = ctl.add("bad", 1)
    late_good = ctl.add("good", 1)
    assert sched.choose_trial_to_run(ctl) is late_good
    assert late_bad.status == Trial.TERMINATED


def test_search_properties_and_bad_arguments():
    sched, _ = make()
    assert sched.set_search_properties(None, None)
    assert sched.set_search_properties(metrics.VAL_ACC_NUMBER, "max")
    assert not sched.set_search_properties(metrics.VAL_LOSS, "min")
    with pytest.raises(UserError, match="grace_period"):
        SeedAwareASHA(max_t=10, grace_period=0)
    with pytest.raises(UserError, match="reduction_factor"):
        SeedAwareASHA(max_t=10, reduction_factor=1)


def _pruned_scheduler() -> SeedAwareASHA:
    sched, ctl = make()
    run_to(ctl, ctl.add("good", 0), 2, 0.8)
    run_to(ctl, ctl.add("bad", 0), 2, 0.1)
    return sched


def test_pickle_and_save_restore_keep_state(tmp_path):
    sched = _pruned_scheduler()
    again = pickle.loads(pickle.dumps(sched))
    assert again.pruned == sched.pruned and again.recorded == sched.recorded
    sched.save(str(tmp_path / "state.json"))
    fresh = SeedAwareASHA(max_t=10, grace_period=2, reduction_factor=3)
    fresh.restore(str(tmp_path / "state.json"))
    assert fresh.pruned == sched.pruned and fresh.recorded == sched.recorded
    other_rungs = SeedAwareASHA(max_t=10, grace_period=1, reduction_factor=3)
    with pytest.raises(UserError, match="same --grace-period"):
        other_rungs.restore(str(tmp_path / "state.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        fresh.restore(str(tmp_path / "bad.json"))
    path = sched.write_pruned(tmp_path / "out" / "pruned.json")
    assert json.loads(path.read_text()) == {
        "model=bad": {"epoch": 2, "rung_acc": 0.1, "cutoff": 0.8, "seeds": [0]}
    }


class StagedTrial(SimpleNamespace):
    """A trial with Tune storage: the scheduler finds the experiment staging folder on it."""

    def set_status(self, status: str) -> None:
        self.status = status


def _staged(staging: Path, model: str, seed: int, tid: str) -> StagedTrial:
    return StagedTrial(
        trial_id=tid,
        config={"model": model, "seed": seed, **FIXED},
        evaluated_params={"model": model, "seed": seed},
        status=Trial.PENDING,
        storage=object(),
        local_experiment_path=str(staging),
    )


def test_state_is_written_to_staging_and_reloaded_on_restore(tmp_path):
    sched, ctl = make()
    good, bad0, bad1 = (
        _staged(tmp_path, "good", 0, "g0"),
        _staged(tmp_path, "bad", 0, "b0"),
        _staged(tmp_path, "bad", 1, "b1"),
    )
    for t in (good, bad0, bad1):
        ctl.trials.append(t)
        sched.on_trial_add(ctl, t)
    run_to(ctl, good, 2, 0.8)
    run_to(ctl, bad0, 2, 0.1)
    assert json.loads((tmp_path / PRUNED_FILE).read_text()) == sched.pruned
    assert (tmp_path / STATE_FILE).is_file()

    # Tuner.restore: a fresh scheduler (tuner.pkl holds it empty), trials re-added as PENDING
    restored, ctl2 = make()
    requeued = [_staged(tmp_path, "good", 1, "g1"), _staged(tmp_path, "bad", 1, "b1")]
    for t in requeued:
        ctl2.trials.append(t)
        restored.on_trial_add(ctl2, t)
    assert restored.pruned == sched.pruned
    assert restored.choose_trial_to_run(ctl2) is requeued[0]
    assert requeued[1].status == Trial.TERMINATED


# -- one real Tune run ----------------------------------------------------------------------

MAX_T = 20  # rungs 2, 6 and 18 with grace 2, rf 3
EPOCH_S = {"good": 0.25, "bad": 0.1}
ACC = {"good": 0.8, "bad": 0.2}
TIME_BUDGET_S = 120  # only a guard against a trial left PENDING
# Plain strings: referencing jersey_ray.metrics in the trainable would import torch per worker.
EPOCH, VAL_ACC = metrics.EPOCH, metrics.VAL_ACC_NUMBER


def _wait_for(folder: Path, names: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not all((folder / n).exists() for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {names} in {folder}")
        time.sleep(0.05)


def _fake_training(config: dict, sync_dir: str) -> None:
    """Marker files order the reports: "good" reaches rung 2 first, then bad seeds 0 and 1
    report rung 2 together, so the test does not depend on how fast actors start."""
    model, seed, sync = config["model"], config["seed"], Path(sync_dir)
    for epoch in range(1, MAX_T + 1):
        time.sleep(EPOCH_S[model])
        if model == "bad" and epoch == 2:
            _wait_for(sync, ["good-0-2", "bad-0-1", "bad-1-1"])
            time.sleep(0.5)  # let the driver process good's rung-2 result first
        acc = ACC[model] + 0.001 * seed
        tune.report({EPOCH: epoch, VAL_ACC: acc})
        (sync / f"{model}-{seed}-{epoch}").touch()


class Statuses(tune.Callback):
    def __init__(self) -> None:
        self.end: dict[tuple[str, int], tuple[str, dict]] = {}

    def on_experiment_end(self, trials, **info):
        for t in trials:
            self.end[(t.config["model"], t.config["seed"])] = (t.status, dict(t.last_result))


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray workers cannot import this test module: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def real_run(ray_local, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    sync = tmp_path_factory.mktemp("sync")
    sched = SeedAwareASHA(max_t=MAX_T, grace_period=2, reduction_factor=3)
    statuses = Statuses()
    trainable = tune.with_resources(
        tune.with_parameters(_fake_training, sync_dir=str(sync)), {"cpu": 0.5}
    )
    tuner = tune.Tuner(
        trainable,
        # model varies fastest: good0, bad0, good1, bad1 run (4 slots), good2 and bad2 wait
        param_space={
            "model": tune.grid_search(["good", "bad"]),
            "seed": tune.grid_search([0, 1, 2]),
            **FIXED,  # fixed params stay out of the config key
        },
        tune_config=tune.TuneConfig(scheduler=sched, time_budget_s=TIME_BUDGET_S),
        run_config=tune.RunConfig(
            name="asha", storage_path=str(storage), callbacks=[statuses], verbose=0
        ),
    )
    start = time.monotonic()
    tuner.fit()
    return SimpleNamespace(
        sched=sched,
        end=statuses.end,
        seconds=time.monotonic() - start,
        path=storage / "asha",
        trainable=trainable,
    )


def test_real_run_prunes_the_whole_config_at_one_rung(real_run):
    assert real_run.seconds < TIME_BUDGET_S - 5, "hit the time budget: a trial was left waiting"
    assert all(status == Trial.TERMINATED for status, _ in real_run.end.values())
    for seed in range(3):
        assert real_run.end[("good", seed)][1][metrics.EPOCH] == MAX_T
    assert set(real_run.sched.pruned) == {"model=bad"}
    record = real_run.sched.pruned["model=bad"]
    assert record["epoch"] == 2
    started = {s: r for s in range(3) if (r := real_run.end[("bad", s)][1]).get(metrics.EPOCH)}
    assert {0, 1} <= set(started), "bad seeds 0 and 1 ran from the start"
    assert {r[metrics.EPOCH] for r in started.values()} == {2}
    assert set(record["seeds"]) <= set(started)
    assert record["rung_acc"] == pytest.approx(0.2, abs=0.01)
    assert 2 not in started, "the waiting seed of the pruned config should never start"


def test_real_run_state_reaches_the_run_folder_and_survives_restore(real_run):
    assert json.loads((real_run.path / PRUNED_FILE).read_text()) == real_run.sched.pruned
    restored = tune.Tuner.restore(str(real_run.path), trainable=real_run.trainable)
    restored.fit()  # every trial is finished: it only re-adds them, loading the state
    sched = restored._local_tuner._tune_config.scheduler  # no public accessor in Ray 2.60
    assert sched is not real_run.sched
    assert sched.pruned == real_run.sched.pruned
    assert sched.recorded == real_run.sched.recorded
    # the restored trials still carry their searched params, so they map to the same configs
    assert {group for group, _ in sched._members.values()} == {"model=good", "model=bad"}
