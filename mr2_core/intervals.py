"""Intervals over runs (seeds), rliable-style: plain functions of arrays, and the ranges they respect.

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
* Bounded metrics (``bounds=``): an accuracy lives in [0, 1], a correlation in [-1, 1], an SD in
  [0, inf). A plain t interval leaves that range when the runs are few or spread out. With bounds,
  the t interval is built on a scale where the range is the whole line and mapped back
  (:func:`interval_from_moments`): for a mean m with sample SD s over n runs and a link g,
  g^-1( g(m) -/+ t_{(1+c)/2, n-1} g'(m) s / sqrt(n) ) (the delta method). The link is the logit of
  (x - lo) / (hi - lo) for two finite bounds (for [-1, 1] this is Fisher's z = atanh, up to a factor
  1/2 that cancels), log(x - lo) for a lower bound only. The point stays the mean over runs (the
  number every table and paired difference uses), the interval always holds it, and it stays inside
  the range; for runs far from the bounds it equals the plain t interval to first order. Since it
  needs only the mean, the SD and n, an interval published with those can be recomputed exactly.
  ``scale="clip"`` keeps the plain t interval and clips it to the range instead (a difference of
  accuracies, whose range [-1, 1] rarely binds): clipping never lowers coverage, since the true
  value lies in the range.
* One seed gives a point and no interval; seeds that all agree (SD 0) give the point as a
  zero-width interval, which reports state as "all seeds equal: no interval" (:func:`all_equal`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
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
    "SCALES",
    "UNIT",
    "CORRELATION",
    "DIFFERENCE",
    "NON_NEGATIVE",
    "UNBOUNDED",
    "SD_TOL",
    "as_scores",
    "t_interval",
    "interval_from_moments",
    "ci_label",
    "all_equal",
    "bca_interval",
    "interval_estimates",
]

MIN_BOOT = 100  # fewest resamples interval_estimates accepts for a bootstrap interval
# scale of a bounded t interval: "auto" maps the range onto the line (logit / Fisher z / log);
# "clip" clips the plain t interval to the range
SCALES: tuple[str, ...] = ("auto", "clip")
# the ranges of the metrics this project aggregates over seeds: (low, high), inf for none
UNIT = (0.0, 1.0)  # accuracies, fractions
CORRELATION = (-1.0, 1.0)  # Pearson / Spearman rho
DIFFERENCE = (-1.0, 1.0)  # a difference of two fractions
NON_NEGATIVE = (0.0, math.inf)  # standard deviations, spreads
UNBOUNDED = (-math.inf, math.inf)
# an SD below this (relative to max(1, |mean|)) is float rounding of equal values, e.g. 0.9044 - 0.9010
# against 0.8044 - 0.8010: the runs are taken as equal (zero-width interval, no test)
SD_TOL = 1e-12


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
def as_scores(name: str, data: Any, min_runs: int = 1) -> np.ndarray:
    """``data`` as a finite float64 array shaped (n_runs, ...) with n_runs >= ``min_runs``, or a
    ValueError naming ``name``."""
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


def _bounds(bounds: Any) -> tuple[float, float]:
    if bounds is None:
        return UNBOUNDED
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise bad("bounds", bounds, "a pair (low, high) of numbers, +-inf for no bound") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise bad("bounds", bounds, "a pair (low, high) with low < high")
    return lo, hi


def _scale_name(bounds: tuple[float, float], scale: str) -> str:
    """The link of a t interval on ``bounds``: identity | clip | logit | log | neglog."""
    lo, hi = bounds
    fin_lo, fin_hi = math.isfinite(lo), math.isfinite(hi)
    if not (fin_lo or fin_hi):
        return "identity"
    if scale == "clip":
        return "clip"
    return "logit" if fin_lo and fin_hi else ("log" if fin_lo else "neglog")


def ci_label(method: str = "t", bounds: Any = None, scale: str = "auto") -> str:
    """How an interval of ``interval_estimates(method=..., bounds=..., scale=...)`` is made, in words
    (the ``ci_method`` column of reports): ``t``, ``t, logit scale``, ``t, fisher-z scale``, ``t, log
    scale``, ``t, clipped to [-1, 1]``; a bootstrap method keeps its name (its intervals of a mean
    stay in the range by construction)."""
    if method != "t":
        return method
    lo, hi = b = _bounds(bounds)
    name = _scale_name(b, check_scale(scale))
    if name == "identity":
        return "t"
    if name == "clip":
        return f"t, clipped to [{lo:g}, {hi:g}]"
    if name == "logit":
        return (
            "t, fisher-z scale"
            if b == CORRELATION
            else ("t, logit scale" if b == UNIT else f"t, logit scale on [{lo:g}, {hi:g}]")
        )
    return "t, log scale"


def check_scale(scale: Any) -> str:
    if scale not in SCALES:
        raise bad("scale", scale, f"one of {', '.join(repr(s) for s in SCALES)}")
    return scale


def _link(name: str, lo: float, hi: float):
    """(g, g', g^-1) of the link ``name`` on [lo, hi]."""
    if name == "logit":
        w = hi - lo
        return (
            lambda x: np.log((x - lo) / (hi - x)),
            lambda x: w / ((x - lo) * (hi - x)),
            lambda y: lo + w * _expit(y),
        )
    if name == "log":
        return (lambda x: np.log(x - lo), lambda x: 1.0 / (x - lo), lambda y: lo + np.exp(y))
    return (lambda x: -np.log(hi - x), lambda x: 1.0 / (hi - x), lambda y: hi - np.exp(-y))


def _expit(y: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(y)


def interval_from_moments(
    mean: Any, sd: Any, n: int, *, confidence: float = 0.95, bounds: Any = None, scale: str = "auto"
) -> BootstrapResult:
    """The t interval of a mean from its sample mean, sample SD (ddof 1) and number of runs ``n``.

    Unbounded: mean -/+ t_{(1+c)/2, n-1} sd / sqrt(n). With ``bounds`` (low, high) the interval is
    built on the link scale (module docstring: logit, Fisher z for [-1, 1], log) and mapped back, or,
    with ``scale="clip"``, clipped to the range. SD 0 gives the zero-width interval at the mean.

    Args:
        mean, sd: floats or arrays of one shape; ``mean`` inside ``bounds``, ``sd >= 0``.
        n: runs behind them, >= 2.
        confidence: two-sided coverage, in (0, 1).
        bounds: the metric's range, e.g. :data:`UNIT`, :data:`CORRELATION`; None: unbounded.
        scale: ``"auto"`` (link scale) or ``"clip"``.

    Returns:
        ``BootstrapResult(mean, (low, high))`` with ``low <= mean <= high`` inside ``bounds``.
    """
    from scipy import stats

    n = check_int("n", n, 2)
    check_real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    lo, hi = b = _bounds(bounds)
    name = _scale_name(b, check_scale(scale))
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(sd, dtype=np.float64)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s)) and np.all(s >= 0)):
        raise bad("sd", sd, "finite standard deviations >= 0 (and a finite mean)")
    if np.any((m < lo) | (m > hi)):
        raise bad("mean", mean, f"means inside the metric's range [{lo:g}, {hi:g}]")
    s = np.where(s <= SD_TOL * np.maximum(1.0, np.abs(m)), 0.0, s)
    tq = stats.t.ppf(0.5 + confidence / 2.0, n - 1)
    se = s / math.sqrt(n)
    if name in ("identity", "clip"):
        low, high = m - tq * se, m + tq * se
        if name == "clip":
            low, high = np.clip(low, lo, hi), np.clip(high, lo, hi)
        return _ret(m, low, high)
    spread = s > 0
    inside = (m > lo) & (m < hi)
    if np.any(spread & ~inside):
        raise bad("mean", mean, f"a mean strictly inside ({lo:g}, {hi:g}) when the SD is > 0")
    g, dg, inv = _link(name, lo, hi)
    interior = (lo + hi) / 2.0 if name == "logit" else (lo + 1.0 if name == "log" else hi - 1.0)
    mm = np.where(spread, m, interior)  # SD 0 keeps the mean; any interior value avoids log(0) there
    with np.errstate(over="ignore"):
        z, half = g(mm), tq * dg(mm) * se
        low = np.where(spread, np.minimum(inv(z - half), m), m)
        high = np.where(spread, np.maximum(inv(z + half), m), m)
    return _ret(m, np.clip(low, lo, hi), np.clip(high, lo, hi))


def t_interval(
    data: Any, *, confidence: float = 0.95, bounds: Any = None, scale: str = "auto"
) -> BootstrapResult:
    """Student-t interval of the mean over the first axis: mean ± t_{(1+c)/2, n-1} · sd / sqrt(n);
    with ``bounds``, the same on the metric's link scale (:func:`interval_from_moments`).

    Exact for normally distributed run scores, and the usual choice with few seeds (the sample
    standard deviation has n - 1 degrees of freedom, and t quantiles account for its noise).

    Args:
        data: shape (n_runs, ...), n_runs >= 2; the trailing axes are treated independently. Inside
            ``bounds`` when given.
        confidence: two-sided coverage, in (0, 1).
        bounds, scale: the metric's range and how the interval respects it (module docstring).

    Returns:
        ``BootstrapResult(point, (low, high))``: floats for 1-D data, arrays of the trailing shape
        otherwise.
    """
    arr = as_scores("data", data, min_runs=2)
    lo, hi = _bounds(bounds)
    if np.any((arr < lo) | (arr > hi)):
        raise bad("data", arr, f"scores inside the metric's range [{lo:g}, {hi:g}]")
    return interval_from_moments(
        arr.mean(axis=0), arr.std(axis=0, ddof=1), arr.shape[0], confidence=confidence, bounds=(lo, hi),
        scale=scale,
    )  # fmt: skip


def all_equal(point: Any, low: Any, high: Any) -> bool:
    """True for a zero-width interval (every run gave the same value): "all seeds equal: no interval"."""
    return bool(np.isfinite(point) and low == point and high == point)


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
    arr = as_scores("data", data, min_runs=2)
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
    bounds: Any = None,
    scale: str = "auto",
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
        bounds, scale: the metric's range (e.g. :data:`UNIT`) and how a t interval respects it
            (:func:`interval_from_moments`); a bootstrap interval of a mean stays in the range by
            construction and is clipped to it as a guard. :func:`ci_label` names the method.

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
    lim = _bounds(bounds)
    check_scale(scale)
    frames = []
    for key, data in scores.items():
        arr = as_scores(f"scores[{key!r}]", data)
        if arr.shape[0] == 1:
            point = np.asarray(stat(arr), dtype=np.float64)
            low = high = np.full_like(point, np.nan)
        elif method == "t":
            point, (low, high) = t_interval(arr, confidence=confidence, bounds=lim, scale=scale)
        elif method == "bca":
            point, (low, high) = bca_interval(arr, stat, rng=gen, n_boot=n_boot, confidence=confidence)
        else:
            point, (low, high) = bootstrap_ci(arr, stat, rng=gen, n_boot=n_boot, confidence=confidence)
        if method != "t":
            low, high = np.clip(low, *lim), np.clip(high, *lim)
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
