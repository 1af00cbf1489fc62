"""Statistics over seeds (jersey_ray.results.stats): known t quantiles, hand-computed examples,
Holm's adjustment on known p-values. The bootstrap is tests/test_bootstrap.py."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from jersey_ray.results import stats
from jersey_ray.results.stats import describe, holm, paired_t, t_cdf, t_quantile, welch


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.7062047),
        (0.975, 2, 4.3026527),
        (0.975, 4, 2.7764451),
        (0.975, 8, 2.3060041),
        (0.975, 30, 2.0422725),
        (0.995, 10, 3.1692726),
        (0.95, 5, 2.0150484),
        (0.025, 4, -2.7764451),
        (0.975, 1e7, 1.9599642),  # z + (z^3 + z) / (4 df),
    ],
)
def test_t_quantile_known_values(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=2e-7)


def test_t_quantile_real_df_lies_between_integer_neighbours() -> None:
    assert 2.3646243 < t_quantile(0.975, 6.5) < 2.4469119
    assert t_cdf(0.0, 3.3) == 0.5
    assert t_cdf(t_quantile(0.9, 2.7), 2.7) == pytest.approx(0.9, abs=1e-12)
    with pytest.raises(ValueError):
        t_quantile(1.0, 4)


def test_describe_sample_std_by_hand() -> None:
    d = describe([0.90, 0.92, 0.97])
    assert d["mean"] == pytest.approx(0.93)
    assert d["std"] == pytest.approx(
        0.0360555128, abs=1e-10
    )  # sqrt((0.03^2 + 0.01^2 + 0.04^2) / 2)
    assert d["n"] == 3
    assert describe([0.5]) == {"mean": 0.5, "std": None, "n": 1, "values": [0.5]}
    assert describe([])["mean"] is None


def test_welch_hand_example() -> None:
    # equal sds and n = 3: se = sqrt(2 * 0.0013 / 3) = 0.0294392, df = 4, t = 2.7764451
    sd = math.sqrt(0.0013)
    w = welch((0.95, sd, 3), (0.93, sd, 3))
    assert w["diff"] == pytest.approx(0.02)
    assert w["df"] == pytest.approx(4.0)
    assert w["ci_low"] == pytest.approx(0.02 - 0.0817363, abs=1e-6)
    assert w["ci_high"] == pytest.approx(0.02 + 0.0817363, abs=1e-6)
    assert w["significant"] is False
    # t = 0.02 / 0.0294392 = 0.679366 on 4 df: two-sided p = 0.534186
    assert w["p"] == pytest.approx(0.534186, abs=1e-6)


def test_welch_zero_variance_is_na_never_significant_and_too_few_values() -> None:
    # both sides without variance (easy with --quick, n = 2): no interval, no p, no verdict
    # (it used to collapse to the difference and call any gap significant)
    w = welch((0.99, 0.0, 3), (0.98, 0.0, 3))
    assert w["diff"] == pytest.approx(0.01)
    assert (w["ci_low"], w["ci_high"], w["df"], w["p"], w["significant"]) == (
        None,
        None,
        None,
        None,
        False,
    )
    # variance on one side only is an interval again (df = n - 1 of that side)
    one = welch((0.99, 0.01, 3), (0.98, 0.0, 3))
    assert one["df"] == pytest.approx(2.0)
    assert one["ci_high"] - one["diff"] == pytest.approx(4.3026527 * 0.01 / math.sqrt(3))
    with pytest.raises(ValueError):
        welch((0.9, 0.0, 1), (0.9, 0.01, 3))


def test_holm_on_known_p_values() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1; None (no test, e.g. zero variance) keeps its place and is not counted in m
    assert holm([0.6, None, 0.5]) == [1.0, None, 1.0]
    assert holm([None, 0.02]) == [None, 0.02]
    assert holm([]) == []
    # a tie: both get the same adjusted value
    assert holm([0.01, 0.01, 0.2]) == pytest.approx([0.03, 0.03, 0.2])


def test_paired_t_by_hand() -> None:
    # differences -0.5, -0.4, -0.6: mean -0.5, sd 0.1, se 0.1 / sqrt(3), t = -8.660254 on 2 df
    t = paired_t([-0.5, -0.4, -0.6])
    assert t["diff"] == pytest.approx(-0.5)
    assert t["ci_low"] == pytest.approx(-0.5 - 4.3026527 * 0.1 / math.sqrt(3))
    assert t["p"] == pytest.approx(0.0130718, abs=1e-6)
    assert paired_t([-0.5, -0.5])["p"] is None  # zero variance: n/a


def test_no_hand_written_numerics_remain() -> None:
    # SciPy computes the distributions now
    assert not hasattr(stats, "betainc") and not hasattr(stats, "_betacf")


def test_stats_imports_no_torch() -> None:
    code = "import sys, jersey_ray.results.stats; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
