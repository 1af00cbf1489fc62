"""Tune's controller, reduced to what the seed-aware ASHA sees, for driving it with stub trials.

:class:`FakeController` keeps Tune's status bookkeeping (PENDING -> RUNNING -> PAUSED /
TERMINATED / ERROR, the scheduler hooks in Tune's order); :class:`Sim` plays trials against it
epoch by epoch, resuming paused ones where they stopped (their checkpoint); :class:`Watch`
checks the decision invariants after every event.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from jersey_ray import metrics
from jersey_ray.results.runs import config_key

STOP, CONTINUE, PAUSE = TrialScheduler.STOP, TrialScheduler.CONTINUE, TrialScheduler.PAUSE
FIXED = {"epochs": 10, "lr_scheme": "discriminative"}  # in every config, never in the key
DONE = (Trial.TERMINATED, Trial.ERROR)


class LocalStorage(StorageContext):
    """Tune's storage for one trial with the driver staging folder under ``root``: Tune puts it
    in the Ray session folder, which needs a running Ray."""

    def __init__(self, root: Path) -> None:
        super().__init__(storage_path=str(root / "storage"), experiment_dir_name="exp")
        self._root = root

    def _get_session_path(self) -> str:
        return str(self._root / "session")


class FakeController:
    """The controller calls the scheduler makes, with Tune's status bookkeeping."""

    def __init__(self, scheduler: TrialScheduler, storage_root: Path | None = None) -> None:
        self.scheduler = scheduler
        self.storage_root = storage_root
        self.trials: list[Trial] = []
        self.held: set[str] = set()  # paused by the scheduler at a rung, not released since
        self.starts: list[Trial] = []

    def add(self, seed: int, model: str = "m", **axes) -> Trial:
        searched = {"model": model, **axes, "seed": seed}
        storage = LocalStorage(self.storage_root) if self.storage_root else None
        trial = Trial(
            "__fake",
            config={**searched, **FIXED},
            evaluated_params=searched,
            stub=True,
            storage=storage,
            trial_dirname_creator=lambda t: "-".join(f"{k}={v}" for k, v in searched.items()),
        )
        self.readd(trial)
        return trial

    def readd(self, trial: Trial) -> None:
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def get_trials(self) -> list[Trial]:
        return self.trials

    def _set_trial_status(self, trial: Trial, status: str) -> None:
        trial.set_status(status)

    def stop_trial(self, trial: Trial) -> None:
        if trial.status in DONE:
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, dict(trial.last_result))
        trial.set_status(Trial.TERMINATED)

    def start(self) -> Trial | None:
        """One step of Tune's loop: start the trial the scheduler chooses, if any."""
        trial = self.scheduler.choose_trial_to_run(self)
        if trial is None:
            return None
        assert trial.status in (Trial.PENDING, Trial.PAUSED), trial.status
        self.held.discard(trial.trial_id)
        trial.set_status(Trial.RUNNING)  # Tune: PENDING, then RUNNING once its actor is up
        self.starts.append(trial)
        return trial

    def report(self, trial: Trial, epoch: int, acc: float, final: bool = False) -> str:
        assert trial.status not in DONE, f"{trial.config} reported after it stopped"
        assert trial.trial_id not in self.held, f"{trial.config} reported while waiting"
        trial.set_status(Trial.RUNNING)  # a scripted report starts a trial directly
        result = {metrics.EPOCH: epoch, metrics.VAL_ACC_NUMBER: acc}
        if final:
            result[metrics.TEST_ACC_NUMBER] = acc
        decision = self.scheduler.on_trial_result(self, trial, result)
        trial.update_last_result(result)
        if decision == STOP or final:  # after its last result the trainable returns
            self.stop_trial(trial)
        elif decision == PAUSE:
            trial.set_status(Trial.PAUSED)
            self.held.add(trial.trial_id)
        return decision

    def fail(self, trial: Trial, retry: bool = False) -> None:
        """The trial raises: Tune retries it (requeued PENDING) or, after its retries, ERROR."""
        if retry:
            trial.set_status(Trial.ERROR)
            self.scheduler.on_trial_error(self, trial)
            trial.set_status(Trial.PENDING)
            self.trials.remove(trial)
            self.readd(trial)
        else:
            self.scheduler.on_trial_error(self, trial)
            trial.set_status(Trial.ERROR)

    def group(self, trial: Trial) -> str:
        return config_key(trial.evaluated_params)

    def seeds_of(self, group: str) -> set[int]:
        return {t.config["seed"] for t in self.trials if self.group(t) == group}

    def by_group(self) -> dict[str, list[Trial]]:
        out: dict[str, list[Trial]] = {}
        for t in self.trials:
            out.setdefault(self.group(t), []).append(t)
        return out


class Watch:
    """Decisions are made once, on all of a configuration's seeds (failed ones named), against
    the configurations already complete at that rung; the best one so far always survives."""

    def __init__(self, reduction_factor: float) -> None:
        self.quantile = (1 - 1 / reduction_factor) * 100
        self.seen: dict[tuple[int, str], dict] = {}

    def check(self, sched, ctl: FakeController) -> None:
        for rung, decided in sched.decisions.items():
            earlier: list[float] = []
            for group, d in decided.items():
                if (rung, group) in self.seen:
                    assert d == self.seen[rung, group], f"{group} at epoch {rung}: changed"
                else:
                    self._check_new(sched, ctl, rung, group, earlier)
                    self.seen[rung, group] = copy.deepcopy(d)
                earlier.append(d["rung_acc"])
            if decided:
                assert max(decided.values(), key=lambda d: d["rung_acc"])["kept"]

    def _check_new(self, sched, ctl, rung: int, group: str, earlier: list[float]) -> None:
        d, values = sched.decisions[rung][group], sched.recorded[rung][group]
        assert d["seeds"] == sorted(int(s) for s in values)
        assert set(d["seeds"]) | set(d["missing"]) == ctl.seeds_of(group), group
        assert not set(d["seeds"]) & set(d["missing"])
        assert d["rung_acc"] == pytest.approx(statistics.fmean(values.values()))
        if earlier:
            cutoff = float(np.percentile(earlier, self.quantile))
            assert d["cutoff"] == pytest.approx(cutoff)
            assert d["kept"] == (d["rung_acc"] >= cutoff)
        else:
            assert d["cutoff"] is None and d["kept"]


Acc = Callable[[Trial, int], float]


class Sim:
    """Tune running every trial to ``epochs``: each step starts what the scheduler releases,
    then the running trial first in ``key`` order reports its next epoch. A paused trial goes
    on from its last reported epoch (its checkpoint)."""

    def __init__(
        self,
        ctl: FakeController,
        acc: Acc,
        epochs: int,
        key: Callable[[Trial, int], tuple] | None = None,
        fail_at: dict[str, int] | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.ctl, self.acc, self.epochs = ctl, acc, epochs
        self.key = key or (lambda t, done: (done, ctl.trials.index(t)))
        self.fail_at = dict(fail_at or {})
        self.watch = watch
        self.progress: dict[str, int] = {}
        self.finished: list[Trial] = []
        self.max_running = 0

    def step(self) -> bool:
        """One event; False once every trial ended (a live trial nobody runs is a deadlock)."""
        while self.ctl.start() is not None:
            pass
        running = [t for t in self.ctl.trials if t.status == Trial.RUNNING]
        self.max_running = max(self.max_running, len(running))
        if not running:
            live = [(t.config["model"], t.config["seed"], t.status) for t in self.ctl.trials
                    if t.status not in DONE]  # fmt: skip
            assert not live, f"deadlock: nothing runs, nothing starts: {live}"
            return False
        trial = min(running, key=lambda t: self.key(t, self.progress.get(t.trial_id, 0)))
        epoch = self.progress.get(trial.trial_id, 0) + 1
        if self.fail_at.get(trial.trial_id) == epoch:
            self.ctl.fail(trial)
        else:
            final = epoch == self.epochs
            decision = self.ctl.report(trial, epoch, self.acc(trial, epoch), final=final)
            self.progress[trial.trial_id] = epoch
            if final and decision != STOP:
                self.finished.append(trial)
        if self.watch:
            self.watch.check(self.ctl.scheduler, self.ctl)
        return True

    def run(self, until: Callable[[Sim], bool] | None = None, max_steps: int = 10_000) -> Sim:
        for _ in range(max_steps):
            if until is not None and until(self):
                return self
            if not self.step():
                return self
        raise AssertionError(f"no end after {max_steps} steps")


def check_outcome(sched, ctl: FakeController, finished: list[Trial]) -> None:
    """A pruned configuration has no finished seed; every other one finished all its seeds
    (less the failed ones); at least one configuration finished."""
    done = {t.trial_id for t in finished}
    for group, trials in ctl.by_group().items():
        ended = [t.trial_id in done for t in trials]
        if group in sched.pruned:
            assert not any(ended), f"{group} is pruned but has finished seeds"
        else:
            failed = [t.status == Trial.ERROR for t in trials]
            assert all(e or f for e, f in zip(ended, failed, strict=True)), group
    assert done, "no configuration finished"
