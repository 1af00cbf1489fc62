"""Fabricated sweep run folders for the collector's and the figures' tests.

The layout is what the sweep writes (run-folder contract): ``sweep.json``, ``pruned.json`` and
one folder per trial (``<model>-seed<seed>``, as Tune's trial_dirname_creator names them) with
Tune's ``params.json`` and ``result.json`` (one JSON line per epoch) and ``error.txt`` on
failure. Every number is chosen so that the tests can state the expected statistics by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEEDS = (42, 123, 456)
EPOCHS = 3


@dataclass
class FakeTrial:
    model: str
    seed: int
    val: list[float]
    """val_acc_number per reported epoch (1-based)."""
    test: tuple[float, float, float] | None = None
    """test acc_number, acc_tens, acc_ones on the last row (None: the trial did not finish)."""
    n_params: int = 1000
    time_total_s: float = 60.0
    error: str | None = None
    """error.txt content (a failed trial)."""
    raw_lines: dict[int, str] = field(default_factory=dict)
    """Extra raw lines inserted before the row with this 0-based index (malformed input)."""
    no_result_file: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    predictions: list[tuple[str, str, int]] | None = None
    """test_predictions.csv rows as (track, jersey, correct), one per sequence (None: no file,
    as in runs made before trials wrote it)."""
    unseen: tuple[float, float, float] | None = None
    """unseen acc_number, acc_tens, acc_ones on the last row (a held-out cache)."""
    unseen_predictions: list[tuple[str, str, int]] | None = None


def _rows(t: FakeTrial) -> list[dict[str, Any]]:
    rows = []
    for i, val in enumerate(t.val):
        epoch = i + 1
        best = max(t.val[:epoch])
        rows.append(
            {
                "epoch": epoch,
                "lr": 1e-4,
                "train_loss": 1.0 / epoch,
                "train_acc_number": val,
                "val_loss": 1.0 - val,
                "val_acc_number": val,
                "val_acc_tens": min(1.0, val + 0.01),
                "val_acc_ones": val,
                "best_epoch": t.val.index(best) + 1,
                "best_val_acc_number": best,
                "n_params": t.n_params,
                "gpu_mem_gb": 0.0,
                "training_iteration": epoch,
                "time_total_s": t.time_total_s * epoch / len(t.val),
                "trial_id": f"{t.model}_{t.seed}",
            }
        )
    if t.test is not None:
        number, tens, ones = t.test
        rows[-1].update(
            {
                "test_loss": 0.1,
                "test_acc_number": number,
                "test_acc_tens": tens,
                "test_acc_ones": ones,
            }
        )
    if t.test is not None and t.unseen is not None:
        number, tens, ones = t.unseen
        rows[-1].update(
            {"unseen_acc_number": number, "unseen_acc_tens": tens, "unseen_acc_ones": ones}
        )
    return rows


PREDICTION_HEADER = "seq_id,track,jersey,pred_tens,pred_ones,p_tens,p_ones,correct"


def write_predictions(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    """A predictions file as the trial writes it (train/evaluate.py write_predictions): one
    line per sequence; the predicted digits are the truth when correct, else 0 and 0."""
    lines = [PREDICTION_HEADER]
    for i, (track, jersey, correct) in enumerate(rows):
        tens = 10 if len(jersey) == 1 else int(jersey[0])
        pred = (tens, int(jersey[-1])) if correct else (0, 0)
        lines.append(f"{track}/s{i},{track},{jersey},{pred[0]},{pred[1]},0.9,0.8,{correct}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def track_rows(pattern: str, prefix: str = "t", jersey: str = "7") -> list[tuple[str, str, int]]:
    """Prediction rows of one-sequence tracks t0, t1, ...: ``pattern[i]`` is "1" when track i's
    sequence is right (``"1100"``: right on t0 and t1 of 4 tracks)."""
    return [(f"{prefix}{i}", jersey, int(c)) for i, c in enumerate(pattern)]


def write_trial(run_dir: Path, t: FakeTrial) -> Path:
    extra = "".join(f"-{k}={v}" for k, v in sorted(t.params.items()))
    trial_dir = run_dir / f"{t.model}{extra}-seed{t.seed}"
    trial_dir.mkdir(parents=True)
    params = {"model": t.model, "seed": t.seed, "epochs": EPOCHS, "size": [64, 32], **t.params}
    (trial_dir / "params.json").write_text(json.dumps(params), encoding="utf-8")
    if not t.no_result_file:
        lines = []
        for i, row in enumerate(_rows(t)):
            if i in t.raw_lines:
                lines.append(t.raw_lines[i])
            lines.append(json.dumps(row))
        (trial_dir / "result.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if t.error is not None:
        (trial_dir / "error.txt").write_text(t.error, encoding="utf-8")
    if t.predictions is not None:
        write_predictions(trial_dir / "test_predictions.csv", t.predictions)
    if t.unseen_predictions is not None:
        write_predictions(trial_dir / "unseen_predictions.csv", t.unseen_predictions)
    return trial_dir


def write_sweep(run_dir: Path, **overrides: Any) -> dict[str, Any]:
    sweep = {
        "name": "phaseA-test",
        "phase": "phaseA",
        "description": "fabricated Phase A run",
        "reference": "seq_bgru_mp",
        "models": [
            "seq_brnn_mp",
            "seq_urnn_fs",
            "seq_bgru_mp",
            "seq_ugru_fs",
            "seq_blstm_mp",
            "seq_ulstm_fs",
        ],
        "seeds": list(SEEDS),
        "axes": {},
        "epochs": EPOCHS,
        "scheduler": "asha",
        "gpus_per_trial": 0.5,
        "cpus_per_trial": 2,
        "hardware": "1x test GPU",
        "data": {
            "root": "data/fake",
            "cache": "results/cache/does-not-exist",
            "fingerprint": "0123456789abcdef",
            "size": [64, 32],
            "max_frames": 8,
            "split_seed": 42,
            "counts": {"train": 80, "val": 10, "test": 10},
        },
        "started": "2026-01-01T00:00:00",
        "finished": "2026-01-01T01:00:00",
        **overrides,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep.json").write_text(json.dumps(sweep), encoding="utf-8")
    return sweep


FAIL_TEXT = (
    "Failure # 1 (occurred at 2026-01-01_00-10-00)\n"
    "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
    '  File "train.py", line 1, in train\n'
    "RuntimeError: CUDA out of memory\n"
)


def standard_trials() -> list[FakeTrial]:
    """The canonical fabricated Phase A run (see the module docstring of test_collect.py)."""
    return [
        # reference: acc_number 0.90 0.92 0.97 -> mean 0.93, sample sd 0.0360555
        FakeTrial("seq_bgru_mp", 42, [0.5, 0.8, 0.7], (0.90, 0.99, 0.91), 11674965, 600.0),
        FakeTrial("seq_bgru_mp", 123, [0.5, 0.7, 0.8], (0.92, 0.98, 0.93), 11674965, 720.0),
        FakeTrial("seq_bgru_mp", 456, [0.5, 0.6, 0.9], (0.97, 0.97, 0.98), 11674965, 840.0),
        # same deviations as the reference, +0.02: Welch df = 4; seed 123 has a malformed line
        FakeTrial("seq_blstm_mp", 42, [0.6, 0.7, 0.8], (0.92, 0.99, 0.93), 11839317, 300.0),
        FakeTrial(
            "seq_blstm_mp",
            123,
            [0.6, 0.7, 0.8],
            (0.94, 0.99, 0.95),
            11839317,
            300.0,
            raw_lines={1: '{"epoch": 2, "val_acc_number": 0.7'},
        ),
        FakeTrial("seq_blstm_mp", 456, [0.6, 0.7, 0.8], (0.99, 0.99, 0.99), 11839317, 300.0),
        # pruned at epoch 2 by the scheduler (pruned.json), never tested
        FakeTrial("seq_urnn_fs", 42, [0.50, 0.55], None, 11261397, 100.0),
        FakeTrial("seq_urnn_fs", 123, [0.50, 0.56], None, 11261397, 100.0),
        FakeTrial("seq_urnn_fs", 456, [0.50, 0.54], None, 11261397, 100.0),
        # seed 42 is the best on validation (0.995) and the worst on test (0.80)
        FakeTrial("seq_ugru_fs", 42, [0.9, 0.995, 0.99], (0.80, 0.90, 0.85), 11425749, 1200.0),
        FakeTrial("seq_ugru_fs", 123, [0.9, 0.95, 0.96], (0.82, 0.92, 0.86), 11425749, 1200.0),
        # failed in epoch 2, with a validation row better than everything (must be ignored)
        FakeTrial("seq_ugru_fs", 456, [0.999], None, 11425749, 50.0, error=FAIL_TEXT),
        # one finished seed (n = 1: std n/a), one failed with no rows, one without result.json
        FakeTrial("seq_brnn_mp", 42, [0.6, 0.7, 0.75], (0.85, 0.95, 0.88), 11346261, 360.0),
        FakeTrial("seq_brnn_mp", 123, [], None, 11346261, 0.0, error="Failure # 1\nValueError: x"),
        FakeTrial(
            "seq_brnn_mp", 456, [], None, 11346261, 0.0, error="OSError: disk", no_result_file=True
        ),
    ]


PRUNED = {
    # the seed-aware ASHA's key: config_key of Tune's evaluated_params, i.e. the searched grid
    # axes without the seed; this sweep searches only model x seed (fixed params never enter)
    "model=seq_urnn_fs": {
        "epoch": 2,
        "rung_acc": 0.55,
        "cutoff": 0.8,
        "seeds": [42, 123, 456],
    }
}


def standard_run(run_dir: Path, **sweep_overrides: Any) -> Path:
    write_sweep(run_dir, **sweep_overrides)
    for trial in standard_trials():
        write_trial(run_dir, trial)
    (run_dir / "pruned.json").write_text(json.dumps(PRUNED), encoding="utf-8")
    return run_dir


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def md_table(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """The Markdown table of a table.md whose header line starts with ``header_start``."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return _cells(lines[i]), rows


# --------------------------------------------------------------------------- analysis inputs

TINY_SIZE = (32, 16)
TINY_NUMBERS = ("4", "48", "6", "66", "8", "89")


def tiny_split(split: str, n: int, seed: int):
    """``n`` sequences of 2-4 random uint8 frames at TINY_SIZE (a loader SplitData on the CPU)."""
    import torch

    from jersey_ray.cache.loader import SplitData
    from jersey_ray.metrics import BLANK

    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 5, (n,), generator=gen)
    offsets = torch.cumsum(lengths, 0) - lengths
    jerseys = [TINY_NUMBERS[i % len(TINY_NUMBERS)] for i in range(n)]
    frames = torch.randint(0, 255, (int(lengths.sum()), *TINY_SIZE, 3), generator=gen)
    return SplitData(
        split=split,
        size=TINY_SIZE,
        frames=frames.to(torch.uint8),
        offsets=offsets,
        lengths=lengths,
        tens=torch.tensor([BLANK if len(j) == 1 else int(j[0]) for j in jerseys]),
        ones=torch.tensor([int(j[-1]) for j in jerseys]),
        jersey=jerseys,
        track=[f"{j}/t{i}" for i, j in enumerate(jerseys)],
        seq_id=[f"{j}/t{i}/s0" for i, j in enumerate(jerseys)],
    )


def write_checkpoint(trial_dir: Path, model_id: str, seed: int = 0, legacy: bool = False) -> Path:
    """A ``checkpoint_000002/best.pt`` in the trainer's format with an untrained tiny model
    (``legacy``: the format of runs made before TrainConfig and DataConfig were split)."""
    import torch

    from jersey_ray.config import DataConfig, TrainConfig, to_json
    from jersey_ray.models import build_model

    torch.manual_seed(seed)
    cfg = TrainConfig(model=model_id, pretrained="none", device="cpu")
    data = DataConfig(root="data/tiny", size=TINY_SIZE, max_frames=4)
    model = build_model(model_id, pretrained="none")
    path = trial_dir / "checkpoint_000002" / "best.pt"
    path.parent.mkdir(parents=True)
    configs = {"train": to_json(cfg), "data": to_json(data)}
    if legacy:
        old = {**json.loads(to_json(cfg)), "size": list(TINY_SIZE), "max_frames": 4,
               "split_seed": 42, "numbers": [], "data_root": "data/tiny", "cache": "c"}  # fmt: skip
        old.pop("deterministic")
        configs = {"config": json.dumps(old)}
    torch.save({"model": model.state_dict(), **configs, "epoch": 2, "metrics": {}}, path)
    return path
