"""Intervals over seeds, McNemar's exact test and the bootstrap on hand-made cases, and against SciPy/statsmodels."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from tstcnn.runtime.statistics import (
    bootstrap_difference,
    mcnemar_exact,
    mcnemar_p_value,
    paired_difference,
    summarize,
)


def test_t_interval_by_hand_and_against_scipy():
    summary = summarize([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df) from the printed tables; sd = 1
    assert (summary.n, summary.mean, summary.sd) == (3, 2.0, 1.0)
    assert summary.low == pytest.approx(2 - half) and summary.high == pytest.approx(2 + half)
    rng = np.random.default_rng(0)
    for n, confidence in ((2, 0.95), (5, 0.9), (12, 0.99)):
        values = rng.normal(0.7, 0.05, n)
        low, high = stats.t.interval(confidence, n - 1, loc=values.mean(), scale=stats.sem(values))
        summary = summarize(values.tolist(), confidence)
        assert (summary.low, summary.high) == pytest.approx((low, high))
        assert summary.sd == pytest.approx(values.std(ddof=1))


def test_summaries_of_few_values_and_interval_sides():
    one, none = summarize([0.5]), summarize([None, None])
    assert (one.n, one.mean, one.sd, one.low, one.high) == (1, 0.5, None, None, None)
    assert (none.n, none.mean) == (0, None)
    assert summarize([0.2, None, 0.4]).n == 2  # a missing value is skipped, not counted as 0
    assert not one.above(0) and not one.below(1)  # no interval: neither side can be claimed
    gain = paired_difference([0.80, 0.90, 0.85], [0.70, 0.80, 0.80])
    assert gain.mean == pytest.approx(0.25 / 3) and gain.above(0) and not gain.below(0)
    assert paired_difference([0.5, 0.6], [0.5, 0.6]).mean == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], 1.0)


def test_mcnemar_exact_by_hand():
    assert mcnemar_p_value(0, 5) == pytest.approx(2 / 32)  # 2 × P(X = 0), X ~ Bin(5, 1/2)
    assert mcnemar_p_value(1, 9) == pytest.approx(2 * 11 / 1024)  # 2 × (1 + 10) / 2^10
    assert mcnemar_p_value(4, 4) == 1.0 and mcnemar_p_value(0, 0) == 1.0  # clipped at 1; nothing discordant
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 0, 0, 1, 1, 0], bool)
    test = mcnemar_exact(a, b)
    assert (test.both_right, test.a_only, test.b_only, test.both_wrong, test.n) == (2, 3, 1, 2, 8)
    assert test.p_value == pytest.approx(2 * (1 + 4) / 16)
    with pytest.raises(ValueError, match="different numbers of clips"):
        mcnemar_exact(a, b[:-1])


@pytest.mark.parametrize(("a_only", "b_only"), [(0, 1), (3, 11), (17, 17), (40, 25), (250, 300), (2, 60)])
def test_mcnemar_exact_matches_statsmodels_and_scipy(a_only, b_only):
    ours = mcnemar_p_value(a_only, b_only)
    table = [[30, a_only], [b_only, 12]]
    assert ours == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    assert ours == pytest.approx(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue, rel=1e-9)


def test_bootstrap_of_the_accuracy_difference():
    same = np.array([1, 0, 1, 1, 0], bool)
    tie = bootstrap_difference(same, same, resamples=200)
    assert (tie.difference, tie.low, tie.high) == (0.0, 0.0, 0.0)
    better = bootstrap_difference(np.ones(20, bool), np.zeros(20, bool), resamples=200)
    assert (better.difference, better.low, better.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(1)
    a, b = rng.random(400) < 0.8, rng.random(400) < 0.7
    first, again = (bootstrap_difference(a, b, resamples=4000, seed=5) for _ in range(2))
    assert first == again and first.difference == pytest.approx(a.mean() - b.mean())
    # The same interval as resampling clip indices directly (the definition), within Monte Carlo error.
    indices = rng.integers(0, a.size, (4000, a.size))
    direct = np.quantile(a[indices].mean(1) - b[indices].mean(1), [0.025, 0.975])
    assert (first.low, first.high) == pytest.approx(tuple(direct), abs=0.01)
    assert first.low < first.difference < first.high
    with pytest.raises(ValueError, match="no clips"):
        bootstrap_difference(np.zeros(0, bool), np.zeros(0, bool))
