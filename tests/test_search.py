"""Sampled spaces and seed-aware search: the sweep file's checks, the wrapper driven by a fake
searcher, Optuna told seed means, the wrapper under the seed-aware ASHA, and a real Tune run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import Searcher

from jersey_ray import metrics
from jersey_ray.config import ConfigError, SweepSpec
from jersey_ray.results.runs import config_key
from jersey_ray.sweep import tuner
from jersey_ray.sweep.asha import SeedAwareASHA
from jersey_ray.sweep.execute import _describe_axis, sweep_record
from jersey_ray.sweep.resources import Plan
from jersey_ray.sweep.search import RandomSearch, SeedAwareSearch, describe, readable

BEST = metrics.BEST_VAL_ACC_NUMBER
LR = tune.loguniform(1e-4, 1e-2)


def spec(**kw) -> SweepSpec:
    base = {"name": "s", "phase": "s", "models": ("basic_sv2",), "seeds": (1, 2)}
    return SweepSpec(**{**base, **kw})


# -- The sweep file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"axes": {"lr": LR}}, "axes lr are sampled (Tune domains) but search is 'grid'"),
        ({"axes": {"lr": (1e-3, 1e-4)}, "num_samples": 4}, "num_samples/max_concurrent need"),
        ({"axes": {"lr": (1e-3,)}, "max_concurrent": 2}, "num_samples/max_concurrent need"),
        ({"axes": {"lr": (1e-3,)}, "search": "random"}, "search 'random' needs a sampled axis"),
        ({"axes": {"lr": LR}, "search": "bayes"}, "search must be one of grid, random, optuna"),
        ({"axes": {"lr": LR}, "search": "random", "num_samples": 0}, "num_samples must be >= 1"),
        ({"axes": {"lr": LR}, "search": "random", "max_concurrent": 0}, "max_concurrent must be"),
        ({"axes": {"lrr": LR}, "search": "random"}, "unknown TrainConfig key(s) lrr"),
        (
            {"axes": {"optimizer": tune.uniform(0, 1)}, "search": "random"},
            "axis optimizer samples a float but optimizer is str",
        ),
        (
            {"axes": {"epochs": tune.uniform(1, 5)}, "search": "random"},
            "axis epochs samples a float but epochs is int; use tune.choice([...]) or a tuple "
            "(or tune.randint for an int)",
        ),
        (
            {"axes": {"augment": tune.randint(0, 2)}, "search": "random"},
            "axis augment samples an integer but augment is bool",
        ),
        (
            {"axes": {"optimizer": tune.choice(["adam", 3])}, "search": "random"},
            "axis optimizer must be str, got 3",
        ),
        ({"axes": {"lr": 0.1}}, "axis lr must be a tuple (a grid) or a Tune domain"),
        ({"axes": {"lr": ()}}, "axis lr is an empty grid"),
        (
            {"axes": {"lr": LR, "weight_decay": (0.0, 1e-4)}, "search": "optuna"},
            "Optuna samples every axis; give weight_decay as tune.choice([...])",
        ),
    ],
)
def test_bad_spaces_are_one_line_errors(kw, message):
    with pytest.raises(ConfigError) as err:
        spec(**kw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_optuna_missing_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"needs Optuna: pip install -e \.\[optuna\]"):
        spec(axes={"lr": LR}, search="optuna")


def test_good_spaces_and_their_configuration_counts():
    assert spec(axes={"lr": (1e-3, 1e-4)}).configurations == 2  # the grid as before
    assert spec(models=("a", "b"), axes={"lr": (1e-3, 1e-4)}).configurations == 4
    mixed = spec(
        models=("a", "b"), axes={"lr": LR, "weight_decay": (0.0, 1e-4)}, search="random",
        num_samples=3,
    )  # fmt: skip
    assert mixed.configurations == 3 * 2 * 2 and list(mixed.sampled) == ["lr"]
    both = spec(
        axes={"lr": LR, "optimizer": tune.choice(["adam", "adamw"]), "epochs": tune.randint(1, 4)},
        search="optuna", num_samples=5, max_concurrent=2,
    )  # fmt: skip
    assert both.configurations == 5
    assert spec(axes={"lr": [1e-3, 1e-4]}).configurations == 2  # a list is a grid too


def test_domains_are_described_readably():
    assert describe(LR) == "loguniform(0.0001, 0.01)"
    assert describe(tune.uniform(0.0, 0.5)) == "uniform(0, 0.5)"
    assert describe(tune.randint(1, 4)) == "randint(1, 4)"
    assert describe(tune.qloguniform(1e-4, 1e-2, 1e-5)) == "qloguniform(0.0001, 0.01, 1e-05)"
    assert describe(tune.choice(["adam", "adamw"])) == 'choice(["adam", "adamw"])'
    assert _describe_axis((1e-3, 3e-4)) == [1e-3, 3e-4]
    assert readable(0.0012345678) == 0.001235 and readable(3) == 3 and readable("x") == "x"


def test_sweep_json_records_the_declared_space():
    from types import SimpleNamespace

    from jersey_ray.config import TrainConfig

    s = spec(axes={"lr": LR, "weight_decay": (0.0, 1e-4)}, search="random", num_samples=2)
    settings = SimpleNamespace(spec=s, train={"basic_sv2": TrainConfig()}, record=dict)
    plan = Plan(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=2)
    out = sweep_record(settings, plan, {}, {}, {})  # type: ignore[arg-type]
    assert out["axes"] == {"lr": "loguniform(0.0001, 0.01)", "weight_decay": [0.0, 1e-4]}
    assert out["search"] == {
        "algorithm": "random", "num_samples": 2, "max_concurrent": None, "configurations": 4,
    }  # fmt: skip
    grid = SimpleNamespace(spec=spec(axes={"lr": (1e-3, 3e-4)}), train=settings.train, record=dict)
    assert sweep_record(grid, plan, {}, {}, {})["axes"] == {"lr": [1e-3, 3e-4]}  # as before


# -- The wrapper, driven by a fake searcher ----------------------------------------------------


class FakeSearcher(Searcher):
    """Suggests ``proposals`` in order, then FINISHED; records what it is told."""

    def __init__(self, proposals: list[dict]) -> None:
        super().__init__(metric=BEST, mode="max")
        self.proposals = list(proposals)
        self.asked: list[str] = []
        self.told: dict[str, dict] = {}
        self.results: dict[str, list[dict]] = {}

    def suggest(self, trial_id):
        if not self.proposals:
            return Searcher.FINISHED
        self.asked.append(trial_id)
        return self.proposals.pop(0)

    def on_trial_result(self, trial_id, result):
        self.results.setdefault(trial_id, []).append(result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        assert trial_id not in self.told, f"{trial_id} told twice"
        self.told[trial_id] = {"result": result, "error": error}

    def get_state(self):
        return {"proposals": self.proposals, "asked": self.asked, "told": self.told}

    def set_state(self, state):
        self.proposals, self.asked, self.told = state["proposals"], state["asked"], state["told"]

    def save(self, path):
        Path(path).write_text(json.dumps(self.get_state()))

    def restore(self, path):
        self.set_state(json.loads(Path(path).read_text()))


def finish(search: SeedAwareSearch, trial_id: str, value: float, epoch: int = 3) -> None:
    search.on_trial_result(trial_id, {metrics.EPOCH: epoch - 1, BEST: value - 0.1})
    final = {metrics.EPOCH: epoch, BEST: value, metrics.TEST_ACC_NUMBER: 0.5}
    search.on_trial_complete(trial_id, result=final)


def suggest_all(search: SeedAwareSearch, n: int) -> list[tuple[str, dict]]:
    out = []
    for i in range(n):
        trial_id = f"t{len(search.trials) + i:03d}"
        got = search.suggest(trial_id)
        assert isinstance(got, dict), got
        out.append((trial_id, got))
    return out


def test_one_suggestion_runs_every_seed_with_the_same_params():
    fake = FakeSearcher([{"lr": 0.0012345678}, {"lr": 0.002}])
    search = SeedAwareSearch(fake, seeds=(1, 2, 3), num_samples=2, max_concurrent=2,
                             constant={"model": "m"})  # fmt: skip
    trials = suggest_all(search, 6)
    assert len(fake.asked) == 2, "one inner suggestion per configuration"
    assert [p["seed"] for _, p in trials] == [1, 2, 3, 1, 2, 3]
    first = [p for _, p in trials[:3]]
    assert all({k: v for k, v in p.items() if k != "seed"} == {"model": "m", "lr": 0.001235}
               for p in first)  # fmt: skip
    # Tune's evaluated_params are the suggestion: the ASHA's key is the same for every seed
    assert len({config_key(p) for p in first}) == 1
    assert search.suggest("t-more") == Searcher.FINISHED


def test_seed_mean_is_told_once_when_every_seed_ended():
    fake = FakeSearcher([{"lr": 0.001}])
    search = SeedAwareSearch(fake, seeds=(1, 2, 3), num_samples=1)
    (a, _), (b, _), (c, _) = suggest_all(search, 3)
    finish(search, a, 0.6)
    finish(search, b, 0.7)
    assert fake.told == {}, "told before the last seed ended"
    finish(search, c, 0.8)
    (inner_id,) = fake.told
    assert fake.told[inner_id]["result"][BEST] == pytest.approx(statistics.fmean([0.6, 0.7, 0.8]))
    assert search.told["lr=0.001"]["status"] == "complete"
    assert search.told["lr=0.001"]["seeds"] == [1, 2, 3]


def test_a_failed_seed_is_left_out_and_named(caplog):
    fake = FakeSearcher([{"lr": 0.001}, {"lr": 0.01}])
    search = SeedAwareSearch(fake, seeds=(1, 2), num_samples=2, max_concurrent=2)
    (a, _), (b, _), (c, _), (d, _) = suggest_all(search, 4)
    finish(search, a, 0.6)
    search.on_trial_complete(b, error=True)
    search.on_trial_complete(c, error=True)
    search.on_trial_complete(d, error=True)
    told = search.told
    assert told["lr=0.001"] == {"value": 0.6, "seeds": [1], "failed": [2], "status": "complete"}
    assert "told without failed seed(s) 2" in caplog.text
    assert told["lr=0.01"]["status"] == "failed"
    first, second = fake.asked
    assert fake.told[first]["result"] == {BEST: 0.6}
    assert fake.told[second] == {"result": None, "error": True}


def test_a_pruned_configuration_is_told_pruned_at_its_rung():
    fake = FakeSearcher([{"lr": 0.001}])
    search = SeedAwareSearch(fake, seeds=(1, 2, 3), num_samples=1)
    (a, _), (b, _), (c, _) = suggest_all(search, 3)
    for trial_id, value in ((a, 0.2), (b, 0.3)):  # paused at the rung, then stopped there
        search.on_trial_result(trial_id, {metrics.EPOCH: 2, BEST: value})
        search.on_trial_complete(trial_id)
    search.on_trial_complete(c, result={metrics.EPOCH: 2, BEST: 0.4})  # STOP on its report
    (inner_id,) = fake.asked
    assert fake.results[inner_id] == [
        {BEST: pytest.approx(0.3), "training_iteration": 2, metrics.EPOCH: 2}
    ]
    assert fake.told[inner_id] == {"result": None, "error": False}
    assert search.told["lr=0.001"]["status"] == "pruned" and search.told["lr=0.001"]["epoch"] == 2


def test_in_flight_limit_and_finished_when_the_inner_searcher_is_exhausted():
    fake = FakeSearcher([{"lr": 0.001}, {"lr": 0.002}])
    search = SeedAwareSearch(fake, seeds=(1, 2), num_samples=10, max_concurrent=1)
    (a, _), (b, _) = suggest_all(search, 2)
    assert search.suggest("wait") is None, "one configuration in flight at most"
    finish(search, a, 0.5)
    finish(search, b, 0.5)
    (c, _), (d, _) = suggest_all(search, 2)
    assert search.suggest("wait") is None and not search.exhausted
    finish(search, c, 0.5)
    finish(search, d, 0.5)
    assert search.suggest("end") == Searcher.FINISHED  # the fake had no third proposal
    assert search.exhausted


def test_a_repeated_proposal_is_not_run_again_and_told_the_same():
    fake = FakeSearcher([{"lr": 0.001}, {"lr": 0.0010000001}, {"lr": 0.003}])
    search = SeedAwareSearch(fake, seeds=(1,), num_samples=3, max_concurrent=1)
    ((a, _),) = suggest_all(search, 1)
    finish(search, a, 0.5)
    ((b, params),) = suggest_all(search, 1)
    assert params["lr"] == 0.003, "the repeat of 0.001 was skipped"
    first, repeat, _ = fake.asked
    assert fake.told[repeat] == fake.told[first] == {"result": {BEST: 0.5}, "error": False}
    finish(search, b, 0.4)
    assert search.suggest("x") == Searcher.FINISHED
    assert len(search.configs) == 2, "the repeat did not count as a configuration run"


def test_save_and_restore_keep_pending_seeds_and_what_was_told(tmp_path):
    def fresh() -> tuple[FakeSearcher, SeedAwareSearch]:
        fake = FakeSearcher([{"lr": 0.001}, {"lr": 0.002}, {"lr": 0.003}])
        return fake, SeedAwareSearch(fake, seeds=(1, 2, 3), num_samples=3, max_concurrent=2)

    fake, search = fresh()
    trials = suggest_all(search, 4)  # config 1 whole, config 2 seed 1 only
    for trial_id, _ in trials[:3]:
        finish(search, trial_id, 0.5)
    search.on_trial_result(trials[3][0], {metrics.EPOCH: 1, BEST: 0.1})
    search.save(str(tmp_path / "state.json"))
    fake2, restored = fresh()
    restored.restore(str(tmp_path / "state.json"))
    assert restored.get_state() == search.get_state()
    assert fake2.told == fake.told and len(fake2.told) == 1
    # the pending seeds 2 and 3 of config 2 come next, then config 3; seed 1 still counts
    nxt = suggest_all(restored, 2)
    assert [(p["lr"], p["seed"]) for _, p in nxt] == [(0.002, 2), (0.002, 3)]
    for trial_id in [trials[3][0], *(t for t, _ in nxt)]:
        finish(restored, trial_id, 0.7)
    assert restored.told["lr=0.002"]["seeds"] == [1, 2, 3]
    # the Tune route: get_state/set_state here, the inner searcher's own save/restore
    again = SeedAwareSearch(FakeSearcher([]), seeds=(1, 2, 3), num_samples=3, max_concurrent=2)
    again.set_state(json.loads(json.dumps(restored.get_state())))
    assert again.told == restored.told


@pytest.mark.parametrize("limited", [False, True])
def test_tune_saves_and_restores_the_wrapper_and_the_inner_searcher(tmp_path, limited):
    """Tuner.restore's route: SearchGenerator.save_to_dir / restore_from_dir walk ``.searcher``
    (with --max-concurrent under fifo, a ConcurrencyLimiter sits on top)."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    def generator() -> tuple[SeedAwareSearch, SearchGenerator]:
        inner = RandomSearch({"lr": LR}, ("m",), {}, 3, 0)
        search = SeedAwareSearch(inner, seeds=(1, 2), num_samples=3, max_concurrent=1)
        top = ConcurrencyLimiter(search, max_concurrent=2) if limited else search
        return search, SearchGenerator(top)

    search, gen = generator()
    (a, pa), (b, _) = suggest_all(search, 2)
    finish(search, a, 0.4)
    finish(search, b, 0.6)
    (c, _), _ = suggest_all(search, 2)
    gen.save_to_dir(str(tmp_path), session_str="s1")
    restored, gen2 = generator()
    gen2.restore_from_dir(str(tmp_path))
    assert restored.get_state() == search.get_state()
    assert restored.searcher.index == 2, "the inner searcher's own state came back"
    assert restored.told == search.told and list(restored.told) == [config_key(pa)]
    finish(restored, c, 0.5)
    assert restored.suggest("x") is None, "the second seed of config 2 is still running"


def test_random_search_draws_are_seeded_shared_and_crossed_with_the_grid(tmp_path):
    def draws(seed: int) -> list[dict]:
        rs = RandomSearch({"lr": LR}, ("a", "b"), {"weight_decay": (0.0, 1e-4)}, 3, seed)
        out = []
        while (got := rs.suggest("x")) != Searcher.FINISHED:
            out.append(got)
        return out

    got = draws(7)
    assert got == draws(7) and got != draws(8)
    assert len(got) == 3 * 2 * 2 and len({config_key(c) for c in got}) == 12
    lrs = sorted({c["lr"] for c in got})
    assert len(lrs) == 3 and all(1e-4 <= x <= 1e-2 and readable(x) == x for x in lrs)
    small = RandomSearch({"optimizer": tune.choice(["adam", "adamw"])}, ("a",), {}, 5, 0)
    assert len(small.configs) == 2, "a repeated draw is drawn again, never run twice"
    rs = RandomSearch({"lr": LR}, ("a",), {}, 3, 0)
    rs.suggest("x")
    rs.save(str(tmp_path / "r.json"))
    again = RandomSearch({"lr": LR}, ("a",), {}, 3, 0)
    again.restore(str(tmp_path / "r.json"))
    assert again.suggest("y") == rs.suggest("y")


def test_make_search_builds_the_searcher_of_each_kind():
    plan = Plan(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=3)
    assert tuner.make_search(spec(axes={"lr": (1e-3,)}), plan) is None
    space = tuner.param_space(spec(axes={"lr": LR}, search="random"), {"epochs": 2})
    assert space == {"epochs": 2}, "the searcher gives model, axes and seed"
    grid = tuner.param_space(spec(axes={"lr": (1e-3, 1e-4)}), {"epochs": 2})
    assert set(grid) == {"epochs", "model", "lr", "seed"}
    rnd = tuner.make_search(spec(axes={"lr": LR}, search="random", num_samples=4), plan)
    assert isinstance(rnd.searcher, RandomSearch) and rnd.num_samples == 4
    assert rnd.max_concurrent == 2, "3 slots over 2 seeds: 2 configurations in flight"
    opt = tuner.make_search(
        spec(axes={"lr": LR}, search="optuna", num_samples=3, max_concurrent=1), plan
    )
    from ray.tune.search.optuna import OptunaSearch

    assert isinstance(opt.searcher, OptunaSearch) and opt.max_concurrent == 1
    assert opt.constant == {"model": "basic_sv2"}


# -- Optuna, told seed means -------------------------------------------------------------------


def test_optuna_is_told_one_seed_mean_per_configuration():
    from ray.tune.search.optuna import OptunaSearch

    s = spec(axes={"lr": LR}, search="optuna", num_samples=4, max_concurrent=1)
    search = tuner.make_search(s, Plan(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=2))
    assert isinstance(search.searcher, OptunaSearch)
    expected = []
    for n in range(4):
        trials = suggest_all(search, 2)
        lr = trials[0][1]["lr"]
        assert all(p["lr"] == lr and p["model"] == "basic_sv2" for _, p in trials)
        values = [0.1 * n + 0.01 * p["seed"] for _, p in trials]
        if n == 2:  # pruned by the ASHA at epoch 1
            for trial_id, value in zip((t for t, _ in trials), values, strict=True):
                search.on_trial_result(trial_id, {metrics.EPOCH: 1, BEST: value})
                search.on_trial_complete(trial_id)
        else:
            for (trial_id, _), value in zip(trials, values, strict=True):
                finish(search, trial_id, value)
            expected.append(pytest.approx(statistics.fmean(values)))
    study = search.searcher._ot_study  # no public accessor in Ray 2.60
    import optuna

    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3
    assert states.count(optuna.trial.TrialState.PRUNED) == 1
    complete = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete == expected
    pruned = next(t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    assert pruned.intermediate_values == {1: pytest.approx(0.2 + 0.015)}
    assert search.suggest("end") == Searcher.FINISHED


# -- Under the seed-aware ASHA (Tune's controller simulated) -----------------------------------


def test_sampled_space_under_asha_judges_whole_configurations(tmp_path):
    from asha_sim import FakeController, Sim, Watch, check_outcome

    fake = FakeSearcher([{"lr": x} for x in (0.006, 0.005, 0.004, 0.003, 0.002, 0.001)])
    search = SeedAwareSearch(fake, seeds=(1, 2, 3), num_samples=6, max_concurrent=2,
                             constant={"model": "m"})  # fmt: skip
    sched = SeedAwareASHA(max_t=6, grace_period=2, reduction_factor=2)
    ctl = FakeController(sched)
    finished: list[Trial] = []

    def add_from_search() -> None:
        # Tune asks the searcher whenever no trial is pending: here, until it has none now
        while isinstance(params := search.suggest(f"s{len(ctl.trials):03d}"), dict):
            trial_id = f"s{len(ctl.trials):03d}"
            trial = Trial(
                "__fake", config={**params, "epochs": 6}, evaluated_params=params, stub=True,
                trial_id=trial_id,
            )  # fmt: skip
            ctl.readd(trial)

    def acc(trial: Trial, epoch: int) -> float:  # lr 0.006 best; seeds disagree a little
        return trial.config["lr"] * 100 + 0.01 * trial.config["seed"] + 0.001 * epoch

    class Told(Sim):
        def step(self) -> bool:
            add_from_search()
            before = {t.trial_id: t.status for t in ctl.trials}
            going = super().step()
            for t in ctl.trials:  # what Tune tells the searcher when a trial ends
                if before.get(t.trial_id) not in (Trial.TERMINATED, Trial.ERROR) and t.status in (
                    Trial.TERMINATED, Trial.ERROR,
                ):  # fmt: skip
                    last = {**t.last_result, BEST: t.last_result.get(metrics.VAL_ACC_NUMBER, 0)}
                    search.on_trial_complete(t.trial_id, result=last if last else None)
            add_from_search()
            return going or any(t.status not in (Trial.TERMINATED, Trial.ERROR)
                                for t in ctl.trials)  # fmt: skip

    sim = Told(ctl, acc, epochs=6, watch=Watch(2))
    sim.run()
    finished = sim.finished
    assert len(ctl.trials) == 18 and len(fake.asked) == 6, "arrived over time, 3 seeds each"
    check_outcome(sched, ctl, finished)  # whole configurations, never partial seeds
    for rung, decided in sched.decisions.items():
        for d in decided.values():
            assert d["seeds"] == [1, 2, 3] and not d["missing"], (rung, d)
    assert sched.pruned, "some configuration was pruned"
    told = search.told
    assert set(told) == {f"lr={x},model=m" for x in (0.001, 0.002, 0.003, 0.004, 0.005, 0.006)}
    for key, record in sched.pruned.items():
        assert told[key]["status"] == "pruned" and told[key]["epoch"] == record["epoch"]
    done = {config_key(t.evaluated_params) for t in finished}
    assert done and not done & set(sched.pruned), "no pruned configuration has finished seeds"
    assert all(told[k]["status"] == "complete" for k in done)


# -- A real Tune run with Optuna (CPU, tiny data) ----------------------------------------------

SWEEP_FILE = """
from ray import tune
from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="optuna_tiny", phase="optuna_tiny", models=("basic_sv2",), seeds=(1, 2),
    axes={"lr": tune.loguniform(1e-4, 3e-2)}, search="optuna", num_samples=3, max_concurrent=1,
    scheduler="asha", grace_period=1, reduction_factor=2,
)
"""


@pytest.mark.slow
def test_real_optuna_sweep_tells_seed_means_and_writes_the_table(tmp_path):
    from jersey_ray.data import synth

    root = tmp_path / "data"
    synth.generate(root, sequences=48, size=(32, 16), frames=(2, 4), seed=3, progress=False)
    (tmp_path / "optuna_tiny.py").write_text(SWEEP_FILE)
    args = [
        sys.executable, "-m", "jersey_ray.sweep", str(tmp_path / "optuna_tiny.py"), "--data",
        str(root), "--size", "32x16", "--pretrained", "none", "--epochs", "2",
        "--storage", str(tmp_path / "runs"), "--name", "tiny",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    exp = tmp_path / "runs" / "tiny"
    record = json.loads((exp / "sweep.json").read_text())
    assert record["axes"] == {"lr": "loguniform(0.0001, 0.03)"}
    assert record["search"]["algorithm"] == "optuna"
    configs: dict[float, list[list[dict]]] = {}
    for params in exp.glob("*/params.json"):
        p = json.loads(params.read_text())
        rows = [json.loads(x) for x in (params.parent / "result.json").read_text().splitlines()]
        configs.setdefault(p["lr"], []).append(rows)
    assert len(configs) == 3 and all(len(seeds) == 2 for seeds in configs.values())
    # what Optuna was told: one value per configuration, the seed mean of best_val_acc_number
    state = max(exp.glob("searcher-state-*.pkl"))
    import pickle

    study = pickle.loads(state.read_bytes())["_ot_study"]
    pruned = (
        json.loads((exp / "pruned.json").read_text()) if (exp / "pruned.json").is_file() else {}
    )
    assert len(study.trials) == 3
    for trial in study.trials:
        seeds = configs[readable(trial.params["lr"])]
        mean = statistics.fmean(rows[-1][BEST] for rows in seeds)
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(mean)
        else:
            assert trial.state.name == "PRUNED"
            assert f"lr={readable(trial.params['lr'])},model=basic_sv2" in pruned
    summary = json.loads((tmp_path / "results" / "tiny" / "summary.json").read_text())
    names = {m["config"] for m in summary["models"]}
    assert names == {f"basic_sv2/lr={lr}" for lr in configs}
