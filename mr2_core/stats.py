"""Intervals and paired tests over runs (seeds), rliable-style: plain functions of arrays.

Metrics are plain functions of an array whose first axis is the unit resampled or averaged over
(runs/seeds), shape ``(n_runs, ...)``. Every random draw comes from an explicit
``np.random.Generator`` (rliable draws from global ``np.random`` although it is handed a
``random_state``; we do not).

* :func:`interval_estimates`: the one interval-table helper (after rliable's
  ``get_interval_estimates``): point and CI per key and trailing index, by a Student-t interval over
  runs (``"t"``, the default for means), BCa (``"bca"``, ``scipy.stats.bootstrap``) or the percentile
  bootstrap (``"percentile"``, :func:`bootstrap_ci`). With 5 seeds the percentile bootstrap is too
  narrow: its spread is the plug-in one (a factor sqrt((n-1)/n) = 0.89 below the sample SD) and its
  quantiles are about normal where t_{0.975, 4} = 2.78 against 1.96, so its half-width is about
  0.89 x 1.96 / 2.78 = 0.63 of the t interval's.
* :func:`paired_comparison`: a method against a baseline on the same seeds: mean difference, t CI,
  paired-t and Wilcoxon p-values, the minimum detectable effect and the TOST equivalence bound.
* :func:`holm`: Holm's step-down adjustment of a family of p-values.
* :func:`paired_power`, :func:`minimum_detectable_effect`, :func:`seeds_for_effect`: the power of the
  two-sided paired t-test from the noncentral t distribution, and what it implies for planning.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mr2_core.checks import bad, check_int, check_real
from mr2_core.contracts import CI_METHODS
from mr2_core.seeding import as_generator

__all__ = [
    "bootstrap_ci",
    "BootstrapResult",
    "CI_METHODS",
    "MIN_BOOT",
    "t_interval",
    "bca_interval",
    "interval_estimates",
    "PairedComparison",
    "paired_comparison",
    "holm",
    "paired_power",
    "minimum_detectable_effect",
    "seeds_for_effect",
]

MIN_BOOT = 100  # fewest resamples interval_estimates accepts for a bootstrap interval
MAX_SEEDS = 100_000  # seeds_for_effect gives up beyond this (an effect far below the noise)
TAIL_NEGLIGIBLE = 1e-12  # a power term bounded by this is taken as 0 where scipy's nct returns NaN


class BootstrapResult(tuple):
    """``(point, (low, high))`` with named access: ``.point``, ``.low``, ``.high``."""

    __slots__ = ()

    def __new__(cls, point: Any, low: Any, high: Any):
        return super().__new__(cls, (point, (low, high)))

    point = property(lambda self: self[0])
    low = property(lambda self: self[1][0])
    high = property(lambda self: self[1][1])


def _mean0(x: np.ndarray) -> np.ndarray:
    return np.mean(x, axis=0)


def bootstrap_ci(
    data: Any,
    statistic: Callable[[np.ndarray], Any] = lambda x: np.mean(x, axis=0),
    *,
    rng: int | np.random.Generator,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap over the first axis of ``data``.

    Kept exactly as it was (the simulations' tables are reproduced bit for bit through it). For
    few runs prefer :func:`interval_estimates` with ``method="t"`` or ``"bca"``: at 5 seeds the
    percentile interval covers the mean far less often than its nominal level.

    Args:
        data: shape (n_units, ...), e.g. (num_runs, num_classes); n_units >= 2.
        statistic: maps an array shaped like ``data`` to a float or an array (vectorised over the
            trailing axes). It is applied to all ``n_boot`` resamples at once when it accepts a
            leading batch axis (``axis=1`` after stacking), otherwise resample by resample.
        rng: a seed or a Generator; the same seed gives the same interval.
        n_boot: number of resamples.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        ``BootstrapResult(point, (low, high))`` where ``point = statistic(data)``.
    """
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] < 2:
        raise ValueError(f"data with shape {arr.shape}: expected at least 2 units along the first axis")
    if not np.all(np.isfinite(arr)):
        raise ValueError("data contains NaN or inf: expected finite scores")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: expected a number in (0, 1)")
    if n_boot < 10:
        raise ValueError(f"n_boot={n_boot!r}: expected at least 10 resamples")
    gen = as_generator(rng)
    n = arr.shape[0]
    idx = gen.integers(0, n, size=(n_boot, n))
    stats = np.stack([np.asarray(statistic(arr[i]), dtype=np.float64) for i in idx])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    point = np.asarray(statistic(arr), dtype=np.float64)
    if point.ndim == 0:
        return BootstrapResult(float(point), float(low), float(high))
    return BootstrapResult(point, low, high)


# ------------------------------------------------------------------------------------ intervals
def _scores(name: str, data: Any, min_runs: int = 1) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise bad(name, data, f"an array of real scores shaped (n_runs, ...) ({exc})") from None
    if arr.ndim == 0 or arr.shape[0] < min_runs:
        raise bad(
            name, arr, f"an array shaped (n_runs, ...) with n_runs >= {min_runs}, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise bad(name, arr, "finite scores (no NaN or inf)")
    return arr


def _ret(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> BootstrapResult:
    if np.ndim(point) == 0:
        return BootstrapResult(float(point), float(low), float(high))
    return BootstrapResult(np.asarray(point), np.asarray(low), np.asarray(high))


def t_interval(data: Any, *, confidence: float = 0.95) -> BootstrapResult:
    """Student-t interval of the mean over the first axis: mean ± t_{(1+c)/2, n-1} · sd / sqrt(n).

    Exact for normally distributed run scores, and the usual choice with few seeds (the sample
    standard deviation has n - 1 degrees of freedom, and t quantiles account for its noise).

    Args:
        data: shape (n_runs, ...), n_runs >= 2; the trailing axes are treated independently.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        ``BootstrapResult(point, (low, high))``: floats for 1-D data, arrays of the trailing shape
        otherwise.
    """
    from scipy import stats

    arr = _scores("data", data, min_runs=2)
    check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    n = arr.shape[0]
    mean = arr.mean(axis=0)
    half = stats.t.ppf(0.5 + confidence / 2.0, n - 1) * arr.std(axis=0, ddof=1) / math.sqrt(n)
    return _ret(mean, mean - half, mean + half)


def _bootstrap_rng_kw() -> str:
    # scipy >= 1.15 names the Generator argument `rng`; older releases call it `random_state`
    return "rng" if "rng" in inspect.signature(_scipy_bootstrap()).parameters else "random_state"


def _scipy_bootstrap():
    from scipy import stats

    return stats.bootstrap


def bca_interval(
    data: Any,
    statistic: Callable[[np.ndarray], Any] | None = None,
    *,
    rng: int | np.random.Generator,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Bias-corrected and accelerated (BCa) bootstrap over the first axis (``scipy.stats.bootstrap``).

    Efron (1987): the percentile interval's quantiles are shifted for the bootstrap distribution's
    median bias and skew (jackknife acceleration), which makes it second-order accurate.

    Args:
        data: shape (n_runs, ...), n_runs >= 2.
        statistic: reduces the first axis and is vectorised over the trailing ones, like
            :func:`bootstrap_ci`'s; the mean when None.
        rng: a seed or a Generator (the resamples are drawn from it).
        n_boot: number of resamples (at least :data:`MIN_BOOT`).
        confidence: two-sided coverage, in (0, 1).

    Returns:
        ``BootstrapResult(point, (low, high))``. Where every run has the same value the interval is
        that value (the bootstrap distribution is a point; scipy would return NaN).
    """
    arr = _scores("data", data, min_runs=2)
    check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("n_boot", n_boot, MIN_BOOT)
    stat = _mean0 if statistic is None else statistic
    gen = as_generator(rng)
    point = np.asarray(stat(arr), dtype=np.float64)
    constant = np.all(arr == arr[:1], axis=0)
    if np.all(constant):
        return _ret(point, point.copy(), point.copy())

    def along_last(x: np.ndarray, axis: int = -1) -> np.ndarray:  # scipy moves the resampled axis last
        return np.asarray(stat(np.moveaxis(x, axis, 0)), dtype=np.float64)

    import warnings

    with warnings.catch_warnings():
        # degenerate trailing entries (constant over runs) are replaced below; scipy warns about them
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*BCa confidence interval cannot be calculated.*")
        res = _scipy_bootstrap()(
            (arr,), along_last, n_resamples=int(n_boot), vectorized=True, axis=0,
            confidence_level=confidence, method="BCa", **{_bootstrap_rng_kw(): gen},
        )  # fmt: skip
    low = np.where(constant, point, res.confidence_interval.low)
    high = np.where(constant, point, res.confidence_interval.high)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            "the BCa interval could not be computed for these scores (too few distinct values for its "
            "jackknife acceleration): use method='t' or 'percentile'"
        )
    return _ret(point, low, high)


def interval_estimates(
    scores: Mapping[str, Any],
    statistic: Callable[[np.ndarray], Any] | None = None,
    *,
    method: str = "t",
    confidence: float = 0.95,
    rng: int | np.random.Generator | None = None,
    n_boot: int = 2000,
    key_name: str = "key",
    index_names: Sequence[str] | None = None,
):
    """Point estimates and confidence intervals for several groups of runs, as one tidy table.

    The one interval helper of the project (in the style of rliable's ``get_interval_estimates``):
    reports, figures and tables build their CIs here.

    Args:
        scores: ``{key: array (n_runs, ...)}``; groups may have different numbers of runs and must
            share their trailing shape only when ``index_names`` names it.
        statistic: reduces the first axis (runs) and is vectorised over the trailing axes; the mean
            when None. ``method="t"`` is an interval for the mean only, so it refuses a statistic.
        method: ``"t"`` (Student t over runs; default), ``"bca"`` (BCa bootstrap, scipy) or
            ``"percentile"`` (:func:`bootstrap_ci`, the percentile bootstrap).
        confidence: two-sided coverage, in (0, 1).
        rng: seed or Generator of the resamples; required by the bootstrap methods. One Generator
            serves the keys in order, so the same seed gives the same table.
        n_boot: resamples of a bootstrap method (at least :data:`MIN_BOOT`).
        key_name: name of the column holding the keys.
        index_names: names of the columns holding the trailing indices (default ``index`` for one
            trailing axis, ``index_0, index_1, ...`` for more).

    Returns:
        pandas DataFrame, one row per key and trailing index: ``key_name, *index_names, n_runs,
        point, ci_low, ci_high``. A group with a single run has its point and NaN bounds: no interval
        over runs exists with one run, and none is invented.
    """
    import pandas as pd

    method = method if method in CI_METHODS else _bad_method(method)
    check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    if method == "t" and statistic is not None:
        raise bad("statistic", statistic, "None with method='t' (a t interval is for the mean); use 'bca'")
    gen = None
    if method != "t":
        check_int("n_boot", n_boot, MIN_BOOT)
        if rng is None:
            raise bad("rng", rng, f"a seed or a numpy Generator: method={method!r} draws resamples")
        gen = as_generator(rng)
    if not isinstance(scores, Mapping) or not scores:
        raise bad("scores", scores, "a non-empty dict {key: array (n_runs, ...)}")
    stat = _mean0 if statistic is None else statistic
    frames = []
    for key, data in scores.items():
        arr = _scores(f"scores[{key!r}]", data)
        if arr.shape[0] == 1:
            point = np.asarray(stat(arr), dtype=np.float64)
            low = high = np.full_like(point, np.nan)
        elif method == "t":
            point, (low, high) = t_interval(arr, confidence=confidence)
        elif method == "bca":
            point, (low, high) = bca_interval(arr, stat, rng=gen, n_boot=n_boot, confidence=confidence)
        else:
            point, (low, high) = bootstrap_ci(arr, stat, rng=gen, n_boot=n_boot, confidence=confidence)
        point, low, high = (np.asarray(v, dtype=np.float64) for v in (point, low, high))
        names = _index_names(index_names, point.ndim)
        grid = np.indices(point.shape).reshape(point.ndim, -1) if point.ndim else np.zeros((0, 1), int)
        frame = {key_name: [key] * grid.shape[1]}
        frame.update({name: grid[i] for i, name in enumerate(names)})
        frame.update(
            {"n_runs": arr.shape[0], "point": point.ravel(), "ci_low": low.ravel(), "ci_high": high.ravel()}
        )
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def _bad_method(method: Any) -> str:
    raise bad("method", method, f"one of {', '.join(repr(m) for m in CI_METHODS)}")


def _index_names(names: Sequence[str] | None, ndim: int) -> list[str]:
    if names is None:
        return ["index"] if ndim == 1 else [f"index_{i}" for i in range(ndim)]
    if len(names) != ndim:
        raise bad("index_names", list(names), f"{ndim} name(s), one per trailing axis of the statistic")
    return list(names)


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

    a = _scores("method", method, min_runs=2)
    b = _scores("baseline", baseline, min_runs=2)
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
