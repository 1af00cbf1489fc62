"""Trial resource planning: fractional GPUs, CPUs per trial, concurrency."""

import pytest

from jersey_ray.errors import UserError
from jersey_ray.sweep.resources import default_gpu_fraction, plan, trial_bytes


def test_gpu_box_fills_every_gpu_slot_with_cpus():
    p = plan(
        16, 1, 16, 1, gpus_per_trial=None, cpus_per_trial=None, max_concurrent=None, n_trials=90
    )
    assert (p.gpus_per_trial, p.cpus_per_trial, p.max_concurrent) == (0.25, 4.0, 4)


def test_cpu_only_runs_one_cpu_trials_side_by_side():
    p = plan(2, 0, 2, 0, gpus_per_trial=None, cpus_per_trial=None, max_concurrent=None, n_trials=12)
    assert (p.gpus_per_trial, p.cpus_per_trial, p.max_concurrent) == (0.0, 1.0, 2)


def test_multi_gpu_cluster_and_caps():
    p = plan(
        64, 8, 32, 4, gpus_per_trial=0.5, cpus_per_trial=None, max_concurrent=None, n_trials=90
    )
    assert (p.cpus_per_trial, p.max_concurrent) == (4.0, 16)
    p = plan(64, 8, 32, 4, gpus_per_trial=0.5, cpus_per_trial=2, max_concurrent=5, n_trials=90)
    assert (p.cpus_per_trial, p.max_concurrent) == (2.0, 5)
    p = plan(64, 8, 32, 4, gpus_per_trial=0.5, cpus_per_trial=None, max_concurrent=None, n_trials=3)
    assert p.max_concurrent == 3


def test_explicit_gpu_share_is_trusted_before_gpu_workers_exist():
    p = plan(8, 0, 8, 0, gpus_per_trial=0.25, cpus_per_trial=2, max_concurrent=None, n_trials=30)
    assert (p.gpus_per_trial, p.cpus_per_trial, p.max_concurrent) == (0.25, 2.0, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gpus_per_trial": 1.5}, "fraction of one GPU or a whole number"),
        ({"gpus_per_trial": -1}, "fraction of one GPU"),
        ({"cpus_per_trial": 0}, "cpus-per-trial must be > 0"),
        ({"max_concurrent": 0}, "max-concurrent must be >= 1"),
    ],
)
def test_bad_resource_options(kwargs, message):
    args = {"gpus_per_trial": None, "cpus_per_trial": None, "max_concurrent": None, "n_trials": 4}
    with pytest.raises(UserError, match=message):
        plan(16, 1, 16, 1, **{**args, **kwargs})


def test_default_fraction_is_the_smallest_even_share_that_fits():
    gb = 1e9
    assert default_gpu_fraction(80 * gb, 9 * gb) == 0.125
    assert default_gpu_fraction(80 * gb, 15 * gb) == 0.2
    assert default_gpu_fraction(80 * gb, 30 * gb) == 0.5
    assert default_gpu_fraction(24 * gb, 20 * gb) == 1.0
    with pytest.raises(UserError, match=r"needs about 30\.0 GB"):
        default_gpu_fraction(24 * gb, 30 * gb)
    assert trial_bytes(10, 2, 5.0) == 10 + 10 + 1e9
