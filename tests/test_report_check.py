"""The report check's verdicts are Holm-adjusted over the table's rows, like every other verdict
of the tables; the numbers here are computed by hand from the report's published means and
population stds (n = 5 a side)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from jersey_ray.results import collect
from jersey_ray.results.verdicts import report_check_section

BASELINE = (0.9763, 0.0038)  # seq_bgru_mp: the report's mean and population std
PHASE_A = {  # Table 2 without the baseline
    "seq_brnn_mp": (0.9735, 0.0023),
    "seq_urnn_fs": (0.9691, 0.0011),
    "seq_ugru_fs": (0.9684, 0.0053),
    "seq_blstm_mp": (0.9739, 0.0040),
    "seq_ulstm_fs": (0.9728, 0.0023),
}


def welch_p(a: tuple[float, float], b: tuple[float, float], n: int = 5) -> float:
    """Welch's two-sided p from means and population stds (converted to sample stds)."""
    v1, v2 = ((s * math.sqrt(n / (n - 1))) ** 2 / n for _, s in (a, b))
    t = (a[0] - b[0]) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 * v1 / (n - 1) + v2 * v2 / (n - 1))
    return float(2 * sps.t.sf(abs(t), df))


def test_phase_a_report_check_is_holm_adjusted_by_hand() -> None:
    p = {k: welch_p(v, BASELINE) for k, v in PHASE_A.items()}
    # Holm by hand: ascending p times (5, 4, 3, 2, 1), then the running maximum
    order = sorted(p, key=p.get)
    assert order == ["seq_urnn_fs", "seq_ugru_fs", "seq_ulstm_fs", "seq_brnn_mp", "seq_blstm_mp"]
    urnn = 5 * p["seq_urnn_fs"]
    ugru = max(urnn, 4 * p["seq_ugru_fs"])
    ulstm = max(ugru, 3 * p["seq_ulstm_fs"])
    brnn = max(ulstm, 2 * p["seq_brnn_mp"])
    blstm = max(brnn, p["seq_blstm_mp"])
    expected = {"seq_urnn_fs": urnn, "seq_ugru_fs": ugru, "seq_ulstm_fs": ulstm,
                "seq_brnn_mp": brnn, "seq_blstm_mp": blstm}  # fmt: skip
    assert urnn == pytest.approx(0.08408, abs=1e-5)  # unadjusted 0.0168: significant before
    assert ugru == pytest.approx(0.17887, abs=1e-5)  # unadjusted 0.0447: significant before

    check = collect.report_check("phaseA")
    assert check["p_adjust"] == "holm"
    rows = {r["id"]: r for r in check["rows"]}
    for model, value in expected.items():
        assert rows[model]["p"] == pytest.approx(p[model], rel=1e-9)
        assert rows[model]["p_holm"] == pytest.approx(value, rel=1e-9)
        assert rows[model]["significant"] is False  # no Phase A model differs after Holm
    assert check["significantly_higher"] == 0

    text = "\n".join(report_check_section(check))
    assert "| Model (report) | id | Δ acc_number | 95% CI | df | p | p (Holm) | Verdict |" in text
    assert "| UniRNN (final state) | `seq_urnn_fs` | -0.0072 |" in text
    assert "| 0.0168 | 0.0841 | not significant |" in text
    assert "adjusted by Holm's method over this table's rows" in text


def test_phase_b_holm_keeps_the_one_clear_difference() -> None:
    check = collect.report_check("phaseB")
    rows = {r["id"]: r for r in check["rows"]}
    assert len(rows) == 6
    gate = rows["attn_ugru_gate"]
    p = welch_p((0.9649, 0.0028), BASELINE)
    assert p == pytest.approx(0.0016532, abs=1e-7)
    # the smallest of 6 p-values: x 6, still below 0.05
    assert gate["p_holm"] == pytest.approx(6 * p, rel=1e-9)
    assert gate["significant"] is True and gate["diff"] < 0
    assert [k for k, r in rows.items() if r["significant"]] == ["attn_ugru_gate"]
    text = "\n".join(report_check_section(check))
    assert "| 0.0017 | 0.0099 | lower (significant) |" in text
