"""The sweep from Python: run one and get its table back as data.

.. code-block:: python

    from jersey_ray import sweep

    result = sweep.run("phaseB", quick=True, models="basic_mv3s", overrides={"lr": 3e-3})
    result.records          # the table: one dict per configuration, as summary.json holds it
    result.dataframe()      # the same as a pandas DataFrame (pandas installed)
    result.best.checkpoint  # the trial chosen on validation and its best.pt
    again = sweep.collect(result.run_dir)  # a finished run folder, without Ray

Keyword options are the command line's flags (``gpus_per_trial`` is ``--gpus-per-trial``;
:class:`~jersey_ray.sweep.options.RunOptions`); ``overrides`` is ``--set``. Problems the caller
can fix raise :class:`~jersey_ray.errors.UserError`, before any data work where the command line
would fail before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jersey_ray.config import SweepSpec
from jersey_ray.errors import UserError

if TYPE_CHECKING:
    import pandas

    from jersey_ray.results.runs import Run


@dataclass(frozen=True)
class BestTrial:
    """The finished trial with the highest ``best_val_acc_number`` (validation only), the one
    ``predict --run`` and the collector's analysis figures use."""

    trial: str
    """Its folder name in the run, e.g. ``basic_mv3s-seed42``."""
    model: str
    """Model id."""
    config: str
    """Its configuration, as the table names it (the model, and the axes' values if any)."""
    seed: int
    """Its seed."""
    params: dict[str, Any]
    """Tune's parameters of the trial (model, seed, axes and the shared TrainConfig keys)."""
    best_val_acc_number: float
    """Its best validation acc_number, the value it was chosen on."""
    best_epoch: int | None
    """The epoch of that value."""
    path: Path
    """The trial's folder."""
    checkpoint: Path | None
    """Its ``best.pt`` (None when the run folder holds no checkpoint)."""


@dataclass(frozen=True)
class SweepResult:
    """A finished (or interrupted) sweep: its table as data, its choice on validation, its
    files."""

    name: str
    """The sweep's name (``sweep.json``)."""
    run_dir: Path | str
    """The experiment folder that was collected (Tune's trials, ``sweep.json``): a local path,
    or the URI of a run in object storage (read where it is)."""
    out_dir: Path
    """The folder of the table, summary and figures."""
    records: list[dict[str, Any]]
    """The table: one record per configuration, exactly ``summary.json``'s ``models``."""
    best: BestTrial | None
    """The trial chosen on validation; None when no trial finished."""
    summary: dict[str, Any]
    """All of ``summary.json`` (comparisons, report check, compute, failed and unfinished
    trials)."""

    @property
    def table_md(self) -> Path:
        """The table as Markdown."""
        return self.out_dir / "table.md"

    @property
    def table_csv(self) -> Path:
        """The table as CSV."""
        return self.out_dir / "table.csv"

    @property
    def summary_json(self) -> Path:
        """Everything the table shows, as JSON."""
        return self.out_dir / "summary.json"

    @property
    def figures(self) -> list[Path]:
        """The figures written beside the table."""
        return [self.out_dir / name for name in self.summary.get("figures", [])]

    @property
    def complete(self) -> bool:
        """No trial failed or was left unfinished (an interrupted sweep: ``resume=True``)."""
        return not self.summary.get("failed") and not self.summary.get("unfinished")

    def dataframe(self) -> pandas.DataFrame:
        """The records as a pandas DataFrame, nested statistics flattened into columns such as
        ``test_acc_number.mean``. Needs pandas."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "SweepResult.dataframe() needs pandas: pip install pandas (the records are in "
                ".records without it)"
            ) from None
        return pandas.json_normalize(self.records)

    to_pandas = dataframe


def run(
    sweep: str | Path | SweepSpec, *, out: str | Path | None = None, **options: Any
) -> SweepResult:
    """Run one sweep as ``python -m jersey_ray.sweep`` does and return its result.

    ``sweep``: a sweep's name (``phaseB``), a path to a sweep file, or a
    :class:`~jersey_ray.config.SweepSpec`. ``options``: the command line's flags as keyword
    arguments (``quick=True``, ``models="basic_mv3s"``, ``seeds=[42]``, ``storage=...``,
    ``overrides={"lr": 3e-3}`` for ``--set``). ``out``: the table's folder (default
    ``results/<experiment name>``). Ray is shut down at the end if this call started it.
    """
    from jersey_ray.sweep import launch
    from jersey_ray.sweep.execute import finish
    from jersey_ray.sweep.options import RunOptions
    from jersey_ray.sweep.settings import resolve

    opts = RunOptions.from_kwargs(**options)
    spec = _spec(sweep)
    import ray

    started = not ray.is_initialized()
    try:
        settings = resolve(spec, launch.choose_preset(opts), opts)
        [planned] = launch.plan_sweeps([settings], opts)
        launch.start(planned, opts)
        table = Path(out) if out is not None else planned.out
        finish(planned.exp_path, str(table))
    finally:
        if started:
            ray.shutdown()
    return _read(table.absolute())


def collect(run_dir: str | Path, out: str | Path | None = None) -> SweepResult:
    """The result of a finished run folder (``results/runs/<name>``, or its URI): collects it
    again (:func:`jersey_ray.results.collect.collect`: ``out`` defaults to ``results/<phase>``)
    and reads it back. Needs no Ray."""
    from jersey_ray.results.collect import collect as collect_run
    from jersey_ray.storage import is_uri

    location: str | Path = str(run_dir)
    if not is_uri(str(run_dir)):
        # absolute: the result names the same files after the caller changes folders
        location = Path(run_dir).absolute()
        if not (location / "sweep.json").is_file():
            raise UserError(
                f"{run_dir} holds no sweep.json: pass a sweep's run folder (results/runs/<name>)"
            )
    summary = collect_run(location, out)
    return _read(Path(summary["table_md"]).parent.absolute())


def _spec(sweep: str | Path | SweepSpec) -> SweepSpec:
    from jersey_ray.sweep.settings import load_sweep

    if isinstance(sweep, SweepSpec):
        return sweep
    name = str(sweep)
    if name == "all":
        raise UserError("sweep.run runs one sweep: call it once per phase (phase0, phaseA, phaseB)")
    return load_sweep(name)


def _read(out_dir: Path) -> SweepResult:
    """The result as the collector wrote it (``summary.json``, read back: the records are what
    the file holds)."""
    from jersey_ray.results.runs import read_run
    from jersey_ray.storage import is_uri

    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    location = str(summary["run_dir"])
    return SweepResult(
        name=str(summary.get("name") or location.rstrip("/").rsplit("/", 1)[-1]),
        run_dir=location if is_uri(location) else Path(location),
        out_dir=out_dir,
        records=summary["models"],
        best=best_trial(read_run(location)),
        summary=summary,
    )


def best_trial(run: Run) -> BestTrial | None:
    """The run's trial chosen on validation (:func:`~jersey_ray.results.runs.choose_on_validation`)
    and its latest ``best.pt``."""
    from jersey_ray import metrics as M
    from jersey_ray.results.runs import choose_on_validation, latest_checkpoint

    trial = choose_on_validation(run.trials)
    if trial is None:
        return None
    epoch = trial.last.get(M.BEST_EPOCH)
    return BestTrial(
        trial=trial.dir,
        model=trial.model,
        config=trial.config,
        seed=trial.seed,
        params=dict(trial.params),
        best_val_acc_number=float(trial.last[M.BEST_VAL_ACC_NUMBER]),
        best_epoch=int(epoch) if isinstance(epoch, (int, float)) else None,
        path=trial.path,
        checkpoint=latest_checkpoint(trial),
    )
