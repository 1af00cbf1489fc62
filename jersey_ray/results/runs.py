"""Reading a sweep's run folder (run-folder contract): trials, their rows and how they ended.

Only what the trials reported through Tune is read: ``sweep.json``, each trial's ``params.json``
and ``result.json`` (JSON lines), ``error.txt`` and ``pruned.json``. A run in object storage
(``s3://...``) is read the same way from a local copy of its small files
(:mod:`.remote_run`); its checkpoints stay in storage until a reader chooses one
(:func:`latest_checkpoint` fetches that one file). A bad file or line is
skipped with a warning and counted in :attr:`Run.skipped`, so it shows up in the phase table.
Every choice of a trial or configuration here is made on validation metrics.

No torch or Ray import (:mod:`jersey_ray.metrics` loads torch only to count): tools that only
read results should not pay for them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from jersey_ray.errors import UserError
from jersey_ray.metrics import BEST_VAL_ACC_NUMBER, EPOCH, TEST_ACC_NUMBER
from jersey_ray.storage import is_uri

log = logging.getLogger(__name__)

SEED_KEY = "seed"


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{name}/"))
        else:
            flat[name] = v
    return flat


def _as_json(value: Any) -> Any:
    # Tune hands the scheduler a grid value as declared (a tuple), params.json holds it as a list
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


def config_key(config: Mapping[str, Any]) -> str:
    """The configuration a trial belongs to: its sorted params without the seed.

    ``{"model": "basic_r18", "seed": 42, "lr": 0.001}`` -> ``"lr=0.001,model=basic_r18"``.
    Nested dicts are flattened with ``/`` (Tune's convention), so the key is stable whatever
    the insertion order; tuples read as lists (``size=[64, 32]``), as they do once stored as
    JSON. The seed-aware ASHA keys ``pruned.json`` with it.
    """
    flat = sorted(_flatten(config).items())
    return ",".join(f"{k}={_as_json(v)}" for k, v in flat if k != SEED_KEY)


@dataclass
class Trial:
    """One trial as reported: its rows (one per epoch) and how it ended."""

    dir: str
    """Trial folder relative to the run folder (POSIX)."""
    path: Path
    params: dict[str, Any]
    """Tune's ``params.json``: the trial's TrainConfig keys, model and seed included."""
    model: str
    seed: int
    rows: list[dict[str, Any]]
    error: tuple[str, str] | None
    """First and last non-empty line of ``error.txt``."""
    config: str = ""
    """Configuration: ``<model>``, or ``<model>/<k>=<v>,...`` with the params that vary within
    the run besides model and seed (the sweep's extra axes); set by :func:`read_run`."""
    in_pruned_json: bool = False
    """The scheduler pruned the trial's configuration (``pruned.json``); set by
    :func:`read_run`."""
    remote: str | None = None
    """The trial folder's URI when the run is in object storage (``path`` is then its local
    copy without checkpoints); set by :func:`read_run`."""
    remote_checkpoints: tuple[str, ...] = ()
    """``checkpoint_*/best.pt`` paths in ``remote``, sorted, not yet fetched."""

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    @property
    def status(self) -> str:
        """finished (last row has test metrics), failed (error.txt) or pruned (stopped).

        A configuration in ``pruned.json`` was pruned as a whole: a seed of it that reached its
        test anyway (it ran ahead of the rung) counts as pruned, so no pruned configuration
        enters the statistics. A "pruned" trial without a pruning record is reported as
        unfinished by :func:`unfinished_trials`.
        """
        tested = TEST_ACC_NUMBER in self.last
        if tested and not self.in_pruned_json:
            return "finished"
        return "failed" if self.error and not tested else "pruned"

    def by_epoch(self, key: str) -> dict[int, float]:
        """``key`` per reported epoch (a re-reported epoch keeps its last value)."""
        return {int(r[EPOCH]): r[key] for r in self.rows if EPOCH in r and key in r}


@dataclass
class Run:
    path: Path
    sweep: dict[str, Any]
    trials: list[Trial]
    pruned: dict[str, dict[str, Any]]
    skipped: list[dict[str, str]]
    """``{"path", "reason"}`` for every file or line that could not be used."""
    source: str | None = None
    """The run's URI when it is in object storage (``path`` is then a local copy of its small
    files)."""

    @property
    def location(self) -> str:
        """Where the run is, as the user named it: its URI, else its folder."""
        return self.source or self.path.as_posix()


def record_skip(skipped: list[dict[str, str]], path: str, reason: str) -> None:
    """Warn and count an input that could not be used (``path`` relative to the run folder, or
    ``<phase>/summary.json`` for another phase's summary)."""
    log.warning("skipped %s: %s", path, reason)
    skipped.append({"path": path, "reason": reason})


def _read_json(path: Path, rel: str, skipped: list[dict[str, str]]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        record_skip(skipped, rel, f"unreadable JSON ({type(err).__name__}: {err})")
        return None


def _read_rows(path: Path, rel: str, skipped: list[dict[str, str]]) -> list[dict[str, Any]]:
    if not path.is_file():
        record_skip(skipped, rel, "missing result.json")
        return []
    rows = []
    for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            record_skip(skipped, f"{rel}:{no}", f"malformed result line ({err.msg})")
            continue
        if not isinstance(row, dict):
            record_skip(skipped, f"{rel}:{no}", "result line is not a JSON object")
            continue
        rows.append(row)
    return rows


def _error_lines(path: Path) -> tuple[str, str] | None:
    if not path.is_file():
        return None
    lines = [x.strip() for x in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [x for x in lines if x] or ["(empty error.txt)"]
    return lines[0], lines[-1]


def varying_params(trials: list[Trial]) -> list[str]:
    """The params besides model and seed whose value differs between trials (the axes)."""
    flats = [_flatten(t.params) for t in trials]
    keys = sorted({k for f in flats for k in f} - {"model", SEED_KEY})
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]


def _assign_configs(trials: list[Trial]) -> None:
    """Name each trial's configuration by the params that vary across the run (the axes)."""
    axes = varying_params(trials)
    for trial in trials:
        flat = _flatten(trial.params)
        extra = ",".join(f"{k}={flat.get(k)}" for k in axes)
        trial.config = f"{trial.model}/{extra}" if extra else trial.model


def _read_trial(run_dir: Path, params_path: Path, skipped: list[dict[str, str]]) -> Trial | None:
    trial_dir = params_path.parent
    rel = PurePosixPath(trial_dir.relative_to(run_dir).as_posix())
    params = _read_json(params_path, f"{rel}/params.json", skipped)
    if params is None:
        return None
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        record_skip(skipped, f"{rel}/params.json", "no model id in params.json")
        return None
    seed = params.get(SEED_KEY)
    if not isinstance(seed, int) or isinstance(seed, bool):
        record_skip(skipped, f"{rel}/params.json", "no integer seed in params.json")
        return None
    return Trial(
        dir=rel.as_posix(),
        path=trial_dir,
        params=params,
        model=params["model"],
        seed=seed,
        rows=_read_rows(trial_dir / "result.json", f"{rel}/result.json", skipped),
        error=_error_lines(trial_dir / "error.txt"),
    )


def _read_sweep(run_dir: Path, shown: str) -> dict[str, Any]:
    sweep_path = run_dir / "sweep.json"
    shown = f"{shown}/sweep.json"  # the file as the user named its run (a URI stays one)
    if not sweep_path.is_file():
        raise UserError(f"{shown} not found: pass a sweep's run folder (results/runs/<name>/)")
    try:
        sweep = json.loads(sweep_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{shown} is not valid JSON ({err}); re-run the sweep") from err
    if not isinstance(sweep, dict) or not isinstance(sweep.get("phase"), str):
        raise UserError(f"{shown} has no 'phase'; it was not written by jersey-ray sweep")
    return sweep


def _read_pruned(run_dir: Path, skipped: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    if not (run_dir / "pruned.json").is_file():
        return {}
    data = _read_json(run_dir / "pruned.json", "pruned.json", skipped)
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if isinstance(v, dict)}
    if data is not None:
        record_skip(skipped, "pruned.json", "not a JSON object")
    return {}


def read_run(run_dir: Path | str) -> Run:
    """Read a run folder (a path or a URI). Bad trial files are skipped with a warning and
    listed in ``skipped``."""
    source = None
    checkpoints: dict[str, tuple[str, ...]] = {}
    if is_uri(run_dir):
        from jersey_ray.results.remote_run import mirror_run

        source = str(run_dir).rstrip("/")
        mirror = mirror_run(source)
        run_dir, checkpoints = mirror.local, mirror.checkpoints
    run_dir = Path(run_dir)
    sweep = _read_sweep(run_dir, source or run_dir.as_posix())
    skipped: list[dict[str, str]] = []
    pruned = _read_pruned(run_dir, skipped)
    trials = [
        t
        for p in sorted(run_dir.rglob("params.json"))
        if (t := _read_trial(run_dir, p, skipped)) is not None
    ]
    _assign_configs(trials)
    trials.sort(key=lambda t: (t.config, t.seed, t.dir))
    run = Run(run_dir, sweep, trials, pruned, skipped, source=source)
    names = searched_names(run)
    for trial in trials:
        trial.in_pruned_json = bool(pruned) and searched_key(trial, names) in pruned
        if source is not None:
            trial.remote = f"{source}/{trial.dir}"
            trial.remote_checkpoints = checkpoints.get(trial.dir, ())
    return run


def searched_names(run: Run) -> set[str]:
    """The params the sweep searched besides the seed: the model, the axes sweep.json declares
    (an axis with one value is still searched) and any param that varies across the trials."""
    declared = run.sweep.get("axes")
    axes = set(declared) if isinstance(declared, dict) else set()
    return {"model", *axes, *varying_params(run.trials)}


def searched_key(trial: Trial, names: set[str]) -> str:
    """The seed-aware ASHA's key for ``trial`` (its ``pruned.json`` key): :func:`config_key` of
    the searched params ``names`` (:func:`searched_names`), as Tune's ``evaluated_params``."""
    return config_key({k: v for k, v in _flatten(trial.params).items() if k in names})


def choose_on_validation(trials: list[Trial]) -> Trial | None:
    """The finished trial with the highest ``best_val_acc_number``; never looks at test metrics.

    Ties go to the first trial in (config, seed) order. None when no finished trial reported it.
    """
    best: Trial | None = None
    for trial in trials:
        val = trial.last.get(BEST_VAL_ACC_NUMBER)
        if trial.status != "finished" or not isinstance(val, (int, float)):
            continue
        if best is None or val > best.last[BEST_VAL_ACC_NUMBER]:
            best = trial
    return best


def best_config_on_validation(summary: dict[str, Any]) -> str | None:
    """The configuration of a phase summary with the highest mean best val acc_number (e.g.
    Phase B's reference: the best Phase A model). Test metrics play no part."""
    scored = [
        (m["best_val_acc_number"]["mean"], m["config"])
        for m in summary.get("models", [])
        if m.get("best_val_acc_number", {}).get("n")
    ]
    return max(scored, key=lambda x: x[0])[1] if scored else None


def latest_checkpoint(trial: Trial) -> Path | None:
    """``best.pt`` of the trial's latest ``checkpoint_*`` folder (names are zero-padded); for a
    run in object storage that one file is fetched into the local copy (no other checkpoint)."""
    found = sorted(trial.path.glob("checkpoint_*/best.pt"))
    if found:
        return found[-1]
    if trial.remote is None or not trial.remote_checkpoints:
        return None
    from jersey_ray.results.remote_run import fetch_file

    rel = trial.remote_checkpoints[-1]
    return fetch_file(f"{trial.remote}/{rel}", trial.path / rel)


CHOICE_RULE = (
    f"highest {BEST_VAL_ACC_NUMBER} among the finished trials (validation only, never a test "
    "metric)"
)


def chosen_checkpoint(run: Run) -> tuple[Trial, Path]:
    """The trial chosen on validation (:func:`choose_on_validation`) and its latest best.pt:
    the model the collector analyses, the benchmark times and ``predict`` uses. A UserError
    says why there is none."""
    trial = choose_on_validation(run.trials)
    if trial is None:
        status = ", ".join(
            f"{sum(t.status == s for t in run.trials)} {s}"
            for s in sorted({t.status for t in run.trials})
        )
        raise UserError(
            f"{run.location}: no finished trial to choose from ({status or 'no trials'}); "
            "finish the sweep (--resume)"
        )
    path = latest_checkpoint(trial)
    if path is None:
        raise UserError(
            f"no checkpoint_*/best.pt in `{trial.dir}` (the trial chosen on validation)"
        )
    return trial, path


def failed_trials(run: Run) -> list[dict[str, Any]]:
    return [
        {
            "trial": t.dir,
            "model": t.model,
            "config": t.config,
            "seed": t.seed,
            "epochs_reported": len(t.rows),
            "error_first_line": t.error[0],
            "error_last_line": t.error[1],
        }
        for t in run.trials
        if t.status == "failed" and t.error
    ]


def unfinished_trials(run: Run, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials stopped without test metrics, error or pruning record: interrupted, resumable.

    ``records`` are the configurations' summary records (their ``pruned`` entries).
    """
    recorded = {r["config"] for r in records if (r["pruned"] or {}).get("source") == "pruned.json"}
    return [
        {"trial": t.dir, "config": t.config, "seed": t.seed, "epochs_reported": len(t.rows)}
        for t in run.trials
        if t.status == "pruned" and t.config not in recorded
    ]
