"""Intervals and paired tests over runs (seeds), rliable-style: plain functions of arrays.

The public face of the statistics: the intervals live in :mod:`mr2_core.intervals` (re-exported here:
:func:`interval_estimates`, the one interval helper, :func:`t_interval` with metric ranges,
:func:`bca_interval`, :func:`bootstrap_ci`), the tests over seeds in this module:

* :func:`paired_comparison`: a method against a baseline on the same seeds: mean difference, t CI,
  paired-t and Wilcoxon p-values, the minimum detectable effect and the TOST equivalence bound.
* :func:`holm`: Holm's step-down adjustment of a family of p-values.
* :func:`paired_power`, :func:`minimum_detectable_effect`, :func:`seeds_for_effect`: the power of the
  two-sided paired t-test from the noncentral t distribution, and what it implies for planning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mr2_core.checks import bad, check_int, check_real
from mr2_core.intervals import (
    CI_METHODS,
    CORRELATION,
    DIFFERENCE,
    MIN_BOOT,
    NON_NEGATIVE,
    SD_TOL,
    UNBOUNDED,
    UNIT,
    BootstrapResult,
    all_equal,
    as_scores,
    bca_interval,
    bootstrap_ci,
    ci_label,
    interval_estimates,
    interval_from_moments,
    t_interval,
)

__all__ = [
    "bootstrap_ci",
    "BootstrapResult",
    "CI_METHODS",
    "MIN_BOOT",
    "MIN_CLAIM_SEEDS",
    "t_interval",
    "interval_from_moments",
    "ci_label",
    "all_equal",
    "UNIT",
    "CORRELATION",
    "DIFFERENCE",
    "NON_NEGATIVE",
    "UNBOUNDED",
    "SD_TOL",
    "bca_interval",
    "interval_estimates",
    "PairedComparison",
    "paired_comparison",
    "holm",
    "paired_power",
    "minimum_detectable_effect",
    "seeds_for_effect",
]

# fewest paired seeds for an equivalence (TOST) bound and a minimum detectable effect in a report: with 2
# the t quantile (12.7) and a 1-degree-of-freedom SD make both meaningless, and reports say so at the top
MIN_CLAIM_SEEDS = 3
MAX_SEEDS = 100_000  # seeds_for_effect gives up beyond this (an effect far below the noise)
TAIL_NEGLIGIBLE = 1e-12  # a power term bounded by this is taken as 0 where scipy's nct returns NaN


# ---------------------------------------------------------------------------------- paired tests
def _alpha(alpha: float) -> float:
    return check_real("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)


def _power_nc(nc: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample/paired t-test with ``n`` pairs at noncentrality ``nc``."""
    from scipy import stats

    crit = stats.t.ppf(1.0 - alpha / 2.0, n - 1)
    upper = float(stats.nct.sf(crit, n - 1, nc))
    lower = float(stats.nct.cdf(-crit, n - 1, nc))
    # scipy's nct.cdf can return NaN far in the tail; there P(T' < -c) <= P(Z < -nc) = Phi(-nc) bounds it
    if not np.isfinite(lower) and stats.norm.sf(nc) < TAIL_NEGLIGIBLE:
        lower = 0.0
    if not (np.isfinite(upper) and np.isfinite(lower)):
        raise ValueError(f"the noncentral t power is not finite at n={n}, noncentrality={nc:g}")
    return upper + lower


def paired_power(effect: float, sd: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` to detect a true mean difference
    ``effect`` with ``n`` pairs whose differences have standard deviation ``sd`` (same units).

    With T' ~ noncentral t(df = n - 1, nc = effect · sqrt(n) / sd) and c = t_{1 - alpha/2, n - 1}:
    power = P(T' > c) + P(T' < -c).
    """
    n = check_int("n", n, 2)
    sd = check_real("sd", sd, low=0.0, low_open=True)
    effect = abs(check_real("effect", effect))
    return _power_nc(effect * math.sqrt(n) / sd, n, _alpha(alpha))


def minimum_detectable_effect(sd: float, n: int, *, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true mean difference that the two-sided paired t-test at level ``alpha`` detects
    with probability ``power``, with ``n`` pairs whose differences have standard deviation ``sd``.

    Solves :func:`paired_power` = ``power`` (noncentral t, exact) for the effect. Same units as
    ``sd``; 0 when ``sd`` is 0.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    n = check_int("n", n, 2)
    sd = check_real("sd", sd, low=0.0)
    alpha = _alpha(alpha)
    power = check_real("power", power, low=alpha, high=1.0, low_open=True, high_open=True)
    if sd == 0.0:
        return 0.0
    # the noncentrality that gives `power`; the normal approximation z_{1-a/2} + z_{power} brackets it
    hi = norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power) + 1.0
    while _power_nc(hi, n, alpha) < power:
        hi *= 2.0
    nc = brentq(lambda c: _power_nc(c, n, alpha) - power, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return float(nc * sd / math.sqrt(n))


def seeds_for_effect(sd: float, effect: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """The number of paired seeds the two-sided paired t-test needs to detect ``effect`` with
    probability ``power`` at level ``alpha``, when the per-seed differences have SD ``sd``.

    The smallest n >= 2 with :func:`paired_power` (effect, sd, n) >= power. For example a paired SD
    of 1.1 points and an effect of 1 point need 12 seeds.
    """
    sd = check_real("sd", sd, low=0.0, low_open=True)
    effect = check_real("effect", effect, low=0.0, low_open=True)
    alpha = _alpha(alpha)
    power = check_real("power", power, low=alpha, high=1.0, low_open=True, high_open=True)
    nc = effect / sd

    def enough(n: int) -> bool:
        return _power_nc(nc * math.sqrt(n), n, alpha) >= power

    lo, hi = 1, 2  # enough(lo) is False by convention (one seed has no test); find enough(hi)
    while not enough(hi):
        lo, hi = hi, 2 * hi
        if hi > MAX_SEEDS:
            raise bad("effect", effect, f"an effect the test can detect with <= {MAX_SEEDS} seeds (sd={sd})")
    while hi - lo > 1:  # power grows with n: bisect for the first n that is enough
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class PairedComparison:
    """A method against a baseline on the same seeds (differences are method - baseline).

    Attributes:
        n: number of pairs (seeds).
        diff: mean difference.
        sd: sample standard deviation of the differences (ddof = 1).
        ci_low, ci_high: Student-t interval of the mean difference at ``confidence``.
        t_stat, p_value: paired t statistic and its two-sided p-value (df = n - 1).
        wilcoxon_p: two-sided Wilcoxon signed-rank p-value (scipy; zero differences dropped,
            exact null distribution up to 50 non-zero pairs without ties). 1.0 when every difference
            is zero. With fewer than 6 non-zero pairs it can never fall below 0.05: its smallest
            value is 2 / 2^n (0.0625 at n = 5).
        mde: minimum detectable effect: the true difference the paired t-test at ``alpha`` detects
            with probability ``power``, for this n and SD.
        tost_bound: the smallest delta for which two one-sided t-tests at ``alpha`` both reject
            (|true difference| >= delta): max(|low|, |high|) of the (1 - 2 alpha) t interval.
            "Differences larger than tost_bound are excluded."
        alpha, power, confidence: the levels used.
    """

    n: int
    diff: float
    sd: float
    ci_low: float
    ci_high: float
    t_stat: float
    p_value: float
    wilcoxon_p: float
    mde: float
    tost_bound: float
    alpha: float
    power: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_comparison(
    method: Any,
    baseline: Any,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float | None = None,
) -> PairedComparison:
    """Compare ``method`` with ``baseline`` run by run (same seeds, same order).

    Args:
        method, baseline: scores shaped (n,), n >= 2, paired by position.
        alpha: two-sided level of the tests, of the MDE and of each one-sided TOST test.
        power: power at which the minimum detectable effect is stated.
        confidence: coverage of the reported CI of the difference (default 1 - alpha).

    Returns:
        :class:`PairedComparison`. When every difference is equal (SD 0) the t statistic is
        ±inf with p = 0 if the mean is non-zero (and NaN with p = 1 if it is zero), the MDE is 0 and
        the CI is the point.
    """
    from scipy import stats

    a = as_scores("method", method, min_runs=2)
    b = as_scores("baseline", baseline, min_runs=2)
    if a.ndim != 1 or a.shape != b.shape:
        raise bad("baseline", b, f"a 1-D array paired with method's {a.shape} scores")
    alpha = _alpha(alpha)
    power = check_real("power", power, low=alpha, high=1.0, low_open=True, high_open=True)
    conf = 1.0 - alpha if confidence is None else confidence
    check_real("confidence", conf, low=0.0, high=1.0, low_open=True, high_open=True)
    d = a - b
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    if se > 0:
        t_stat = mean / se
        p = float(2.0 * stats.t.sf(abs(t_stat), n - 1))
    else:
        t_stat = math.copysign(math.inf, mean) if mean != 0 else math.nan
        p = 0.0 if mean != 0 else 1.0
    half = stats.t.ppf(0.5 + conf / 2.0, n - 1) * se
    tost_half = stats.t.ppf(1.0 - alpha, n - 1) * se  # the (1 - 2 alpha) interval
    if np.all(d == 0):
        w = 1.0
    else:
        import warnings

        with warnings.catch_warnings():  # scipy warns when it switches to the normal approximation
            warnings.simplefilter("ignore", UserWarning)
            w = float(stats.wilcoxon(d).pvalue)
    return PairedComparison(
        n=n, diff=mean, sd=sd, ci_low=float(mean - half), ci_high=float(mean + half), t_stat=float(t_stat),
        p_value=p, wilcoxon_p=w, mde=minimum_detectable_effect(sd, n, power=power, alpha=alpha),
        tost_bound=float(max(abs(mean - tost_half), abs(mean + tost_half))), alpha=alpha, power=power,
        confidence=conf,
    )  # fmt: skip


def holm(pvalues: Any) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values, in the input's order.

    With the m p-values sorted, p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting every hypothesis with adj <= alpha controls the family-wise error rate at alpha under
    any dependence between the tests.

    Args:
        pvalues: shape (m,), values in [0, 1] (NaN refused: leave untested hypotheses out).
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise bad("pvalues", p, "a non-empty 1-D array of p-values")
    if not np.all((p >= 0) & (p <= 1)):
        raise bad("pvalues", p, "p-values in [0, 1] (no NaN: leave untested hypotheses out)")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
