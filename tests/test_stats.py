"""Statistics over runs: the Student-t interval, and how it is shown for accuracies."""

import pytest

from fastcifar.stats import student_t_quantile, summarize


def test_student_t_quantiles_match_the_tables():
    assert student_t_quantile(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert student_t_quantile(0.975, 9) == pytest.approx(2.262, abs=1e-3)


def test_the_interval_of_the_mean():
    summary = summarize([0.93, 0.94, 0.95])
    half = 4.303 * 0.01 / 3 ** 0.5  # t(0.975, 2 dof) * std / sqrt(n)
    assert summary.ci95 == pytest.approx((0.94 - half, 0.94 + half), abs=1e-5)
    assert "95% CI [91.52, 96.48]," in summary.percent()
    assert "clipped" not in summary.percent()


def test_an_interval_past_0_or_100_percent_is_shown_clipped_saying_why():
    summary = summarize([0.40, 0.95])  # two runs: t has one degree of freedom
    assert summary.ci95_low < 0 and summary.ci95_high > 1  # the record keeps the real values
    shown = summary.percent()
    assert "95% CI [0.00, 100.00] (clipped to 0-100%: 2 runs are too few" in shown
    assert shown.startswith("mean 67.50%") and shown.endswith("min 40.00, max 95.00")
