"""The sweep's console: trial lines and one epoch bar, from what trials report."""

from __future__ import annotations

import io
from types import SimpleNamespace

from jersey_ray import metrics as M
from jersey_ray.sweep.console import Console, end_line


def trial(tid: str, name: str, epochs: int, last: dict | None = None) -> SimpleNamespace:
    config = {"model": "basic_r18", "seed": 1, "epochs": epochs}
    return SimpleNamespace(
        trial_id=tid, custom_trial_name=name, config=config, last_result=last or {}, path="/r/t"
    )


def test_end_lines_say_what_a_person_watching_needs():
    finished = {M.EPOCH: 3, M.BEST_VAL_ACC_NUMBER: 0.8125, M.BEST_EPOCH: 2,
                M.TEST_ACC_NUMBER: 0.75, "time_total_s": 90.0}  # fmt: skip
    line = end_line("phaseB/attn_bgru_luong/seed42", finished)
    assert line == (
        "done   phaseB/attn_bgru_luong/seed42, best val acc_number 0.8125 @ epoch 2, "
        "test acc_number 0.7500, 1.5 min"
    )
    stopped = {M.EPOCH: 1, M.BEST_VAL_ACC_NUMBER: 0.5, M.BEST_EPOCH: 1, "time_total_s": 6.0}
    assert end_line("s/m/seed1", stopped).startswith("stop   s/m/seed1, best val acc_number")
    assert "stopped after epoch 1" in end_line("s/m/seed1", stopped)


def test_lines_and_the_epoch_bar(capsys):
    out = io.StringIO()
    console = Console(planned=2 * 3, file=out)
    console.setup()
    a, b = trial("a", "s/m/seed1", 3), trial("b", "s/m/seed2", 3)
    for t in (a, b):
        console.on_trial_start(0, [], t)
    for epoch in (1, 2, 3):
        console.on_trial_result(0, [], a, {M.EPOCH: epoch})
    console.on_trial_result(0, [], b, {M.EPOCH: 1})
    a.last_result = {M.EPOCH: 3, M.BEST_VAL_ACC_NUMBER: 0.9, M.BEST_EPOCH: 3,
                     M.TEST_ACC_NUMBER: 0.8, "time_total_s": 60}  # fmt: skip
    console.on_trial_complete(0, [], a)
    console.on_trial_recover(0, [], b)
    console.on_trial_start(0, [], b)
    b.last_result = {M.EPOCH: 1, M.BEST_VAL_ACC_NUMBER: 0.2, M.BEST_EPOCH: 1}
    console.on_trial_complete(0, [], b)  # pruned after epoch 1: 2 planned epochs drop
    assert console._bar.n == 4 and console._bar.total == 4
    console.on_experiment_end([])
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["start s/m/seed1", "start s/m/seed2"]
    assert lines[2].startswith("done   s/m/seed1, best val acc_number 0.9000 @ epoch 3")
    assert lines[3].startswith("retry  s/m/seed2") and lines[4] == "resume s/m/seed2"
    assert lines[5].startswith("stop   s/m/seed2")
    err = capsys.readouterr().err
    assert "\r" not in err and "sweep" in err  # tidy in a log: whole lines, no redraws


def test_the_console_pickles_with_the_experiment_state():
    import pickle

    console = Console(planned=3)
    console.setup()
    console.on_trial_start(0, [], trial("a", "s/m/seed1", 3))
    again = pickle.loads(pickle.dumps(console))
    assert again._planned == 3 and again._bar is None
    console.on_experiment_end([])
