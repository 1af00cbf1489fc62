"""The experiment trackers users already run, through Ray Tune's own logger callbacks:
``--mlflow URI`` (:class:`ray.air.integrations.mlflow.MLflowLoggerCallback`) and
``--wandb PROJECT`` (:class:`ray.air.integrations.wandb.WandbLoggerCallback`).

Both run on the driver. Each trial becomes one run with its config as parameters, every epoch's
metrics (step = Tune's ``training_iteration``) and the tags ``sweep``, ``model``, ``seed`` (and
the sweep's other axes), plus a ``group``: the trial name without its seed, so that the UIs put
the seeds of one configuration together. Ray's callbacks only take tags for the whole
experiment, hence the two subclasses that add each trial's own.

The packages are optional extras (``jersey-ray[mlflow]``, ``jersey-ray[wandb]``); asking for a
tracker that is not installed is a usage error when the command line is parsed, before any
data work.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from jersey_ray.errors import UserError

if TYPE_CHECKING:
    from jersey_ray.sweep.options import RunOptions

log = logging.getLogger(__name__)

_URI_SCHEMES = ("file", "http", "https", "databricks", "sqlite", "postgresql", "mysql", "uc")


def _installed(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise argparse.ArgumentTypeError(
            f"needs the {module} package: pip install 'jersey-ray[{extra}]'"
        )


def mlflow_uri(text: str) -> str:
    """argparse type: a tracking URI, or a folder for a local file store (made absolute)."""
    _installed("mlflow", "mlflow")
    scheme = urlparse(text).scheme
    if scheme in _URI_SCHEMES or text.startswith("databricks"):
        return text
    if scheme:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an MLflow tracking URI (http://HOST:PORT, file:/PATH, or a folder)"
        )
    return Path(text).resolve().as_uri()


def wandb_project(text: str) -> str:
    """argparse type: a Weights & Biases project name."""
    _installed("wandb", "wandb")
    if not text.strip() or "/" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a W&B project name (no '/')")
    return text


def add_tracker_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "experiment trackers (one run per trial, tagged sweep/model/seed)"
    )
    g.add_argument(
        "--mlflow",
        type=mlflow_uri,
        metavar="URI",
        help="log to MLflow: a tracking server (http://HOST:5000) or a folder/file: URI for a "
        "local file store; needs jersey-ray[mlflow]",
    )
    g.add_argument(
        "--wandb",
        type=wandb_project,
        metavar="PROJECT",
        help="log to this Weights & Biases project (WANDB_MODE=offline keeps the runs in "
        "./wandb for `wandb sync`); needs jersey-ray[wandb]",
    )


def trial_tags(config: dict[str, Any], sweep: str, axes: tuple[str, ...]) -> dict[str, str]:
    """A trial's tags: its sweep, model, seed and other axes, and the group of its seeds."""
    axis_tags = {k: str(config[k]) for k in axes}
    group = "/".join([sweep, config["model"], *(f"{k}={v}" for k, v in axis_tags.items())])
    return {
        "sweep": sweep,
        "model": str(config["model"]),
        "seed": str(config["seed"]),
        **axis_tags,
        "group": group,
    }


def tracker_callbacks(opts: RunOptions, sweep_name: str, axes: tuple[str, ...] = ()) -> list:
    """Tune callbacks for the trackers asked for (``mlflow``, ``wandb``; none: ``[]``)."""
    callbacks = []
    uri = getattr(opts, "mlflow", None)
    if uri:
        if uri.startswith("file:"):
            # MLflow 3 refuses its file store unless opted in; a folder was asked for explicitly
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        callbacks.append(_callback_class("mlflow")(uri, sweep=sweep_name, axes=axes))
    project = getattr(opts, "wandb", None)
    if project:
        callbacks.append(_callback_class("wandb")(project, sweep=sweep_name, axes=axes))
    for callback in callbacks:
        _ready(callback)
    return callbacks


def _ready(callback) -> None:
    """Connect now (MLflow experiment, W&B key) so a bad URI or a missing login is a one-line
    error before any trial starts, not a traceback from inside Tune."""
    flag = "--mlflow" if "MLflow" in type(callback).__name__ else "--wandb"
    try:
        callback.setup()
    except Exception as err:  # MlflowException, ValueError (no W&B key), connection errors
        lines = str(err).strip().splitlines() or [""]
        raise UserError(f"{flag}: {err.__class__.__name__}: {lines[0]}") from err


def _mlflow_class() -> type:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class TaggedMLflowLoggerCallback(MLflowLoggerCallback):
        """One MLflow run per trial in the experiment ``sweep``, tagged per trial."""

        def __init__(self, tracking_uri: str, *, sweep: str, axes: tuple[str, ...] = ()):
            super().__init__(tracking_uri, experiment_name=sweep, tags={"sweep": sweep})
            self.sweep, self.axes = sweep, tuple(axes)

        def log_trial_start(self, trial) -> None:
            if trial not in self._trial_runs:  # the base class reuses the run once made
                tags = {**(self.tags or {}), "trial_name": str(trial)}  # set in __init__
                tags.update(trial_tags(trial.config, self.sweep, self.axes))
                run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
                self._trial_runs[trial] = run.info.run_id
            super().log_trial_start(trial)

        def log_trial_end(self, trial, failed: bool = False) -> None:
            # a trial whose actor failed to start never had a run: Ray's KeyError here would
            # take the whole sweep down instead of that one trial
            if trial in self._trial_runs:
                super().log_trial_end(trial, failed)

        def log_trial_result(self, iteration: int, trial, result: dict) -> None:
            # the config is logged once as parameters, not as metrics on every epoch
            super().log_trial_result(
                iteration, trial, {k: v for k, v in result.items() if k != "config"}
            )

    return TaggedMLflowLoggerCallback


def _wandb_class() -> type:
    from ray.air.integrations.wandb import WandbLoggerCallback

    class TaggedWandbLoggerCallback(WandbLoggerCallback):
        """One W&B run per trial in ``project``, grouped by configuration, tagged per trial."""

        def __init__(self, project: str, *, sweep: str, axes: tuple[str, ...] = ()):
            kwargs: dict[str, Any] = {"dir": os.environ.get("WANDB_DIR") or os.getcwd()}
            if os.environ.get("WANDB_MODE"):
                # the logging actors run in Ray workers, which on a cluster do not inherit the
                # driver's environment
                kwargs["mode"] = os.environ["WANDB_MODE"]
            super().__init__(project=project, **kwargs)
            self.sweep, self.axes = sweep, tuple(axes)

        def log_trial_start(self, trial) -> None:
            tags = trial_tags(trial.config, self.sweep, self.axes)
            group = tags.pop("group")
            shared = self.kwargs
            # W&B tags are short strings; the base class passes self.kwargs to wandb.init
            self.kwargs = {
                **shared,
                "group": group,
                "tags": [f"{k}:{v}"[:64] for k, v in tags.items()],
            }
            try:
                super().log_trial_start(trial)
            finally:
                self.kwargs = shared

    return TaggedWandbLoggerCallback


_CLASSES = {"TaggedMLflowLoggerCallback": _mlflow_class, "TaggedWandbLoggerCallback": _wandb_class}


def _callback_class(tracker: str) -> type:
    name = "TaggedMLflowLoggerCallback" if tracker == "mlflow" else "TaggedWandbLoggerCallback"
    return globals().get(name) or __getattr__(name)


def __getattr__(name: str) -> type:
    # PEP 562: Ray's callback modules import mlflow / wandb (seconds each), so the subclasses are
    # made on first use; as module attributes they pickle by name in Tune's tuner.pkl, and a
    # restored sweep finds them again here.
    if name not in _CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = _CLASSES[name]()
    cls.__qualname__ = name
    globals()[name] = cls
    return cls
