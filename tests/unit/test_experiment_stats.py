"""Paired statistics of the experiment suite against independent computations on fixed numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from experiments.stats import bootstrap_interval, holm, paired_comparison, t_interval

A = [0.21, 0.25, 0.19, 0.30, 0.24]
B = [0.20, 0.22, 0.20, 0.26, 0.21]


def test_mean_difference_and_tests_match_scipy_and_closed_forms() -> None:
    c = paired_comparison("err", "base", A, "emin", B)
    d = np.array(B) - np.array(A)
    assert c.mean_diff == pytest.approx(d.mean())
    assert c.p_wilcoxon == pytest.approx(scipy.stats.wilcoxon(B, A).pvalue)
    # paired t by hand: t = mean / (sd / sqrt(n)), two-sided p from the t distribution
    t = d.mean() / (d.std(ddof=1) / math.sqrt(d.size))
    assert c.p_ttest == pytest.approx(2 * scipy.stats.t.sf(abs(t), df=d.size - 1))
    half = scipy.stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert (c.t_low, c.t_high) == pytest.approx((d.mean() - half, d.mean() + half))


def test_bootstrap_interval_matches_the_exhaustive_bootstrap() -> None:
    """With 5 seeds every one of the 5**5 resamples can be enumerated: the exact bootstrap."""
    d = np.array(B) - np.array(A)
    means = np.array([d[list(ix)].mean() for ix in itertools.product(range(d.size), repeat=d.size)])
    lo, hi = np.quantile(means, [0.025, 0.975])
    got = bootstrap_interval(d, seed=3)
    spread = means.std()
    assert got[0] == pytest.approx(lo, abs=0.1 * spread)
    assert got[1] == pytest.approx(hi, abs=0.1 * spread)


def test_holm_matches_a_hand_worked_case() -> None:
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04); original order restored
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # monotone: a later raw p never gets a smaller adjusted p; capped at 1; NaN is not a test
    assert holm([0.5, 0.001, math.nan, 0.6]) == pytest.approx([1.0, 0.003, math.nan, 1.0], nan_ok=True)


def test_one_seed_is_never_a_verdict() -> None:
    c = paired_comparison("err", "base", [0.2], "emin", [0.1])
    assert not c.significant
    assert "anecdote" in c.sentence()
    assert math.isnan(c.ci_low) and math.isnan(t_interval([0.1])[0])


def test_sentence_says_not_significant_when_it_is_not() -> None:
    c = paired_comparison("err", "base", A, "emin", [a + 0.001 * (-1) ** i for i, a in enumerate(A)])
    assert not c.significant
    assert "not significant at 0.05" in c.sentence()


def test_unpaired_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="pair them"):
        paired_comparison("err", "base", A, "emin", B[:3])


def test_a_consistent_shift_is_significant_even_when_wilcoxon_cannot_be() -> None:
    """Five seeds, every one 12 points worse: Wilcoxon's best p is 0.0625, the t-test rejects."""
    base = [0.20, 0.22, 0.19, 0.21, 0.23]
    worse = [b + 0.12 + 0.005 * i for i, b in enumerate(base)]
    c = paired_comparison("err", "before", base, "after", worse)
    assert c.p_wilcoxon == pytest.approx(0.0625) == pytest.approx(c.smallest_wilcoxon_p)
    assert c.significant and c.ci_excludes_zero
    assert c.p_ttest == pytest.approx(scipy.stats.ttest_rel(worse, base).pvalue)
