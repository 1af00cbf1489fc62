"""Statistics over seeds: mean and sample std, Student's t, and Welch's interval.

Pure Python: SciPy is not a dependency, and the t quantile for a real (Welch) df needs only the
incomplete beta function.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

CONFIDENCE = 0.95
STD_LABEL = "sample (ddof=1)"
CI_METHOD = "Welch's t interval (unequal variances)"


def describe(values: list[float]) -> dict[str, Any]:
    """Mean, sample std (None below 2 values), n and the values themselves."""
    n = len(values)
    return {
        "mean": statistics.fmean(values) if n else None,
        "std": statistics.stdev(values) if n >= 2 else None,
        "n": n,
        "values": list(values),
    }


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # the continued fraction converges fast only on this side of the mode; use the symmetry
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with ``df`` (real, > 0) degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by bisection on :func:`t_cdf` (exact to ~1e-12, any real df)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def welch(
    a: tuple[float, float, int], b: tuple[float, float, int], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Welch's interval for mean(a) - mean(b); ``a`` and ``b`` are (mean, sample std, n >= 2).

    With zero variance on both sides the interval collapses to the difference (df None).
    """
    (m1, s1, n1), (m2, s2, n2) = a, b
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's interval needs at least 2 values on each side")
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    diff = m1 - m2
    se = math.sqrt(v1 + v2)
    if se == 0.0:
        low = high = diff
        df = None
    else:
        df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
        half = t_quantile(0.5 + confidence / 2.0, df) * se
        low, high = diff - half, diff + half
    return {
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "df": df,
        "confidence": confidence,
        "significant": not low <= 0.0 <= high,
    }
