"""Seed-aware ASHA: a Tune scheduler that prunes whole configurations, never single seeds.

A *configuration* is a trial's searched params with the seed removed (:func:`config_key` of
:func:`searched_params`). At each rung a configuration is judged once, on the mean validation
``acc_number`` of all its seeds at that rung, and when it loses, every seed of it stops.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from jersey_ray import metrics
from jersey_ray.errors import UserError
from jersey_ray.results.runs import SEED_KEY, config_key
from jersey_ray.storage import read_json, write_json

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

log = logging.getLogger(__name__)

STATE_FILE = "seed_aware_asha.json"
"""Full scheduler state, written next to Tune's experiment state so ``Tuner.restore`` finds it."""
PRUNED_FILE = "pruned.json"
"""The pruning record alone (``pruned.json`` of the run folder contract)."""
STATE_VERSION = 2
MAX_STAGED = 2
"""Trials handed to Tune that have not started yet. Tune starts every trial it holds as PENDING
in an order Ray picks, so the scheduler keeps the rest PAUSED and hands them over one by one."""
_RUNTIME = ("_members", "_groups", "_trials", "_released", "_launched", "_state_dir")


def searched_params(trial: Trial) -> Mapping[str, Any]:
    """The params the search varied for ``trial`` (Tune's ``evaluated_params``: the grid axes,
    flattened), so keys read ``model=attn_bgru_luong`` and not the whole fixed TrainConfig; the
    whole config when nothing was searched."""
    return trial.evaluated_params or trial.config


def rung_epochs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Rungs ``grace_period * reduction_factor**k`` strictly below ``max_t`` (ascending)."""
    rungs: list[int] = []
    t = float(grace_period)
    while t < max_t:
        rungs.append(math.ceil(t))
        t *= reduction_factor
    return rungs


def tune_max_concurrent(scheduler: TrialScheduler, max_concurrent: int | None) -> int | None:
    """Tune's ``max_concurrent_trials`` for ``scheduler``: a :class:`SeedAwareASHA` takes the
    limit itself (None for Tune), since Tune's own limit counts paused trials, and seeds waiting
    at a rung would keep their siblings from ever starting."""
    if isinstance(scheduler, SeedAwareASHA):
        scheduler.limit_concurrency(max_concurrent)
        return None
    return max_concurrent


class SeedAwareASHA(FIFOScheduler):
    """Asynchronous successive halving over configurations, with seeds pooled.

    Why plain ASHA biases mean +- std over seeds: plain ASHA treats every (config, seed) trial
    as its own arm. A configuration's seeds land on both sides of a rung's cutoff by chance, so
    it stops the unlucky seeds and lets the lucky ones run to the end. The finished seeds of a
    configuration are then a sample selected on its own noise: their mean is biased upwards and
    their std downwards, and configurations lose different numbers of seeds.

    Here a configuration is one arm, judged once per rung on the mean over **all** its seeds at
    that rung; a seed that failed for good (Tune's ERROR after its retries) or ended before the
    rung is left out and named (``missing``). A seed that reaches a rung before its siblings is
    PAUSED (Tune checkpoints it and frees its resources) until the last one arrives. The mean is
    compared, ASHA-style, with the rung means of the configurations already judged at that rung
    (complete ones only): the configuration goes on when it reaches their
    ``1 - 1/reduction_factor`` quantile, or when it is the first judged there, so the best
    configuration so far always survives. A losing configuration is pruned as a whole: the
    reporting seed stops and its waiting siblings are stopped while paused. No seed of it ever
    runs past the rung, so no pruned configuration has a finished seed.

    Trial order: Tune hands over new, retried and restored trials as PENDING and would start
    them all in grid order, in which the seed varies slowest. This scheduler parks them (PAUSED,
    with their trial folder made, so Tune's reporter can name them) and releases them itself in
    :meth:`choose_trial_to_run`: first trials that already ran (promoted or retried seeds), then
    the unstarted seeds of configurations under way, then new configurations in grid order;
    never a seed waiting at a rung. ``max_concurrent`` counts running and starting trials only:
    Tune's own limit also counts paused ones, which deadlocks once seeds wait for siblings that
    cannot start (pass ``max_concurrent_trials=None`` to Tune and the limit here).

    State (rung values, decisions, :attr:`pruned`) is written to the experiment's driver
    staging folder on every change, which Tune uploads with its experiment state
    (``seed_aware_asha.json`` and ``pruned.json`` in the run folder) and downloads again on
    ``Tuner.restore`` before the trials are re-added; the first :meth:`on_trial_add` loads it,
    so decisions made before an interruption hold after ``--resume``.

    Time attribute: ``metrics.EPOCH``; metric ``metrics.VAL_ACC_NUMBER``, mode ``max``. Trials
    are never stopped at ``max_t``: it only bounds the rungs, the trainer ends on its own epochs.
    """

    def __init__(
        self,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        max_concurrent: int | None = None,
    ) -> None:
        if grace_period < 1 or max_t < 1 or reduction_factor <= 1:
            raise UserError(
                f"ASHA needs grace_period >= 1, max_t >= 1 and reduction_factor > 1 "
                f"(got {grace_period}, {max_t}, {reduction_factor}); fix --grace-period "
                f"or the sweep's reduction_factor"
            )
        super().__init__()
        self._metric = metrics.VAL_ACC_NUMBER
        self._time_attr = metrics.EPOCH
        self._reduction_factor = reduction_factor
        self.max_concurrent = max_concurrent
        self.rungs = rung_epochs(grace_period, reduction_factor, max_t)
        # rung epoch -> config key -> seed (str) -> value recorded at the rung
        self.recorded: dict[int, dict[str, dict[str, float]]] = {r: {} for r in self.rungs}
        # rung epoch -> config key -> the decision made there (made once)
        self.decisions: dict[int, dict[str, dict[str, Any]]] = {r: {} for r in self.rungs}
        self.pruned: dict[str, dict[str, Any]] = {}
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        # Rebuilt by on_trial_add (new, retried and restored trials): never saved or pickled.
        self._members: dict[str, tuple[str, str]] = {}  # trial id -> (config key, seed)
        self._groups: dict[str, dict[str, str]] = {}  # config key -> seed -> trial id
        self._trials: dict[str, Trial] = {}
        self._released: set[str] = set()  # handed to Tune since the trial was last added
        self._launched: set[str] = set()  # ever handed to Tune in this session
        self._state_dir: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _RUNTIME}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # pickled in a tuner.pkl by an earlier version: its state file, if any, says what to do
        self.__dict__.setdefault("decisions", {r: {} for r in self.rungs})
        self.__dict__.setdefault("max_concurrent", None)
        self._reset_runtime()

    def limit_concurrency(self, max_concurrent: int | None) -> None:
        """Run at most ``max_concurrent`` trials at once (None: as many as resources allow)."""
        self.max_concurrent = max_concurrent

    # -- Tune hooks ----------------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept TuneConfig's metric/mode only when they agree with the fixed ones."""
        accepted = (None, self._metric, metrics.TUNE_METRIC)  # TUNE_METRIC: for get_best_result
        return metric in accepted and mode in (None, metrics.SELECTION_MODE)

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        params = searched_params(trial)
        group, seed = config_key(params), str(params.get(SEED_KEY, trial.trial_id))
        self._members[trial.trial_id] = (group, seed)
        self._groups.setdefault(group, {})[seed] = trial.trial_id
        self._trials[trial.trial_id] = trial
        self._released.discard(trial.trial_id)
        if self._state_dir is None and getattr(trial, "storage", None) is not None:
            self._state_dir = trial.local_experiment_path
            state_file = Path(self._state_dir, STATE_FILE)
            if state_file.is_file():
                self._load(state_file)
        self._recover_rung_value(trial, group, seed)

    def _recover_rung_value(self, trial: Trial, group: str, seed: str) -> None:
        """A restored trial whose last result (in Tune's experiment state) is at an open rung
        that the state file does not hold for it: the two files reach the storage in one sync,
        which a killed driver can cut between them. Its checkpoint is that rung's, so record the
        value there as :meth:`on_trial_result` did; it then waits for its siblings again instead
        of recording its next epoch's value at the rung."""
        last = trial.run_metadata.last_result  # not Trial.last_result: that one fills itself
        epoch, value = last.get(self._time_attr), last.get(self._metric)
        if epoch is None or value is None or metrics.TEST_ACC_NUMBER in last:
            return
        rung = self._open_rung(group, epoch)
        if group in self.pruned or rung is None or rung != epoch:
            return
        if seed not in self.recorded[rung].get(group, {}):
            log.warning("%s seed %s: its epoch %d value recovered from Tune's state", group, seed,
                        rung)  # fmt: skip
            self.recorded[rung].setdefault(group, {})[seed] = float(value)

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        group, seed = self._members[trial.trial_id]
        if group in self.pruned:
            return TrialScheduler.STOP
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if metrics.TEST_ACC_NUMBER in result:
            # its last epoch (a model with fewer epochs than max_t): a finished seed is never
            # judged, so it can never be a finished seed of a pruned configuration
            return TrialScheduler.CONTINUE
        value = float(result[self._metric])
        while (rung := self._open_rung(group, result[self._time_attr])) is not None:
            self.recorded[rung].setdefault(group, {})[seed] = value
            kept = self._decide(tune_controller, group, rung, reporting=trial)
            self._save_state()
            if kept is None:
                return TrialScheduler.PAUSE  # its siblings are not at the rung yet
            if not kept:
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        trials = list(tune_controller.get_trials())
        self._park_new(tune_controller, trials)
        self._settle(tune_controller, trials)
        if not self._has_room(trials):
            return None
        started = {self._members[t.trial_id][0] for t in trials if self._has_started(t)}
        ready = [
            (self._rank(t, started), i, t)
            for i, t in enumerate(trials)
            if t.status == Trial.PAUSED and self._can_run(t)
        ]
        if not ready:
            return None
        trial = min(ready, key=lambda x: x[:2])[2]
        self._released.add(trial.trial_id)
        self._launched.add(trial.trial_id)
        return trial

    def debug_string(self) -> str:
        at = " | ".join(f"epoch {r}: {len(self.decisions[r])} configs judged" for r in self.rungs)
        return f"Using seed-aware ASHA: {len(self.pruned)} configs pruned; {at}"

    def save(self, checkpoint_path: str) -> None:
        write_json(checkpoint_path, self.state())

    def restore(self, checkpoint_path: str) -> None:
        self._load(Path(checkpoint_path))

    # -- Decisions -----------------------------------------------------------------------------

    def _open_rung(self, group: str, epoch: float) -> int | None:
        """The lowest rung at or below ``epoch`` not yet decided for ``group``."""
        for rung in self.rungs:
            if rung > epoch:
                return None
            if group not in self.decisions[rung]:
                return rung
        return None

    def _decide(
        self, tune_controller: TuneController, group: str, rung: int, reporting: Trial | None
    ) -> bool | None:
        """Judge ``group`` at ``rung`` once every seed still in the race has a value there:
        True (goes on), False (pruned: its waiting seeds are stopped) or None (not yet)."""
        values = self.recorded[rung].get(group, {})
        seeds = self._groups.get(group, {})
        absent = [s for s in seeds if s not in values]
        if not values or not all(self._is_gone(self._trials[seeds[s]]) for s in absent):
            return None
        mean = statistics.fmean(values.values())
        others = [d["rung_acc"] for d in self.decisions[rung].values()]
        quantile = (1 - 1 / self._reduction_factor) * 100
        cutoff = float(np.percentile(others, quantile)) if others else None
        record = {
            "epoch": rung,
            "rung_acc": mean,
            "cutoff": cutoff,
            "seeds": _seed_list(values),
            "missing": _seed_list(absent),
        }
        kept = cutoff is None or mean >= cutoff
        self.decisions[rung][group] = {**record, "kept": kept}
        if absent:
            log.warning(
                "%s judged at epoch %d without seed(s) %s: they failed or ended before it",
                group, rung, ", ".join(absent),
            )  # fmt: skip
        if kept:
            return True
        self.pruned[group] = record
        for trial_id in seeds.values():
            trial = self._trials[trial_id]
            if trial is not reporting and trial.status == Trial.PAUSED:
                tune_controller.stop_trial(trial)  # any other gets STOP at its next result
        return False

    def _settle(self, tune_controller: TuneController, trials: list[Trial]) -> None:
        """Decisions that a failed seed unblocked, and trials of pruned configs that wait."""
        changed = False
        for group in [g for g in self._groups if g not in self.pruned]:
            for rung in self.rungs:
                if group in self.decisions[rung]:
                    continue
                if group not in self.recorded[rung]:
                    break
                kept = self._decide(tune_controller, group, rung, reporting=None)
                changed |= kept is not None
                if not kept:
                    break
        for trial in trials:
            if trial.status == Trial.PAUSED and self._members[trial.trial_id][0] in self.pruned:
                tune_controller.stop_trial(trial)  # e.g. a failed seed requeued by --resume
        if changed:
            self._save_state()

    @staticmethod
    def _is_gone(trial: Trial) -> bool:
        # ERROR comes only after the retries (a retry is requeued PENDING before Tune's next
        # step); TERMINATED without a value at the rung: stopped or ended before it.
        return trial.status in (Trial.ERROR, Trial.TERMINATED)

    def _waits(self, trial: Trial) -> bool:
        group, seed = self._members[trial.trial_id]
        return any(
            seed in self.recorded[r].get(group, {}) and group not in self.decisions[r]
            for r in self.rungs
        )

    # -- Trial order ---------------------------------------------------------------------------

    def _park_new(self, tune_controller: TuneController, trials: list[Trial]) -> None:
        for trial in trials:
            if trial.status != Trial.PENDING or trial.trial_id in self._released:
                continue
            if getattr(trial, "storage", None) is not None:
                # Tune makes the folder only when it starts a trial, and its progress reporter
                # fails on any trial without one (Trial.error_file).
                trial.init_local_path()
            tune_controller._set_trial_status(trial, Trial.PAUSED)  # whitelisted for schedulers

    def _has_room(self, trials: list[Trial]) -> bool:
        starting = sum(t.status == Trial.PENDING for t in trials)
        running = sum(t.status == Trial.RUNNING for t in trials)
        if starting >= MAX_STAGED:
            return False
        return not self.max_concurrent or starting + running < self.max_concurrent

    def _has_started(self, trial: Trial) -> bool:
        # Not Trial.has_reported_at_least_once: reading Trial.last_result makes it true.
        group, seed = self._members[trial.trial_id]
        return (
            trial.trial_id in self._launched
            or trial.checkpoint is not None  # ran before a Tuner.restore
            or any(seed in self.recorded[r].get(group, {}) for r in self.rungs)
        )

    def _can_run(self, trial: Trial) -> bool:
        return self._members[trial.trial_id][0] not in self.pruned and not self._waits(trial)

    def _rank(self, trial: Trial, started_groups: set[str]) -> int:
        if self._has_started(trial):
            return 0  # promoted, retried or restored: finish what is under way
        return 1 if self._members[trial.trial_id][0] in started_groups else 2

    # -- State ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-ready state: rungs, recorded rung values, decisions and the pruning record."""
        return {
            "version": STATE_VERSION,
            "rungs": self.rungs,
            "recorded": {str(r): v for r, v in self.recorded.items()},
            "decisions": {str(r): v for r, v in self.decisions.items()},
            "pruned": self.pruned,
        }

    def write_pruned(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`pruned` as JSON (the run folder's ``pruned.json``); returns the path."""
        write_json(path, self.pruned)
        return Path(path)

    def _save_state(self) -> None:
        # Tune's syncer may upload the folder at any moment: write_json never exposes half a file
        if self._state_dir is None:
            return
        write_json(Path(self._state_dir, STATE_FILE), self.state())
        self.write_pruned(Path(self._state_dir, PRUNED_FILE))

    def _load(self, path: Path) -> None:
        try:
            state = read_json(path)
        except (OSError, ValueError) as err:
            raise UserError(
                f"{path}: unreadable ASHA state ({err}); delete it to start afresh"
            ) from err
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise UserError(
                f"{path}: ASHA state of another version ({_version(state)}, expected "
                f"{STATE_VERSION}); finish the sweep with the jersey-ray that started it"
            )
        if state.get("rungs") != self.rungs:
            raise UserError(
                f"{path}: ASHA state for rungs {state.get('rungs')} but this sweep uses "
                f"{self.rungs}; resume with the same --grace-period and --epochs"
            )
        self.recorded = {int(r): v for r, v in state["recorded"].items()}
        self.decisions = {int(r): v for r, v in state["decisions"].items()}
        self.pruned = state["pruned"]


def _seed_list(seeds: Mapping[str, Any] | list[str]) -> list[int | str]:
    """Seeds as params.json holds them (ints), in numeric order."""
    ints = sorted(int(s) for s in seeds if s.lstrip("-").isdigit())
    return [*ints, *sorted(s for s in seeds if not s.lstrip("-").isdigit())]


def _version(state: Any) -> Any:
    return state.get("version") if isinstance(state, dict) else None
