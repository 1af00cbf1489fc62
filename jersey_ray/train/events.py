"""A trial's TensorBoard events: every reported metric per epoch (tags grouped by split, see
:func:`jersey_ray.metrics.tensorboard_tag`), the learning rate per parameter group, and at the
end the test confusion matrices and the hyper-parameters with the final metrics."""

from __future__ import annotations

import json
from typing import Any

import torch

from jersey_ray import metrics as M
from jersey_ray.cache.loader import SplitData
from jersey_ray.config import DataConfig, TrainConfig, to_dict
from jersey_ray.plots import confusion_figure
from jersey_ray.train.evaluate import Predictions

FINAL_KEYS = (
    M.TEST_LOSS, M.TEST_ACC_NUMBER, M.TEST_ACC_TENS, M.TEST_ACC_ONES,
    M.BEST_VAL_ACC_NUMBER, M.BEST_EPOCH,
)  # fmt: skip


def log_epoch(writer: Any, row: dict[str, float], optimizer: torch.optim.Optimizer) -> None:
    epoch = int(row[M.EPOCH])
    for name, value in row.items():
        if name != M.EPOCH:
            writer.add_scalar(M.tensorboard_tag(name), value, epoch)
    for group in optimizer.param_groups:
        writer.add_scalar(f"lr/{group['name']}", group["lr"], epoch)
    writer.flush()


def _flat(cfg: Any, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}{k}": v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
        for k, v in to_dict(cfg).items()
    }


def log_final(
    writer: Any,
    cfg: TrainConfig,
    data_cfg: DataConfig,
    row: dict[str, float],
    test: SplitData,
    preds: Predictions,
) -> None:
    """The test confusion matrices and the hparams summary (config -> final metrics)."""
    from torch.utils.tensorboard.summary import hparams

    epoch = int(row[M.EPOCH])
    truth = {"tens": test.tens.cpu().numpy(), "ones": test.ones.cpu().numpy()}
    pred = {"tens": preds.tens.numpy(), "ones": preds.ones.numpy()}
    for head in ("tens", "ones"):
        fig = confusion_figure(truth, pred, (head,), f"test {head}")
        writer.add_figure(f"confusion/test_{head}", fig, epoch)
    params = {**_flat(cfg, ""), **_flat(data_cfg, "data.")}
    # the metric names are the scalar tags already written, so no duplicate scalars are needed
    final = {M.tensorboard_tag(k): row[k] for k in FINAL_KEYS}
    for summary in hparams(params, final):
        writer.file_writer.add_summary(summary)
    writer.flush()
