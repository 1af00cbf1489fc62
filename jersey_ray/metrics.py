"""Metric names shared by the trainer, Tune, the scheduler, TensorBoard and the collector, and
the on-device counting behind them.

torch is imported where the counting needs it, so the names can be read (by the collector's
run-folder reader, for one) without loading torch.

Names are ``<split>_<metric>``: ``val_acc_number``, ``test_acc_ones``, ... Accuracies are ratios
of integer counts over a whole split, so they do not depend on the batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "val", "test")
UNSEEN = "unseen"
"""The held-out numbers' split (two-digit generalization); only in ``heldout`` caches."""
METRICS = ("loss", "acc_number", "acc_tens", "acc_ones")


def key(split: str, metric: str) -> str:
    """The reported name of ``metric`` on ``split``, e.g. ``key("val", "acc_number")``."""
    if split not in (*SPLITS, UNSEEN) or metric not in METRICS:
        raise ValueError(f"no metric {split}_{metric}")
    return f"{split}_{metric}"


TRAIN_LOSS, TRAIN_ACC_NUMBER, TRAIN_ACC_TENS, TRAIN_ACC_ONES = (key("train", m) for m in METRICS)
VAL_LOSS, VAL_ACC_NUMBER, VAL_ACC_TENS, VAL_ACC_ONES = (key("val", m) for m in METRICS)
TEST_LOSS, TEST_ACC_NUMBER, TEST_ACC_TENS, TEST_ACC_ONES = (key("test", m) for m in METRICS)
UNSEEN_LOSS, UNSEEN_ACC_NUMBER, UNSEEN_ACC_TENS, UNSEEN_ACC_ONES = (key(UNSEEN, m) for m in METRICS)

EPOCH = "epoch"
"""1-based epoch the row describes; the schedulers' time attribute."""
LR = "lr"
"""Base-group learning rate at the end of the epoch (per-group values go to TensorBoard)."""
FRAMES_PER_S = "frames_per_s"
"""Training frames per second over the epoch (real frames only, padding excluded)."""
EPOCH_TIME_S = "epoch_time_s"
"""Wall time of the epoch's training pass."""
BEST_EPOCH = "best_epoch"
"""Epoch of the best validation acc_number so far (ties: the earlier)."""
BEST_VAL_ACC_NUMBER = "best_val_acc_number"
"""The best validation acc_number so far."""
N_PARAMS = "n_params"
"""Trainable parameters of the model."""
GPU_MEM_GB = "gpu_mem_gb"
"""Peak CUDA memory allocated by the trial in the epoch (0 on CPU)."""

TAG_GROUPS = {
    BEST_EPOCH: "best/epoch",
    BEST_VAL_ACC_NUMBER: "best/val_acc_number",
    LR: "lr/base",
    FRAMES_PER_S: "system/frames_per_s",
    EPOCH_TIME_S: "system/epoch_time_s",
    GPU_MEM_GB: "system/gpu_mem_gb",
    N_PARAMS: "model/n_params",
}


def tensorboard_tag(name: str) -> str:
    """The TensorBoard tag of a reported name, grouped by split (``val_acc_number`` ->
    ``val/acc_number``) so the scalars page reads by section; ``result.json`` and the tables
    keep the flat names."""
    split, _, metric = name.partition("_")
    if split in (*SPLITS, UNSEEN) and metric in METRICS:
        return f"{split}/{metric}"
    return TAG_GROUPS.get(name, f"other/{name}")


SELECTION_METRIC = VAL_ACC_NUMBER
"""The metric every model or checkpoint choice is made on. Never a test metric."""
SELECTION_MODE = "max"
TUNE_METRIC = BEST_VAL_ACC_NUMBER
"""What Tune ranks trials on (TuneConfig's metric, with :data:`SELECTION_MODE`): the best-so-far
of :data:`SELECTION_METRIC`, the product's choice on validation
(:func:`jersey_ray.results.runs.choose_on_validation`), so that ``ResultGrid.get_best_result()``
and ``predict --run`` name the same trial. Seed-aware ASHA still judges rungs on
:data:`SELECTION_METRIC` at the rung's epoch."""

BLANK = 10
"""Index of the tens head's "no tens digit" class."""
N_TENS = 11
N_ONES = 10


class SplitCounter:
    """Accumulates loss and correct counts on the device; :meth:`compute` syncs once."""

    def __init__(self, device: torch.device | str) -> None:
        import torch

        self._sums = torch.zeros(4, dtype=torch.float64, device=device)
        self._n = 0  # batch sizes are known on the host: counting them needs no sync

    def update(
        self,
        loss: torch.Tensor,
        tens_logits: torch.Tensor,
        ones_logits: torch.Tensor,
        tens: torch.Tensor,
        ones: torch.Tensor,
    ) -> None:
        """``loss`` is the batch mean; it is weighted by the batch size."""
        import torch

        n = tens.shape[0]
        tens_ok = tens_logits.argmax(1) == tens
        ones_ok = ones_logits.argmax(1) == ones
        batch = torch.stack(
            [
                loss.detach().double() * n,
                (tens_ok & ones_ok).sum().double(),
                tens_ok.sum().double(),
                ones_ok.sum().double(),
            ]
        )
        self._sums += batch
        self._n += n

    def compute(self, split: str) -> dict[str, float]:
        loss, number, tens, ones = self._sums.tolist()
        n = max(self._n, 1)
        return {
            key(split, "loss"): loss / n,
            key(split, "acc_number"): number / n,
            key(split, "acc_tens"): tens / n,
            key(split, "acc_ones"): ones / n,
        }


def confusion(true: Any, pred: Any, n_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts as an ``n_classes x n_classes`` int64 matrix (array-likes:
    NumPy arrays or CPU tensors)."""
    flat = np.asarray(true, dtype=np.int64) * n_classes + np.asarray(pred, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def number_string(tens: int, ones: int) -> str:
    """How a (tens, ones) prediction reads as a jersey: blank tens gives one digit."""
    return str(ones) if tens == BLANK else f"{tens}{ones}"
