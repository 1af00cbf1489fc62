"""Example seed-aware Optuna search: the learning rate of MobileNetV3-Small over a log range.

Optuna (TPE, seeded) proposes ``num_samples`` learning rates one configuration at a time; each
runs with both seeds and Optuna is told the seed mean of their best validation acc_number. The
seed-aware ASHA prunes whole configurations on their seed mean at each rung, and Optuna records
a pruned one as PRUNED at that rung. Needs the ``[optuna]`` extra.
"""

from ray import tune

from jersey_ray.config import SweepSpec

SWEEP = SweepSpec(
    name="search_optuna",
    phase="search_optuna",
    description="Optuna over the learning rate of basic_mv3s, seed means, seed-aware ASHA",
    models=("basic_mv3s",),
    seeds=(42, 123),
    axes={"lr": tune.loguniform(1e-4, 3e-2)},
    search="optuna",
    num_samples=4,
    max_concurrent=1,
    scheduler="asha",
    grace_period=1,
    reduction_factor=2,
)
