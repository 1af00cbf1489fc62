"""Seed-aware search: a Tune searcher proposes configurations, every one runs with all the seeds.

Tune's searchers treat each trial as one sample of the objective. Here a sample is a
*configuration* (the searched params, seed aside) and its value is the **seed mean**:
:class:`SeedAwareSearch` wraps a Tune :class:`~ray.tune.search.Searcher` (Optuna's, or
:class:`RandomSearch`), turns each of its suggestions into one trial per sweep seed (the same
params, ``seed`` set), and tells it the configuration's result once, when every seed has ended:

- all seeds finished (or some failed): the mean of their ``best_val_acc_number`` (the product's
  choice on validation); a failed seed is left out of the mean and named in a warning;
- pruned by the seed-aware ASHA (a seed stopped before its test): the rung's seed mean as the
  value at the rung's epoch, then completed without a value, which Optuna records as PRUNED;
- every seed failed: an error (Optuna: FAIL).

The seeds of one configuration carry identical searched params (Tune's ``evaluated_params``),
so the seed-aware ASHA groups them as one configuration, as it does a grid's. Sampled floats
are rounded to :data:`SIGNIFICANT` digits: names stay readable (``lr=0.001234``) and a repeated
proposal is recognised; it is not run again, the searcher is told the same result.

State (configurations, their seeds handed out and ended, what was told) is JSON, saved by Tune
with its experiment state (:meth:`get_state`; the inner searcher saves its own) and restored by
``Tuner.restore`` (``--resume``): seeds not yet handed out are handed out after a resume.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized

from jersey_ray import metrics
from jersey_ray.results.runs import SEED_KEY, config_key

log = logging.getLogger(__name__)

SIGNIFICANT = 4
"""Significant digits a sampled float keeps (``0.0012345678`` runs as ``0.001235``)."""
MAX_REPEATS = 20
"""Repeated proposals in a row after which a searcher counts as exhausted (a small discrete
space: every configuration ran)."""
TOLD_METRIC = metrics.BEST_VAL_ACC_NUMBER
"""What a configuration is judged on: each seed's best validation acc_number, averaged."""
TRAINING_ITERATION = "training_iteration"


def readable(value: Any) -> Any:
    """A sampled float rounded to :data:`SIGNIFICANT` digits; anything else as it is."""
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{SIGNIFICANT}g}")
    if isinstance(value, np.generic):
        return readable(value.item())
    return value


def describe(domain: Any) -> Any:
    """How ``sweep.json`` records an axis: a grid as its list, a domain as readable text such as
    ``loguniform(0.0001, 0.01)``."""
    if isinstance(domain, (tuple, list)):
        return list(domain)
    if isinstance(domain, Categorical):
        return f"choice({json.dumps(list(domain.categories))})"
    if isinstance(domain, (Float, Integer)):
        sampler = domain.get_sampler()
        q = sampler.q if isinstance(sampler, Quantized) else None
        base = sampler.get_sampler() if isinstance(sampler, Quantized) else sampler
        kind = "log" if isinstance(base, LogUniform) else ""
        if isinstance(domain, Integer):
            name = f"{kind}randint"
        else:
            name = f"{kind}uniform" if kind or str(base) == "Uniform" else str(base).lower()
        args = [domain.lower, domain.upper] if str(base) != "Normal" else [base.mean, base.sd]
        if q is not None:
            name, args = f"q{name}", [*args, q]
        return f"{name}({', '.join(f'{a:g}' for a in args)})"
    return repr(domain)


class RandomSearch(Searcher):
    """``search="random"``: ``num_samples`` draws of the sampled axes (seeded), each crossed
    with every model and every combination of the grid (tuple) axes, as Tune's ``num_samples``
    repeats a grid. A draw that repeats an earlier one is drawn again."""

    def __init__(
        self,
        sampled: Mapping[str, Domain],
        models: Sequence[str],
        grid: Mapping[str, Sequence[Any]],
        num_samples: int,
        seed: int,
    ) -> None:
        super().__init__(metric=TOLD_METRIC, mode=metrics.SELECTION_MODE)
        rng = np.random.default_rng(seed)
        drawn: list[dict[str, Any]] = []
        keys: set[str] = set()
        for _ in range(num_samples):
            for _ in range(MAX_REPEATS):
                draw = {k: readable(d.sample(random_state=rng)) for k, d in sampled.items()}
                if config_key(draw) not in keys:
                    keys.add(config_key(draw))
                    drawn.append(draw)
                    break
        names = list(grid)
        self.configs = [
            {"model": model, **dict(zip(names, combo, strict=True)), **draw}
            for draw in drawn
            for model in models
            for combo in itertools.product(*(grid[k] for k in names))
        ]
        self.index = 0

    def suggest(self, trial_id: str) -> Any:  # a dict, or Searcher.FINISHED
        if self.index >= len(self.configs):
            return Searcher.FINISHED
        self.index += 1
        return dict(self.configs[self.index - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        pass  # random search learns nothing

    def get_state(self) -> dict[str, Any]:
        return {"index": self.index}

    def set_state(self, state: dict[str, Any]) -> None:
        self.index = state["index"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))


class SeedAwareSearch(Searcher):
    """One suggestion of ``searcher`` -> one trial per seed; the seed mean told once.

    ``constant``: params every configuration carries without the searcher choosing them (the
    model when the sweep has one). ``num_samples``: configurations to run at most (a repeated
    proposal does not count). ``max_concurrent``: configurations in flight (proposed, not yet
    told) at once; each has all its seeds. Tune finds the inner searcher as ``.searcher`` (its
    wrapper convention), so it saves and restores both.
    """

    def __init__(
        self,
        searcher: Searcher,
        seeds: Sequence[int],
        num_samples: int,
        max_concurrent: int = 1,
        constant: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metric=TOLD_METRIC, mode=metrics.SELECTION_MODE)
        if not seeds or num_samples < 1 or max_concurrent < 1:
            raise ValueError("SeedAwareSearch needs seeds, num_samples >= 1, max_concurrent >= 1")
        self.searcher = searcher
        self.seeds = [int(s) for s in seeds]
        self.num_samples = num_samples
        self.max_concurrent = max_concurrent
        self.constant = dict(constant or {})
        # configuration id (the inner searcher's trial id) -> its record (JSON-ready)
        self.configs: dict[str, dict[str, Any]] = {}
        self.trials: dict[str, str] = {}  # Tune trial id -> configuration id
        self.last: dict[str, dict[str, Any]] = {}  # Tune trial id -> its last result (a few keys)
        self.repeats: dict[str, str] = {}  # inner id of a repeated proposal -> config id repeated
        self.exhausted = False
        self._next_id = 0

    # -- Tune hooks ----------------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec):
        # The inner searcher has its space, metric and mode from make_search: nothing to pass on.
        return True

    def suggest(self, trial_id: str) -> Any:  # a dict, None (not now) or Searcher.FINISHED
        config_id = self._with_seeds_left()
        if config_id is None:
            if self.exhausted or self._started() >= self.num_samples:
                return Searcher.FINISHED
            if self._in_flight() >= self.max_concurrent:
                return None
            config_id = self._propose()
            if config_id is None:
                return Searcher.FINISHED if self.exhausted else None
        record = self.configs[config_id]
        seed = record["queue"].pop(0)
        record["trials"][trial_id] = seed
        self.trials[trial_id] = config_id
        return {**record["params"], SEED_KEY: seed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trials:
            self.last[trial_id] = _kept(result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        config_id = self.trials.get(trial_id)
        if config_id is None:
            return
        record = self.configs[config_id]
        if result:
            self.last[trial_id] = _kept(result)
        if record["told"] is not None:
            # e.g. a failed seed that --resume ran again after its configuration was told
            log.info("seed %s of %s ended after it was told", record["trials"][trial_id], config_id)
            return
        last = self.last.get(trial_id, {})
        record["ended"][trial_id] = (
            "failed" if error else "finished" if metrics.TEST_ACC_NUMBER in last else "stopped"
        )
        if not record["queue"] and len(record["ended"]) == len(record["trials"]):
            self._tell(config_id)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # Tune's ConcurrencyLimiter (--max-concurrent under fifo) counts trials

    # -- Proposals -----------------------------------------------------------------------------

    def _with_seeds_left(self) -> str | None:
        return next((c for c, r in self.configs.items() if r["queue"]), None)

    def _started(self) -> int:
        return len(self.configs)

    def _in_flight(self) -> int:
        return sum(r["told"] is None for r in self.configs.values())

    def _propose(self) -> str | None:
        """A new configuration from the inner searcher (None: it has none now)."""
        for _ in range(MAX_REPEATS):
            config_id = f"config_{self._next_id:05d}"
            self._next_id += 1
            suggestion = self.searcher.suggest(config_id)
            if suggestion == Searcher.FINISHED:
                self.exhausted = True
                return None
            if suggestion is None:
                return None
            params = {**self.constant, **{k: readable(v) for k, v in suggestion.items()}}
            key = config_key(params)
            earlier = next((c for c, r in self.configs.items() if r["key"] == key), None)
            if earlier is None:
                self.configs[config_id] = {
                    "key": key,
                    "params": params,
                    "queue": list(self.seeds),
                    "trials": {},
                    "ended": {},
                    "told": None,
                }
                log.info("search: proposed %s", key)
                return config_id
            log.info("search: %s proposed again; it is not run twice", key)
            self.repeats[config_id] = earlier
            if self.configs[earlier]["told"] is not None:
                self._tell_inner(config_id, self.configs[earlier]["told"])
        log.warning("search: %d repeated proposals in a row: the space is exhausted", MAX_REPEATS)
        self.exhausted = True
        return None

    # -- Telling -------------------------------------------------------------------------------

    def _tell(self, config_id: str) -> None:
        record = self.configs[config_id]
        seed_of = record["trials"]
        ended = record["ended"]
        failed = sorted(seed_of[t] for t, how in ended.items() if how == "failed")
        values = {
            seed_of[t]: float(self.last[t][TOLD_METRIC])
            for t, how in ended.items()
            if how != "failed" and TOLD_METRIC in self.last.get(t, {})
        }
        stopped = [t for t, how in ended.items() if how == "stopped"]
        told: dict[str, Any] = {
            "value": statistics.fmean(values.values()) if values else None,
            "seeds": sorted(values),
            "failed": failed,
        }
        if stopped:
            epochs = [self.last[t].get(metrics.EPOCH) for t in stopped if t in self.last]
            told.update(status="pruned", epoch=max((e for e in epochs if e is not None), default=0))
        elif values:
            told["status"] = "complete"
        else:
            told["status"] = "failed"
        if failed and told["status"] != "failed":
            log.warning(
                "search: %s told without failed seed(s) %s",
                record["key"], ", ".join(map(str, failed)),
            )  # fmt: skip
        record["told"] = told
        log.info("search: told %s: %s", record["key"], told)
        self._tell_inner(config_id, told)
        for repeat, original in self.repeats.items():
            if original == config_id:
                self._tell_inner(repeat, told)

    def _tell_inner(self, inner_id: str, told: Mapping[str, Any]) -> None:
        metric = self.searcher.metric or TOLD_METRIC
        if told["status"] == "complete":
            self.searcher.on_trial_complete(inner_id, result={metric: told["value"]})
        elif told["status"] == "pruned":
            if told["value"] is not None:  # Optuna: the value at the rung, then PRUNED
                step = int(told["epoch"]) or 1
                at_rung = {metric: told["value"], TRAINING_ITERATION: step, metrics.EPOCH: step}
                self.searcher.on_trial_result(inner_id, at_rung)
            self.searcher.on_trial_complete(inner_id, result=None, error=False)
        else:
            self.searcher.on_trial_complete(inner_id, result=None, error=True)

    # -- State ---------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """JSON-ready state of the wrapper (the inner searcher saves its own)."""
        return json.loads(
            json.dumps(
                {
                    "configs": self.configs,
                    "trials": self.trials,
                    "last": self.last,
                    "repeats": self.repeats,
                    "exhausted": self.exhausted,
                    "next_id": self._next_id,
                }
            )
        )

    def set_state(self, state: dict[str, Any]) -> None:
        self.configs = state["configs"]
        self.trials = state["trials"]
        self.last = state["last"]
        self.repeats = state["repeats"]
        self.exhausted = state["exhausted"]
        self._next_id = state["next_id"]

    def save(self, checkpoint_path: str) -> None:
        """The wrapper's state to ``checkpoint_path``, the inner searcher's beside it."""
        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f)
        self.searcher.save(f"{checkpoint_path}.inner")

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))
        self.searcher.restore(f"{checkpoint_path}.inner")

    @property
    def told(self) -> dict[str, dict[str, Any]]:
        """What each configuration was told, by its key (told ones only)."""
        return {r["key"]: r["told"] for r in self.configs.values() if r["told"] is not None}


def _kept(result: Mapping[str, Any]) -> dict[str, Any]:
    """The few keys of a result the wrapper needs (its state stays small)."""
    keys = (metrics.EPOCH, TOLD_METRIC, metrics.TEST_ACC_NUMBER)
    return {k: result[k] for k in keys if k in result and _is_number(result[k])}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
