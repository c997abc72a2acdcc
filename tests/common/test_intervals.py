"""mr2_core.intervals: intervals that stay inside their metric's range.

The bounded t interval equals scipy's t interval computed on the link scale (logit, Fisher's
z = atanh, log) and mapped back; over random inputs (hypothesis) no interval leaves its range and
every interval holds its point; zero variance gives a zero-width interval; clipping keeps the t
interval where the range does not bind.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mr2_core.intervals import (
    CORRELATION,
    DIFFERENCE,
    NON_NEGATIVE,
    UNIT,
    all_equal,
    ci_label,
    interval_estimates,
    interval_from_moments,
    t_interval,
)

RTOL = 1e-10  # one closed form computed two ways
N_EXAMPLES = 150  # hypothesis examples per property (each is a few microseconds of numpy)


def _scipy_link(x, g, dg, inv, confidence=0.95):
    m, se = x.mean(), x.std(ddof=1) / math.sqrt(len(x))
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=g(m), scale=dg(m) * se)
    return m, inv(lo), inv(hi)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_fisher_z_interval_equals_scipy_on_the_atanh_scale(n):
    rho = np.random.default_rng(n).uniform(-0.95, 0.2, size=n)
    ref = _scipy_link(rho, np.arctanh, lambda r: 1 / (1 - r * r), np.tanh)
    point, (low, high) = t_interval(rho, bounds=CORRELATION)
    np.testing.assert_allclose((point, low, high), ref, rtol=RTOL)
    assert -1 < low <= point <= high < 1
    assert ci_label("t", CORRELATION) == "t, fisher-z scale"


def test_logit_and_log_intervals_equal_scipy_on_their_scales():
    gen = np.random.default_rng(1)
    acc = gen.uniform(0.9, 0.999, size=4)
    logit = _scipy_link(
        acc, lambda p: np.log(p / (1 - p)), lambda p: 1 / (p * (1 - p)), lambda y: 1 / (1 + np.exp(-y))
    )
    np.testing.assert_allclose(t_interval(acc, bounds=UNIT, confidence=0.9)[1], _scipy_link(
        acc, lambda p: np.log(p / (1 - p)), lambda p: 1 / (p * (1 - p)), lambda y: 1 / (1 + np.exp(-y)), 0.9
    )[1:], rtol=RTOL)  # fmt: skip
    np.testing.assert_allclose(t_interval(acc, bounds=UNIT)[1], logit[1:], rtol=RTOL)
    sd = gen.uniform(0.001, 0.05, size=3)
    ref = _scipy_link(sd, np.log, lambda s: 1 / s, np.exp)
    np.testing.assert_allclose(t_interval(sd, bounds=NON_NEGATIVE)[1], ref[1:], rtol=RTOL)


def test_bounded_interval_is_the_t_interval_far_from_the_bounds():
    acc = 0.5 + np.random.default_rng(2).normal(0, 1e-5, size=5)
    _, (low, high) = t_interval(acc, bounds=UNIT)
    ref = stats.ttest_1samp(acc, 0.0).confidence_interval(0.95)
    np.testing.assert_allclose((low, high), (ref.low, ref.high), rtol=1e-8)


def test_published_failures_are_fixed():
    """A two-seed rho of -0.02 had the t interval [-6.37, 6.34]; accuracies near 1 went above 1."""
    rho = np.array([-0.47, 0.43])
    assert t_interval(rho)[1][0] < -1  # the plain interval leaves the range
    _, (low, high) = t_interval(rho, bounds=CORRELATION)
    assert -1 < low < high < 1
    acc = np.array([1.0, 0.96, 0.995])
    assert t_interval(acc)[1][1] > 1
    assert t_interval(acc, bounds=UNIT)[1][1] < 1


def test_zero_variance_and_perfect_correlations():
    point, (low, high) = t_interval(np.ones(3), bounds=CORRELATION)  # |rho| = 1 on every seed
    assert point == low == high == 1.0 and all_equal(point, low, high)
    point, (low, high) = t_interval(np.array([1.0, 0.6]), bounds=CORRELATION)  # one seed at |rho| = 1
    assert point == pytest.approx(0.8) and -1 <= low < point < high <= 1
    assert not all_equal(point, low, high)


def test_clip_keeps_t_where_the_range_does_not_bind():
    d = np.array([0.01, 0.03, 0.02])
    np.testing.assert_allclose(t_interval(d, bounds=DIFFERENCE, scale="clip")[1], t_interval(d)[1], rtol=RTOL)
    wide = np.array([-0.9, 0.9])
    assert t_interval(wide, bounds=DIFFERENCE, scale="clip")[1] == (-1.0, 1.0)
    assert ci_label("t", DIFFERENCE, "clip") == "t, clipped to [-1, 1]"


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="data"):
        t_interval(np.array([0.5, 1.2]), bounds=UNIT)
    with pytest.raises(ValueError, match="bounds"):
        t_interval(np.array([0.5, 0.6]), bounds=(1, 0))
    with pytest.raises(ValueError, match="scale"):
        t_interval(np.array([0.5, 0.6]), bounds=UNIT, scale="probit")
    with pytest.raises(ValueError, match="mean"):
        interval_from_moments(1.0, 0.1, 3, bounds=UNIT)  # SD > 0 at the bound: not a mean of runs


_RANGES = {"unit": UNIT, "correlation": CORRELATION, "non_negative": NON_NEGATIVE}


def _in_range(name):
    lo, hi = _RANGES[name]
    hi = 10.0 if math.isinf(hi) else hi
    return st.lists(st.floats(lo, hi, allow_nan=False), min_size=2, max_size=8).map(np.array)


@settings(max_examples=N_EXAMPLES, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(_RANGES)), confidence=st.floats(0.5, 0.999))
def test_no_interval_leaves_its_range(data, name, confidence):
    x = data.draw(_in_range(name))
    lo, hi = _RANGES[name]
    point, (low, high) = t_interval(x, bounds=(lo, hi), confidence=confidence)
    assert lo <= low <= point <= high <= hi
    d = x[: len(x) // 2 * 2].reshape(2, -1)
    diff = np.clip(d[0] - d[1], -1, 1) if name != "non_negative" else np.clip((d[0] - d[1]) / 10, -1, 1)
    if diff.size >= 2:
        _, (dl, dh) = t_interval(diff, bounds=DIFFERENCE, scale="clip", confidence=confidence)
        assert -1 <= dl <= diff.mean() <= dh <= 1


@settings(max_examples=20, deadline=None)
@given(x=_in_range("unit"), method=st.sampled_from(["percentile", "t"]))
def test_interval_table_respects_the_range_for_every_method(x, method):
    table = interval_estimates({"a": x}, method=method, rng=0, n_boot=200, bounds=UNIT)
    assert ((table["ci_low"] >= 0) & (table["ci_high"] <= 1)).all()
