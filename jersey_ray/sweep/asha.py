"""Seed-aware ASHA: a Tune scheduler that prunes whole configurations, never single seeds.

A *configuration* is a trial's searched params with the seed removed (:func:`config_key` of
:func:`searched_params`). At each rung a configuration is judged by the mean validation
``acc_number`` of its seeds that reached the rung, and when it loses, every seed of it stops.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from jersey_ray import metrics
from jersey_ray.errors import UserError
from jersey_ray.results.runs import SEED_KEY, config_key

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

STATE_FILE = "seed_aware_asha.json"
"""Full scheduler state, written next to Tune's experiment state so ``Tuner.restore`` finds it."""
PRUNED_FILE = "pruned.json"
"""The pruning record alone (``pruned.json`` of the run folder contract)."""
STATE_VERSION = 1


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


class SeedAwareASHA(FIFOScheduler):
    """Asynchronous successive halving over configurations, with seeds pooled.

    Why plain ASHA biases mean +- std over seeds: plain ASHA treats every (config, seed) trial
    as its own arm. A configuration's seeds land on both sides of a rung's cutoff by chance, so
    it stops the unlucky seeds and lets the lucky ones run to the end. The finished seeds of a
    configuration are then a sample selected on its own noise: their mean is biased upwards and
    their std downwards, and configurations lose different numbers of seeds, so neither the
    means nor the ``n`` of the table are comparable (seen in a probe: seeds 0 and 2 of one
    config stopped at rungs 2 and 4, seeds 1 and 3 ran on).

    Here a configuration is one arm. When a trial first reports at or after a rung epoch, its
    value is recorded for its configuration; the configuration's rung value is the mean over its
    seeds recorded there. It is compared, ASHA-style, with the other configurations' rung
    values: it is kept when it reaches the ``1 - 1/reduction_factor`` quantile of them, or when
    no other configuration has reached the rung yet. Each newly arrived seed re-judges the
    configuration on the new mean. A configuration below the cutoff is pruned as a whole: the
    reporting trial stops, its other running seeds stop at their next result, and its pending or
    paused seeds are terminated without starting (:meth:`choose_trial_to_run` also catches seeds
    the searcher adds later and seeds requeued by ``Tuner.restore`` or a retry). Every finished
    configuration therefore has all its seeds, and pruned ones are listed in :attr:`pruned`.

    State (rung values and :attr:`pruned`) is written to the experiment's driver staging folder
    on every change, which Tune uploads with its experiment state (``seed_aware_asha.json`` and
    ``pruned.json`` in the run folder) and downloads again on ``Tuner.restore`` before the
    trials are re-added; the first :meth:`on_trial_add` loads it. Tune itself pickles the
    scheduler only once, empty, in ``tuner.pkl``, and never calls :meth:`save`/:meth:`restore`.

    Time attribute: ``metrics.EPOCH``; metric ``metrics.VAL_ACC_NUMBER``, mode ``max``. Trials
    are never stopped at ``max_t``: it only bounds the rungs, the trainer ends on its own epochs.
    """

    def __init__(self, max_t: int, grace_period: int = 1, reduction_factor: float = 3) -> None:
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
        self.rungs = rung_epochs(grace_period, reduction_factor, max_t)
        # rung epoch -> config key -> seed (str) -> value recorded at the rung
        self.recorded: dict[int, dict[str, dict[str, float]]] = {r: {} for r in self.rungs}
        self.pruned: dict[str, dict[str, Any]] = {}
        # trial id -> (config key, seed); rebuilt by on_trial_add, not part of the saved state
        self._members: dict[str, tuple[str, str]] = {}
        self._state_dir: str | None = None

    # -- Tune hooks ----------------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept TuneConfig's metric/mode only when they agree with the fixed ones."""
        return metric in (None, self._metric) and mode in (None, metrics.SELECTION_MODE)

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        params = searched_params(trial)
        seed = params.get(SEED_KEY, trial.trial_id)
        self._members[trial.trial_id] = (config_key(params), str(seed))
        if self._state_dir is None and getattr(trial, "storage", None) is not None:
            self._state_dir = trial.local_experiment_path
            state_file = Path(self._state_dir, STATE_FILE)
            if state_file.is_file():
                self._load(state_file)

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        group, seed = self._members[trial.trial_id]
        if group in self.pruned:
            return TrialScheduler.STOP
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        rung = self._new_rung(group, seed, result[self._time_attr])
        if rung is None:
            return TrialScheduler.CONTINUE
        self.recorded[rung].setdefault(group, {})[seed] = float(result[self._metric])
        decision = self._judge(group, rung)
        if decision == TrialScheduler.STOP:
            self._stop_waiting_trials(tune_controller)
        self._save_state()
        return decision

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        self._stop_waiting_trials(tune_controller)
        return super().choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        at = " | ".join(f"epoch {r}: {len(self.recorded[r])} configs" for r in self.rungs)
        return f"Using seed-aware ASHA: {len(self.pruned)} configs pruned; rungs {at}"

    def save(self, checkpoint_path: str) -> None:
        _write_json(Path(checkpoint_path), self.state())

    def restore(self, checkpoint_path: str) -> None:
        self._load(Path(checkpoint_path))

    # -- Decisions -----------------------------------------------------------------------------

    def _new_rung(self, group: str, seed: str, epoch: float) -> int | None:
        """The highest rung at or below ``epoch`` this seed has not been recorded at (as ASHA)."""
        for rung in reversed(self.rungs):
            if epoch >= rung:
                return None if seed in self.recorded[rung].get(group, {}) else rung
        return None

    def _judge(self, group: str, rung: int) -> str:
        values = self.recorded[rung]
        mean = float(np.mean(list(values[group].values())))
        others = [float(np.mean(list(v.values()))) for g, v in values.items() if g != group]
        if not others:
            return TrialScheduler.CONTINUE
        cutoff = float(np.percentile(others, (1 - 1 / self._reduction_factor) * 100))
        if mean >= cutoff:
            return TrialScheduler.CONTINUE
        self.pruned[group] = {
            "epoch": rung,
            "rung_acc": mean,
            "cutoff": cutoff,
            "seeds": sorted((_seed_value(s) for s in values[group]), key=str),
        }
        return TrialScheduler.STOP

    def _stop_waiting_trials(self, tune_controller: TuneController) -> None:
        """Terminate pending/paused trials of pruned configs so they never start.

        ``stop_trial`` is the controller call Tune's own HyperBand uses for trials other than
        the reporting one; running ones are left to get STOP at their next result.
        """
        if not self.pruned:
            return
        for trial in list(tune_controller.get_trials()):
            member = self._members.get(trial.trial_id)
            waiting = trial.status in (Trial.PENDING, Trial.PAUSED)
            if waiting and member is not None and member[0] in self.pruned:
                tune_controller.stop_trial(trial)

    # -- State ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-ready state: rungs, recorded rung values and the pruning record."""
        return {
            "version": STATE_VERSION,
            "rungs": self.rungs,
            "recorded": {str(r): v for r, v in self.recorded.items()},
            "pruned": self.pruned,
        }

    def write_pruned(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`pruned` as JSON (the run folder's ``pruned.json``); returns the path."""
        path = Path(path)
        _write_json(path, self.pruned)
        return path

    def _save_state(self) -> None:
        if self._state_dir is None:
            return
        _write_json(Path(self._state_dir, STATE_FILE), self.state())
        self.write_pruned(Path(self._state_dir, PRUNED_FILE))

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(
                f"{path}: unreadable ASHA state ({err}); delete it to start afresh"
            ) from err
        if state.get("version") != STATE_VERSION or state.get("rungs") != self.rungs:
            raise UserError(
                f"{path}: ASHA state for rungs {state.get('rungs')} but this sweep uses "
                f"{self.rungs}; resume with the same --grace-period and --epochs"
            )
        self.recorded = {int(r): v for r, v in state["recorded"].items()}
        self.pruned = state["pruned"]


def _seed_value(seed: str) -> int | str:
    return int(seed) if seed.lstrip("-").isdigit() else seed


def _write_json(path: Path, data: Any) -> None:
    # Tune's syncer may upload the folder at any moment: never expose a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
