"""Paired comparisons of two training arms, honestly: by seed, with intervals, tests and Holm.

For one metric of two arms measured on the same seeds, :func:`paired_comparison` gives the
mean difference (b − a), a percentile bootstrap 95% interval over seeds (seeded, so a
report is reproducible), the Student t interval beside it, the Wilcoxon signed-rank and
paired t p-values, and a plain sentence. :func:`holm` corrects the p-values of one
experiment's comparisons. Fewer than two seeds is never a verdict.

Which test decides "significant": the Holm-corrected **paired t** p-value. The Wilcoxon
test is shown beside it, but with n seeds its smallest two-sided p is 2/2**n (0.0625 for
five seeds), so at the seed counts a CPU affords it can never reject, however consistent
the difference — a verdict from it would call a 12-point shift "not significant".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

__all__ = ["PairedComparison", "bootstrap_interval", "holm", "paired_comparison", "t_interval"]

#: Resamples of the bootstrap interval; enough that its percentiles move by < 0.1 of the spread.
N_BOOTSTRAP = 10_000


@dataclass(frozen=True)
class PairedComparison:
    """One metric, arm ``b`` minus arm ``a``, paired by seed."""

    metric: str
    arm_a: str
    arm_b: str
    n_seeds: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    t_low: float
    t_high: float
    p_wilcoxon: float
    p_ttest: float
    p_holm: float = math.nan
    p_holm_wilcoxon: float = math.nan
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        """Holm-corrected paired t p below ``alpha`` (never with fewer than 2 seeds)."""
        p = self.p_holm if not math.isnan(self.p_holm) else self.p_ttest
        return self.n_seeds >= 2 and not math.isnan(p) and p < self.alpha

    @property
    def ci_excludes_zero(self) -> bool:
        """The bootstrap interval lies on one side of 0."""
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def smallest_wilcoxon_p(self) -> float:
        """The smallest two-sided Wilcoxon p that ``n_seeds`` pairs can give (2 / 2**n)."""
        return 2.0 / 2**self.n_seeds if self.n_seeds else math.nan

    def sentence(self, *, scale: float = 1.0, unit: str = "") -> str:
        """E.g. ``EMIN − baseline test_fused_macro_error: −0.4 pp [−1.1, +0.3], not significant at 0.05, 5 seeds``."""
        if self.n_seeds < 2:
            return (
                f"{self.arm_b} − {self.arm_a} {self.metric}: {self.mean_diff * scale:+.3g}{unit} "
                f"from {self.n_seeds} seed — an anecdote, no verdict"
            )
        verdict = "significant" if self.significant else "not significant"
        return (
            f"{self.arm_b} − {self.arm_a} {self.metric}: {self.mean_diff * scale:+.3g}{unit} "
            f"[{self.ci_low * scale:+.3g}, {self.ci_high * scale:+.3g}], {verdict} at {self.alpha:g} "
            f"(Holm-corrected paired t p = {self.p_holm:.3g}; Wilcoxon p = {self.p_wilcoxon:.3g}, "
            f"at best {self.smallest_wilcoxon_p:.3g} with {self.n_seeds} seeds), {self.n_seeds} seeds"
        )

    def as_row(self) -> dict[str, object]:
        """A flat row for ``comparisons.csv``."""
        return {**asdict(self), "significant": self.significant, "ci_excludes_zero": self.ci_excludes_zero}


def bootstrap_interval(
    diffs: Sequence[float] | np.ndarray, *, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampling seeds with replacement)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def t_interval(diffs: Sequence[float] | np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """Student t interval of the mean of ``diffs``."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return math.nan, math.nan
    sem = d.std(ddof=1) / math.sqrt(d.size)
    if sem == 0.0:
        return float(d.mean()), float(d.mean())
    half = float(scipy.stats.t.ppf((1 + level) / 2, df=d.size - 1)) * sem
    return float(d.mean() - half), float(d.mean() + half)


def _wilcoxon(d: np.ndarray) -> float:
    if d.size < 2 or np.all(d == 0):
        return 1.0 if d.size >= 2 else math.nan
    return float(scipy.stats.wilcoxon(d).pvalue)


def _ttest(a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    if d.size < 2:
        return math.nan
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(scipy.stats.ttest_rel(b, a).pvalue)


def paired_comparison(
    metric: str,
    arm_a: str,
    values_a: Sequence[float],
    arm_b: str,
    values_b: Sequence[float],
    *,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedComparison:
    """Compare ``values_b`` with ``values_a`` (same order = same seeds); NaN pairs are dropped."""
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{metric}: arms {arm_a} and {arm_b} have {a.size} and {b.size} seeds; pair them")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = b - a
    ci = bootstrap_interval(d, seed=seed)
    ti = t_interval(d)
    return PairedComparison(
        metric=metric,
        arm_a=arm_a,
        arm_b=arm_b,
        n_seeds=int(d.size),
        mean_a=float(a.mean()) if a.size else math.nan,
        mean_b=float(b.mean()) if b.size else math.nan,
        mean_diff=float(d.mean()) if d.size else math.nan,
        ci_low=ci[0],
        ci_high=ci[1],
        t_low=ti[0],
        t_high=ti[1],
        p_wilcoxon=_wilcoxon(d),
        p_ttest=_ttest(a, b),
        alpha=alpha,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
