"""Tune's controller, reduced to what the seed-aware ASHA sees, for driving it with stub trials.

:class:`FakeController` keeps Tune's status bookkeeping (PENDING -> RUNNING -> PAUSED /
TERMINATED / ERROR, the scheduler hooks in Tune's order); :class:`Sim` plays trials against it
epoch by epoch, resuming paused ones where they stopped (their checkpoint); :class:`Watch`
checks the decision invariants after every event.

What it keeps of Tune 2.60 (``ray/tune/execution/tune_controller.py``), and checks:

- PAUSE is not immediate: ``_process_trial_result`` queues the decision, ``pause_trial`` caches
  it and schedules the actor's ``save``; the trial stays RUNNING (its resources held) until
  ``_on_saving_result`` -> ``_process_trial_save`` pops the cached PAUSE, and only then
  ``pause_trial(should_checkpoint=False)`` stops the actor and sets PAUSED. Meanwhile the trial
  reports nothing more (no ``train`` is scheduled) and the scheduler's other hooks run. Here a
  PAUSE leaves the trial RUNNING in :attr:`FakeController.saving` until :meth:`saved`; scripted
  reports complete the save at once, the :class:`Sim` after other events (``save_lag``).
- A failure with retries left (``_try_recover``): status ERROR, ``on_trial_error``, PENDING,
  moved to the end of the trial list and ``on_trial_add`` again; a failure during the PAUSE's
  save drops the save (the checkpoint of the rung epoch came with its result, so the retry goes
  on from there). The retried trial runs, and reports, only once ``choose_trial_to_run`` picks
  it (:meth:`start`): :meth:`report` refuses a retried or paused trial not released since.
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
        self.saving: set[str] = set()  # PAUSE decided, checkpoint not saved: still RUNNING
        self.requeued: set[str] = set()  # retried after a failure, not released since
        self.defer_saves = False  # True: a PAUSE completes only at saved() (the Sim's way)
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
        self.saving.discard(trial.trial_id)  # Tune: a STOP overrides a pending PAUSE's save
        self.requeued.discard(trial.trial_id)
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
        assert trial.trial_id not in self.saving, "a pausing trial is RUNNING"
        self.held.discard(trial.trial_id)
        self.requeued.discard(trial.trial_id)
        trial.set_status(Trial.RUNNING)  # Tune: PENDING, then RUNNING once its actor is up
        self.starts.append(trial)
        return trial

    def report(self, trial: Trial, epoch: int, acc: float, final: bool = False) -> str:
        assert trial.status not in DONE, f"{trial.config} reported after it stopped"
        assert trial.trial_id not in self.held, f"{trial.config} reported while waiting"
        assert trial.trial_id not in self.saving, f"{trial.config} reported while pausing"
        assert trial.trial_id not in self.requeued, f"{trial.config}: retry not released"
        trial.set_status(Trial.RUNNING)  # a scripted report starts a new trial directly
        result = {metrics.EPOCH: epoch, metrics.VAL_ACC_NUMBER: acc}
        if final:
            result[metrics.TEST_ACC_NUMBER] = acc
        decision = self.scheduler.on_trial_result(self, trial, result)
        trial.update_last_result(result)
        if decision == STOP or final:  # after its last result the trainable returns
            self.stop_trial(trial)
        elif decision == PAUSE:
            self.held.add(trial.trial_id)
            self.saving.add(trial.trial_id)
            if not self.defer_saves:
                self.saved(trial)
        return decision

    def saved(self, trial: Trial) -> None:
        """The PAUSE's checkpoint is saved: the actor stops, the trial is PAUSED."""
        if trial.trial_id not in self.saving:
            return  # stopped or failed meanwhile
        assert trial.status == Trial.RUNNING, trial.status
        self.saving.discard(trial.trial_id)
        trial.set_status(Trial.PAUSED)

    def fail(self, trial: Trial, retry: bool = False) -> None:
        """The trial raises: Tune retries it (requeued PENDING) or, after its retries, ERROR."""
        assert trial.status == Trial.RUNNING, f"only a running trial fails: {trial.status}"
        self.saving.discard(trial.trial_id)  # Tune's _try_recover drops the save
        self.held.discard(trial.trial_id)  # the retry waits on the scheduler, not on us
        if retry:
            trial.set_status(Trial.ERROR)
            self.scheduler.on_trial_error(self, trial)
            trial.set_status(Trial.PENDING)
            self.trials.remove(trial)
            self.readd(trial)
            self.requeued.add(trial.trial_id)
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
    """Tune running every trial to ``epochs``: each step completes the PAUSE saves that are
    due, starts what the scheduler releases, then the running trial first in ``key`` order
    reports its next epoch. A paused trial goes on from its last reported epoch (its
    checkpoint).

    ``save_lag``: a PAUSE's checkpoint is saved after that many other events (the trial stays
    RUNNING meanwhile; at once when nothing else can happen). ``fail_at``: trial id -> the epoch
    at whose start the trial fails for good; ``retry_at``: the same, once, with a retry (it goes
    on from its checkpoint once released). ``fail_saving``: trial ids that fail, with a retry,
    while the save of their first PAUSE is pending."""

    def __init__(
        self,
        ctl: FakeController,
        acc: Acc,
        epochs: int,
        key: Callable[[Trial, int], tuple] | None = None,
        fail_at: dict[str, int] | None = None,
        watch: Watch | None = None,
        save_lag: int = 1,
        retry_at: dict[str, int] | None = None,
        fail_saving: set[str] | None = None,
    ) -> None:
        self.ctl, self.acc, self.epochs = ctl, acc, epochs
        self.key = key or (lambda t, done: (done, ctl.trials.index(t)))
        self.fail_at = dict(fail_at or {})
        self.retry_at = dict(retry_at or {})
        self.fail_saving = set(fail_saving or ())
        self.watch = watch
        self.save_lag = save_lag
        ctl.defer_saves = save_lag > 0
        self.progress: dict[str, int] = {}
        self.finished: list[Trial] = []
        self.max_running = 0
        self.events = 0
        self.failures: list[tuple[str, int, bool]] = []  # (trial id, epoch, retried)
        self._pausing: dict[str, int] = {}  # trial id -> the event its PAUSE was decided at

    def step(self) -> bool:
        """One event; False once every trial ended (a live trial nobody runs is a deadlock)."""
        self._complete_saves(force=False)
        while self.ctl.start() is not None:
            pass
        running = [t for t in self.ctl.trials if t.status == Trial.RUNNING]
        self.max_running = max(self.max_running, len(running))
        reporters = [t for t in running if t.trial_id not in self.ctl.saving]
        if not reporters:
            if self._complete_saves(force=True):
                return self._checked(True)
            live = [(t.config["model"], t.config["seed"], t.status) for t in self.ctl.trials
                    if t.status not in DONE]  # fmt: skip
            assert not live, f"deadlock: nothing runs, nothing starts: {live}"
            return False
        trial = min(reporters, key=lambda t: self.key(t, self.progress.get(t.trial_id, 0)))
        epoch = self.progress.get(trial.trial_id, 0) + 1
        self.events += 1
        if self.fail_at.get(trial.trial_id) == epoch:
            self.failures.append((trial.trial_id, epoch, False))
            self.ctl.fail(trial)
        elif self.retry_at.get(trial.trial_id) == epoch:
            del self.retry_at[trial.trial_id]  # once: the retry gets past it
            self.failures.append((trial.trial_id, epoch, True))
            self.ctl.fail(trial, retry=True)
        else:
            sched, group = self.ctl.scheduler, self.ctl.group(trial)
            for rung in getattr(sched, "rungs", ()):  # the seed-aware scheduler's promise
                assert rung >= epoch or group in sched.decisions[rung], (
                    f"{group} seed {trial.config['seed']} ran to epoch {epoch} past rung {rung}, "
                    "where its configuration is not judged yet"
                )
            final = epoch == self.epochs
            decision = self.ctl.report(trial, epoch, self.acc(trial, epoch), final=final)
            self.progress[trial.trial_id] = epoch
            if final and decision != STOP:
                self.finished.append(trial)
            if decision == PAUSE:
                self._pausing[trial.trial_id] = self.events
        return self._checked(True)

    def _complete_saves(self, force: bool) -> bool:
        """Complete (or, for ``fail_saving`` trials, crash) the PAUSE saves that are due; with
        ``force``, the oldest one. True when one completed."""
        pending = [t for t in self.ctl.trials if t.trial_id in self.ctl.saving]
        due = [t for t in pending if self.events - self._pausing[t.trial_id] >= self.save_lag]
        if force and pending and not due:
            due = [min(pending, key=lambda t: self._pausing[t.trial_id])]
        for trial in due:
            if trial.trial_id in self.fail_saving:
                self.fail_saving.discard(trial.trial_id)
                self.failures.append((trial.trial_id, self.progress[trial.trial_id], True))
                self.ctl.fail(trial, retry=True)
            else:
                self.ctl.saved(trial)
            self._checked(True)
        return bool(due)

    def _checked(self, value: bool) -> bool:
        if self.watch:
            self.watch.check(self.ctl.scheduler, self.ctl)
        return value

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
