"""Step 8 and ``theory.tradeoff``: the bound with its empirical ramp risk kept.

The expected ramp risk is checked against SymPy's closed form, numerical quadrature and Monte Carlo;
``tradeoff_margins`` (a one-parameter search along the curve the derivation proves holds every
stationary point) against SciPy's L-BFGS-B on the full objective from several starts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize

from theory import gaussian_ramp_risk, optimal_margins, tradeoff_margins, two_gaussians
from theory.numeric_rules import numeric_limits
from theory.tradeoff import _window
from theory.tradeoff_derivation import TRADEOFF_EXAMPLES, tradeoff

SEED = 20260216
RTOL = 1e-12  # float64 identities
RTOL_QUAD = 1e-9  # scipy.integrate.quad at its default tolerances
MC_SAMPLES = 400_000
MC_Z = 5.0  # Monte Carlo: the closed form within 5 standard errors
RTOL_MARGINS = 1e-4  # vs L-BFGS-B: its gradient tolerance limits the margins, not the objective
RTOL_OBJECTIVE = 1e-9  # the objective is flat at the optimum, so it agrees far more closely
N_INSTANCES = 6


def _ramp(M: np.ndarray, g: float) -> np.ndarray:
    return np.clip(1.0 - M / g, 0.0, 1.0)


def _dens(t: float, m: float, s: float) -> float:
    return float(np.exp(-0.5 * ((t - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)))


# ------------------------------------------------------------------ the expected ramp risk


def test_step8_is_verified():
    step = tradeoff()
    assert step.verified, [str(c) for c in step.checks if not c.passed]


@pytest.mark.parametrize("m", [-3.0, -0.4, 0.0, 0.7, 2.5, 9.0])
@pytest.mark.parametrize("s", [0.3, 1.0, 4.0])
def test_ramp_risk_equals_sympy_and_quadrature(m, s):
    N = numeric_limits()
    for g in (1e-4, 0.02, 0.3, 1.0, 5.0, 40.0):
        got = float(gaussian_ramp_risk(g, m, s))
        # SymPy's form as written cancels O(1) terms divided by gamma: rounding ~ eps (|m| + s) / gamma
        naive_err = 50 * np.finfo(float).eps * (abs(m) + s + g) / g
        assert got == pytest.approx(float(N.ramp_risk(g, m, s)), rel=1e-9, abs=naive_err)
        ref = quad(
            lambda t, g=g: _ramp(np.array(t), g) * _dens(t, m, s), m - 40 * s, m + 40 * s, points=[0, g]
        )
        assert got == pytest.approx(ref[0], rel=RTOL_QUAD, abs=1e-13)
        # the window mean E[M; 0 < M < gamma], the quantity that sets R'
        win = float(_window(np.array(g), np.array(m), np.array(s))[1])
        ref = quad(lambda t: t * _dens(t, m, s), 0.0, g)[0]
        assert win == pytest.approx(ref, rel=RTOL_QUAD, abs=1e-15)
        assert win == pytest.approx(float(N.window_mean(g, m, s)), rel=1e-7, abs=naive_err * g)


def test_ramp_risk_against_monte_carlo():
    rng = np.random.default_rng(SEED)
    for m, s, g in ((1.0, 2.0, 0.5), (3.0, 1.0, 2.0), (-1.0, 0.5, 0.1)):
        M = rng.normal(m, s, MC_SAMPLES)
        r = _ramp(M, g)
        se = r.std() / np.sqrt(MC_SAMPLES)
        assert abs(r.mean() - float(gaussian_ramp_risk(g, m, s))) < MC_Z * se


def test_ramp_risk_rises_with_the_margin_at_the_derived_rate():
    """R'(gamma) = E[M; 0 < M < gamma] / gamma^2 (step 8), by central differences."""
    for m, s in ((0.5, 1.0), (2.0, 0.7), (-1.0, 2.0)):
        for g in (0.05, 0.5, 3.0):
            h = 1e-5 * g
            fd = (gaussian_ramp_risk(g + h, m, s) - gaussian_ramp_risk(g - h, m, s)) / (2 * h)
            win = float(_window(np.array(g), np.array(m), np.array(s))[1])
            assert fd == pytest.approx(win / g**2, rel=1e-6)
            assert fd >= 0


# ------------------------------------------------------------------ the optimum


def _objective(g, inst, w):
    R = gaussian_ramp_risk(g, inst["margin_mean"], inst["margin_sd"])
    return float(np.sum(w * R) + inst["complexity"] * np.sqrt(np.sum(w * inst["spread"] / g**2)))


def _scipy_optimum(inst, w, starts):
    """L-BFGS-B on log gamma of the full objective, best of several starts (no use of the closed form)."""
    best = None
    for g0 in starts:
        res = minimize(
            lambda u: _objective(np.exp(u), inst, w),
            np.log(g0),
            method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return np.exp(best.x), best.fun


def _random_instance(rng):
    K = int(rng.integers(2, 5))
    m = rng.uniform(0.3, 4.0, K)
    s = rng.uniform(0.5, 3.0, K)
    inst = {
        "spread": m**2 / 2 + s**2 / 2 + rng.uniform(0.0, 1.0, K),  # a_k in feature units (B = 1)
        "margin_mean": m,
        "margin_sd": s,
        "complexity": float(10 ** rng.uniform(-3.5, -1.5)),
    }
    w = rng.uniform(0.2, 1.0, K)
    return inst, w / w.sum()


def test_tradeoff_matches_scipy_on_random_instances():
    rng = np.random.default_rng(SEED + 1)
    for _ in range(N_INSTANCES):
        inst, w = _random_instance(rng)
        res = tradeoff_margins(**inst, weights=w)
        assert not res.vacuous
        rule = optimal_margins(inst["spread"], weights=w)
        starts = [scale * rule for scale in (0.05, 0.3, 1.0, 3.0)]
        g, F = _scipy_optimum(inst, w, starts)
        assert res.objective <= F * (1 + RTOL_OBJECTIVE)  # never worse than SciPy's best
        assert res.objective == pytest.approx(F, rel=RTOL_OBJECTIVE)
        np.testing.assert_allclose(res.margins, g, rtol=RTOL_MARGINS)
        # the reported pieces add up, and the derived stationarity holds: gamma_k D_k = tau a_k
        assert res.objective == pytest.approx(np.sum(w * res.ramp_risk) + res.complexity, rel=RTOL)
        D = _window(res.margins, inst["margin_mean"], inst["margin_sd"])[1]
        np.testing.assert_allclose(res.margins * D, res.tau * inst["spread"], rtol=1e-10)
        M = np.sqrt(np.sum(w * inst["spread"] / res.margins**2))
        assert res.tau == pytest.approx(inst["complexity"] / M, rel=1e-10)


def test_tradeoff_is_deterministic():
    inst = two_gaussians(1.0, [1.0, 2.0], n=1e5)
    a, b = tradeoff_margins(**inst), tradeoff_margins(**inst)
    np.testing.assert_array_equal(a.margins, b.margins)


def test_direction_of_the_correction():
    """Overlapping classes: the wider class's margin grows faster than a^(1/3); separated: slower."""
    for key, faster in (("overlapping", True), ("separated", False)):
        mean, sigmas, n = TRADEOFF_EXAMPLES[key]
        inst = two_gaussians(mean, sigmas, n=n)
        g = tradeoff_margins(**inst).margins
        rule = optimal_margins(inst["spread"])
        assert (g[1] / g[0] > rule[1] / rule[0]) == faster
    mean, sigmas, n = TRADEOFF_EXAMPLES["separated"]
    g = tradeoff_margins(**two_gaussians(mean, sigmas, n=n)).margins
    assert g[1] < g[0]  # the wider class gets the smaller margin


def test_two_gaussians_instance():
    inst = two_gaussians(2.0, [1.0, 3.0], weight_norm=0.5, n=400)
    np.testing.assert_allclose(inst["spread"], [5.0, 13.0], rtol=RTOL)
    np.testing.assert_allclose(inst["margin_mean"], [np.sqrt(2) * 0.5 * 2.0] * 2, rtol=RTOL)
    np.testing.assert_allclose(inst["margin_sd"], np.sqrt(2) * 0.5 * np.array([1.0, 3.0]), rtol=RTOL)
    assert inst["complexity"] == pytest.approx(4 * 0.5 * np.sqrt(2 / 400), rel=RTOL)
    # the margin of a class-0 example h ~ N(2, 1) under W = (B/sqrt2)(1, -1): (W h)_0 - (W h)_1
    rng = np.random.default_rng(SEED + 2)
    h = rng.normal(2.0, 1.0, 200_000)
    margin = (0.5 / np.sqrt(2)) * h - (-(0.5 / np.sqrt(2)) * h)
    assert margin.mean() == pytest.approx(inst["margin_mean"][0], abs=5 * margin.std() / np.sqrt(h.size))


def test_large_complexity_is_refused_or_vacuous():
    inst = two_gaussians(1.0, [1.0, 2.0], n=10.0)  # C = 4 sqrt(2/10): the bound cannot beat 1
    try:
        res = tradeoff_margins(**inst)
    except ValueError as err:
        assert str(err).startswith("complexity=")
    else:
        assert res.vacuous
