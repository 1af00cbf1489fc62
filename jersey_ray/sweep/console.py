"""What a person watching a sweep sees: one line when a trial starts and when it ends, errors and
retries as they happen, and one progress bar over every epoch the sweep plans (with its ETA).

It is a Tune callback; Tune's own status table is shown only with ``--verbose``. The bar is
tidy in a log file (:mod:`jersey_ray.progress`) and tqdm's notebook-aware one in Jupyter. Every line
comes from what trials report (the same names as ``result.json``), never from logs.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from ray.tune import Callback

from jersey_ray import metrics as M
from jersey_ray.progress import bar, redraws
from jersey_ray.sweep.settings import trial_config

TIME_TOTAL_S = "time_total_s"
"""Tune's wall time of a trial so far, in its results."""


def in_notebook() -> bool:
    """Whether the driver runs in a Jupyter kernel (a notebook redraws a bar in place although
    its streams are no terminal). IPython is not imported for the question: a kernel has it."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _name(trial: Any) -> str:
    return str(getattr(trial, "custom_trial_name", None) or trial)


def end_line(trial_name: str, result: dict[str, Any]) -> str:
    """The line of a trial that ended: its best validation and (when finished) test accuracy."""
    minutes = float(result.get(TIME_TOTAL_S, 0.0)) / 60.0
    epoch = result.get(M.EPOCH)
    best = result.get(M.BEST_VAL_ACC_NUMBER)
    parts = [f"done   {trial_name}"]
    if best is not None:
        parts.append(f"best val acc_number {best:.4f} @ epoch {int(result[M.BEST_EPOCH])}")
    if M.TEST_ACC_NUMBER in result:
        parts.append(f"test acc_number {result[M.TEST_ACC_NUMBER]:.4f}")
    else:
        parts[0] = f"stop   {trial_name}"
        parts.append(f"stopped after epoch {epoch} (pruned or interrupted)")
    parts.append(f"{minutes:.1f} min")
    return ", ".join(parts)


class Console(Callback):
    """Trial lines and the sweep's epoch bar; ``planned`` is the epochs of every trial."""

    def __init__(self, planned: int, file: IO[str] | None = None) -> None:
        # no stream is kept by default: Tune pickles its callbacks with the experiment state
        self._file = file
        self._planned = planned
        self._epochs: dict[str, int] = {}
        self._started: set[str] = set()
        self._bar: Any = None  # a tqdm bar while the sweep runs

    def _say(self, text: str) -> None:
        live = self._bar is not None and redraws(self._bar)
        if live:
            self._bar.clear()
        print(text, file=self._file or sys.stdout, flush=True)
        if live:
            self._bar.refresh()

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        if in_notebook():
            from tqdm.auto import tqdm  # a widget where ipywidgets is installed, else plain text

            self._bar = tqdm(total=self._planned, desc="sweep", unit="epoch")
        else:
            self._bar = bar(total=self._planned, desc="sweep", unit="epoch", file=sys.stderr)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        name = _name(trial)
        self._say(f"{'resume' if name in self._started else 'start'} {name}")
        self._started.add(name)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        epoch = int(result.get(M.EPOCH, 0))
        done = self._epochs.get(trial.trial_id, 0)
        if epoch > done and self._bar is not None:
            self._bar.update(epoch - done)
        self._epochs[trial.trial_id] = max(done, epoch)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        left = trial_config(trial.config).epochs - self._epochs.get(trial.trial_id, 0)
        if left > 0 and self._bar is not None:  # stopped early: its epochs are no longer planned
            self._bar.total -= left
        self._say(end_line(_name(trial), result))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(f"retry  {_name(trial)}: it failed; retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            where = f"see error.txt in {trial.path}"
        except RuntimeError:  # a trial that never started has no folder
            where = "it never started"
        self._say(f"FAILED {_name(trial)} after its retries; {where}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_bar": None, "_file": None}  # a bar and a stream don't pickle
