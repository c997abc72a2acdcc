"""The numeric margin rules against a numeric optimiser, hand-worked cases and their invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import (
    gain_over_uniform,
    ldam_margins,
    margin_objective,
    margin_term,
    optimal_margins,
    power_mean,
)
from theory.reference import scipy_optimal_margins

RTOL_SCIPY = 1e-6  # the target for agreement with a numeric constrained optimiser
RTOL = 1e-12  # float64 identities
SEED = 20260212
# (K, instances): K up to 1,000; the K = 1000 solve takes about a second
AGREEMENT_CASES = ((2, 20), (3, 20), (10, 20), (100, 6), (300, 2), (1000, 1))
SLSQP_CASES = ((2, 10), (5, 10), (20, 5))

spreads = st.lists(st.floats(1e-6, 1e6, allow_nan=False), min_size=1, max_size=40).map(np.array)
powers = st.floats(0.1, 8.0)


def _instance(rng: np.random.Generator, K: int):
    p = float(rng.uniform(0.25, 4.0))
    a = np.exp(rng.uniform(-6.0, 6.0, K))  # about five decades of spread
    w = rng.uniform(0.1, 1.0, K)
    cbar = float(rng.uniform(0.1, 5.0))
    return a, w, cbar, p


# ------------------------------------------------------------------ against scipy


@pytest.mark.parametrize(("K", "n_instances"), AGREEMENT_CASES)
def test_closed_form_matches_scipy_optimiser(K, n_instances):
    rng = np.random.default_rng([SEED, K])
    for _ in range(n_instances):
        a, w, cbar, p = _instance(rng, K)
        closed = optimal_margins(a, mean_margin=cbar, weights=w, power=p)
        ref = scipy_optimal_margins(a, mean_margin=cbar, weights=w, power=p)
        err = np.max(np.abs(closed - ref) / ref)
        assert err < RTOL_SCIPY, (
            f"K={K} p={p:.3f}: max rel err {err:.3e}\nclosed={closed[:5]}\nscipy={ref[:5]}"
        )


@pytest.mark.parametrize(("K", "n_instances"), SLSQP_CASES)
def test_closed_form_matches_slsqp_on_gamma(K, n_instances):
    """A second, genuinely constrained optimiser (SLSQP on gamma with the equality constraint)."""
    rng = np.random.default_rng([SEED, 7, K])
    for _ in range(n_instances):
        a, w, cbar, p = _instance(rng, K)
        closed = optimal_margins(a, mean_margin=cbar, weights=w, power=p)
        ref = scipy_optimal_margins(a, mean_margin=cbar, weights=w, power=p, method="slsqp")
        np.testing.assert_allclose(ref, closed, rtol=RTOL_SCIPY)


def test_optimum_beats_feasible_perturbations():
    """No feasible direction (sum of changes 0) lowers J: a check that needs no optimiser at all."""
    rng = np.random.default_rng(SEED)
    for _ in range(50):
        a, w, cbar, p = _instance(rng, int(rng.integers(2, 30)))
        g = optimal_margins(a, mean_margin=cbar, weights=w, power=p)
        J0 = margin_objective(a, g, weights=w, power=p)
        d = rng.normal(size=g.size)
        d -= d.mean()
        for eps in (1e-3, 1e-2, 0.1):
            step = eps * g.min() * d / np.abs(d).max()
            assert margin_objective(a, g + step, weights=w, power=p) >= J0 * (1 - RTOL)


# ------------------------------------------------------------------ worked by hand


@pytest.mark.parametrize(
    ("a", "w", "p", "expected"),
    [
        # p = 2: (g1/g2)^3 = a1/a2 = 1/8 -> g1/g2 = 1/2, g1 + g2 = 2 -> (2/3, 4/3)
        ((1.0, 8.0), None, 2, (2 / 3, 4 / 3)),
        # p = 1: (g1/g2)^2 = 1/4 -> the same margins
        ((1.0, 4.0), None, 1, (2 / 3, 4 / 3)),
        # weights cancel the spreads: w a = (4, 4) -> uniform
        ((1.0, 4.0), (4.0, 1.0), 2, (1.0, 1.0)),
        # p = 3: (g1/g2)^4 = 16 -> g1 = 2 g2 -> (4/3, 2/3)
        ((16.0, 1.0), None, 3, (4 / 3, 2 / 3)),
    ],
)
def test_two_classes_by_hand(a, w, p, expected):
    """K = 2: eliminate g2 = 2 - g1; d/dg1 [x1/g1^p + x2/g2^p] = 0 gives (g1/g2)^(p+1) = x1/x2."""
    got = optimal_margins(np.array(a), weights=None if w is None else np.array(w), power=p)
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def test_two_classes_objective_by_hand():
    # a = (1, 8), p = 2, w = 1/2: J* = (1/2)(1/(2/3)^2 + 8/(4/3)^2) = (1/2)(9/4 + 9/2) = 27/8
    g = optimal_margins(np.array([1.0, 8.0]))
    assert margin_objective(np.array([1.0, 8.0]), g) == pytest.approx(27 / 8, rel=RTOL)
    # uniform: (1/2)(1 + 8) = 9/2; gain on J = (27/8) / (9/2) = 3/4, on the margin term sqrt(3/4)
    assert gain_over_uniform(np.array([1.0, 8.0])) == pytest.approx(np.sqrt(3 / 4), rel=RTOL)
    # power means: M_{1/3}(1, 8) = ((1 + 2)/2)^3 = 27/8, M_1 = 9/2
    assert power_mean(np.array([1.0, 8.0]), 1 / 3) == pytest.approx(27 / 8, rel=RTOL)


# ------------------------------------------------------------------ invariances (hypothesis)


@settings(max_examples=60, deadline=None)
@given(a=spreads, scale=st.floats(1e-4, 1e4), p=powers)
def test_scale_invariance(a, scale, p):
    """Multiplying every spread (feature units) or every weight by c leaves the margins unchanged."""
    base = optimal_margins(a, power=p)
    np.testing.assert_allclose(optimal_margins(a * scale, power=p), base, rtol=1e-10)
    w = np.linspace(1.0, 2.0, a.size)
    np.testing.assert_allclose(
        optimal_margins(a, weights=w * scale, power=p), optimal_margins(a, weights=w, power=p), rtol=1e-10
    )


@settings(max_examples=60, deadline=None)
@given(a=spreads, cbar=st.floats(1e-3, 1e3), p=powers)
def test_budget_scales_linearly_and_is_met(a, cbar, p):
    g = optimal_margins(a, mean_margin=cbar, power=p)
    assert np.all(g > 0)
    assert g.mean() == pytest.approx(cbar, rel=1e-12)
    np.testing.assert_allclose(g, cbar * optimal_margins(a, power=p), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), a=spreads, p=powers)
def test_permutation_equivariance(data, a, p):
    perm = np.array(data.draw(st.permutations(range(a.size))))
    w = np.linspace(0.5, 1.5, a.size)
    got = optimal_margins(a[perm], weights=w[perm], power=p)
    np.testing.assert_allclose(got, optimal_margins(a, weights=w, power=p)[perm], rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(a=spreads, p=powers)
def test_larger_spread_gets_larger_margin(a, p):
    g = optimal_margins(a, power=p)
    order = np.argsort(a, kind="stable")
    assert np.all(np.diff(g[order]) >= -1e-12 * g.max())


def test_all_zero_spread_gives_uniform_and_zero_spread_gives_zero_margin():
    np.testing.assert_array_equal(optimal_margins(np.zeros(4), mean_margin=2.0), np.full(4, 2.0))
    g = optimal_margins(np.array([0.0, 1.0, 1.0]))
    assert g[0] == 0 and g[1:] == pytest.approx([1.5, 1.5])


# ------------------------------------------------------------------ special cases


def test_mr2_rule_is_cube_root():
    a = np.array([1.0, 8.0, 27.0, 64.0])
    g = optimal_margins(a)  # p = 2, uniform weights
    np.testing.assert_allclose(g, 4 * np.array([1, 2, 3, 4]) / 10, rtol=RTOL)


def test_ldam_special_case():
    """LDAM (Cao et al. 2019): m_k proportional to n_k^(-1/4), max margin = max_m."""
    counts = np.array([5000.0, 2000.0, 500.0, 50.0, 5.0])
    m = ldam_margins(counts, max_margin=0.5)
    expected = counts**-0.25
    np.testing.assert_allclose(m, 0.5 * expected / expected.max(), rtol=RTOL)
    # balanced data: every margin equal
    np.testing.assert_allclose(ldam_margins(np.full(7, 300.0)), np.full(7, 0.5), rtol=RTOL)
    # it is the p = 1 rule with a_k = n_k^(-1/2): same shape as optimal_margins
    g = optimal_margins(counts**-0.5, power=1)
    np.testing.assert_allclose(m / m.max(), g / g.max(), rtol=RTOL)
    # torch in, torch out
    mt = ldam_margins(torch.tensor(counts))
    assert isinstance(mt, torch.Tensor)
    np.testing.assert_allclose(mt.numpy(), m, rtol=1e-6)


# ------------------------------------------------------------------ gain and margin term


@settings(max_examples=80, deadline=None)
@given(a=spreads, p=powers)
def test_gain_is_at_most_one_and_equals_direct_ratio(a, p):
    w = np.linspace(1.0, 3.0, a.size)
    gain = gain_over_uniform(a, weights=w, power=p)
    assert 0 < gain <= 1 + 1e-12
    g = optimal_margins(a, weights=w, power=p)
    direct = margin_term(a, g, weights=w, power=p) / margin_term(a, np.ones(a.size), weights=w, power=p)
    assert gain == pytest.approx(direct, rel=1e-9)


def test_gain_is_one_exactly_when_spreads_are_equal():
    assert gain_over_uniform(np.full(6, 3.7)) == pytest.approx(1.0, abs=1e-15)
    assert gain_over_uniform(np.array([1.0, 1.0 + 1e-3])) < 1.0


def test_gain_numeric_over_many_random_instances():
    rng = np.random.default_rng(SEED)
    worst = 0.0
    for _ in range(2000):
        K = int(rng.integers(2, 60))
        a = np.exp(rng.uniform(-10, 10, K))
        p = float(rng.uniform(0.05, 10))
        worst = max(worst, float(gain_over_uniform(a, power=p)))
    assert worst <= 1.0 + 1e-12, worst


def test_gain_small_dispersion_expansion():
    """Step 6's series: gain on J = 1 - p e^2 / (2(p+1)) + O(e^3) for x = (1 + e, 1 - e)."""
    for p in (1.0, 2.0, 5.0):
        e = 1e-3
        g_J = gain_over_uniform(np.array([1 + e, 1 - e]), power=p) ** p
        assert g_J == pytest.approx(1 - p * e**2 / (2 * (p + 1)), abs=1e-8)


def test_margin_term_is_sqrt_of_weighted_sum():
    a, g, w = np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 1.5]), np.array([0.2, 0.3, 0.5])
    expected = np.sqrt(np.sum(w * a / g**2))
    assert margin_term(a, g, weights=w) == pytest.approx(expected, rel=RTOL)


# ------------------------------------------------------------------ torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_in_torch_out(dtype):
    a = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=dtype)
    g = optimal_margins(a, mean_margin=1.5)
    assert isinstance(g, torch.Tensor) and g.dtype == dtype and g.device == a.device
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(g.numpy(), optimal_margins(a.double().numpy(), mean_margin=1.5), rtol=tol)
    for fn in (margin_objective, margin_term):
        out = fn(a, g)
        assert isinstance(out, torch.Tensor) and out.dtype == dtype
    assert isinstance(gain_over_uniform(a), torch.Tensor)


def test_torch_integer_spread_is_promoted():
    g = optimal_margins(torch.tensor([1, 8]))
    assert g.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(g.numpy(), [2 / 3, 4 / 3], rtol=1e-6)


def test_torch_gradient_matches_finite_differences():
    a = torch.tensor([0.5, 1.0, 3.0, 7.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: optimal_margins(s, weights=w, power=2.5, validate=False), (a,))
    assert torch.autograd.gradcheck(lambda s: optimal_margins(s), (a,))  # validated path keeps the graph
    # and the gradient of the bound's margin term through the margins
    g = optimal_margins(a, weights=w)
    term = margin_term(a, g, weights=w)
    (grad,) = torch.autograd.grad(term, a)
    assert torch.all(torch.isfinite(grad))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_cuda_device_kept():
    a = torch.tensor([1.0, 2.0, 4.0], device="cuda")
    g = optimal_margins(a, weights=torch.full((3,), 1 / 3, device="cuda"))
    assert g.device == a.device
    np.testing.assert_allclose(g.cpu().numpy(), optimal_margins(a.cpu().numpy()), rtol=1e-6)
