"""Steps 9-12 (budget, worst class, per-class bounds, bias) and the numeric rules they justify.

Every closed form is checked three ways: the SymPy result (lambdified or evaluated by substitution),
the numeric rule in ``theory.margins`` and SciPy's SLSQP on the original constrained problem, which
knows nothing of either.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, NonlinearConstraint, minimize

from theory import (
    bound_term,
    centred_spread,
    class_bound_term,
    margin_term,
    minimax_margins,
    optimal_margins,
    per_class_margins,
)
from theory.centring import bias
from theory.derivation import bound, derivation, symbols
from theory.limits import (
    _minimax_check,
    _norm_check,
    budget,
    per_class,
    worst_class,
)
from theory.numeric_rules import numeric_limits
from theory.steps import Derivation

SEED = 20260215
RTOL = 1e-12  # float64 identities (SymPy lambdified vs the numeric rule)
RTOL_SLSQP = 1e-5  # SLSQP's own stopping rule limits its accuracy (ftol 1e-15 on O(1) objectives)
N_INSTANCES = 12
LIMIT_KEYS = ("tradeoff", "budget", "worst_class", "per_class", "bias")


@pytest.fixture(scope="module")
def deriv() -> Derivation:
    return derivation()


def _instances(n: int, seed: int = SEED):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        K = int(rng.integers(2, 7))
        yield (
            np.exp(rng.uniform(-3, 3, K)),  # a_k
            rng.integers(5, 5000, K).astype(float),  # n_k
            float(rng.uniform(0.2, 3.0)),  # cbar
            float(rng.uniform(0.5, 4.0)),  # p
        )


def _slsqp(fun, x0, constraints, bounds=None) -> np.ndarray:
    res = minimize(
        fun,
        x0,
        method="SLSQP",
        constraints=constraints,
        bounds=bounds,
        options={"ftol": 1e-14, "maxiter": 2000},
    )
    # status 8 ("positive directional derivative in the line search") is SLSQP stalling at the
    # rounding floor of its merit function; the comparison with the closed form decides
    assert res.success or res.status == 8, res.message
    return res.x


# ------------------------------------------------------------------ the steps hold


def test_new_steps_are_verified_and_appended(deriv):
    keys = tuple(s.key for s in deriv)
    assert keys[7 : 7 + len(LIMIT_KEYS)] == LIMIT_KEYS  # steps 8-12, after steps 1-7
    for key in LIMIT_KEYS:
        step = deriv[key]
        failed = [str(c) for c in step.checks if not c.passed]
        assert step.checks and not failed, f"{key}: {failed}"
    assert deriv.verified
    assert "Theorem 3" in deriv.theorem


def test_exponents_by_budget_and_criterion(deriv):
    p = symbols().p
    b = deriv.result("budget_exponents")
    assert sp.simplify(b["sum"] - 1 / (p + 1)) == 0
    assert sp.simplify(b["geometric"] - 1 / p) == 0 and sp.simplify(b["minimax"] - 1 / p) == 0
    assert dict(deriv.result("worst_exponents")) == {"a": sp.Rational(1, 2), "n": sp.Rational(-1, 2)}
    assert dict(deriv.result("per_class_exponents")) == {"a": sp.Rational(1, 4), "n": sp.Rational(-1, 4)}


def test_numeric_spot_checks_are_seeded():
    assert _minimax_check(np.random.default_rng(1)) == _minimax_check(np.random.default_rng(1))
    assert _norm_check(np.random.default_rng(1)) == _norm_check(np.random.default_rng(1))
    assert _minimax_check(np.random.default_rng(1))[0] and _norm_check(np.random.default_rng(1))[0]


# ------------------------------------------------------------------ step 9: budget


def test_geometric_budget_three_ways():
    N = numeric_limits()
    for a, _, cbar, p in _instances(N_INSTANCES):
        K = a.size
        w = np.full(K, 1.0 / K)
        rule = optimal_margins(a, mean_margin=cbar, power=p, budget="geometric")
        np.testing.assert_allclose(N.geometric(w * a, cbar, p), rule, rtol=RTOL)
        # SciPy on log gamma (the product constraint is linear there)
        u = _slsqp(
            lambda u, x=w * a, p=p: float(np.sum(x * np.exp(-p * u))),
            np.full(K, np.log(cbar)),
            [LinearConstraint(np.ones((1, K)), K * np.log(cbar), K * np.log(cbar))],
        )
        np.testing.assert_allclose(np.exp(u), rule, rtol=RTOL_SLSQP)
        assert np.exp(np.mean(np.log(rule))) == pytest.approx(cbar, rel=RTOL)
        terms = w * a / rule**p
        np.testing.assert_allclose(terms, terms[0], rtol=1e-10)  # every class's term equal


def test_minimax_three_ways():
    N = numeric_limits()
    for a, n, cbar, p in _instances(N_INSTANCES, SEED + 1):
        K, x = a.size, a / n
        rule = minimax_margins(a, n, mean_margin=cbar, power=p)
        np.testing.assert_allclose(N.minimax(x, cbar, p), rule, rtol=RTOL)
        # SciPy on the epigraph form in logs: min tau s.t. tau + p u_k >= log x_k (u = log gamma),
        # sum_k exp(u_k) = K cbar; linear constraints keep SLSQP well conditioned
        A = np.hstack([p * np.eye(K), np.ones((K, 1))])
        z0 = np.append(np.full(K, np.log(cbar)), float(np.max(np.log(x) - p * np.log(cbar))))
        z = _slsqp(
            lambda z: z[-1],
            z0,
            [
                LinearConstraint(A, np.log(x), np.inf),
                NonlinearConstraint(lambda z, total=K * cbar: np.sum(np.exp(z[:-1])) / total, 1.0, 1.0),
            ],
        )
        z[:-1] = np.exp(z[:-1])
        np.testing.assert_allclose(z[:-1], rule, rtol=RTOL_SLSQP)
        if p == 2.0:
            np.testing.assert_allclose(N.worst(a, n, cbar), rule, rtol=RTOL)


def test_worst_class_rule_is_minimax_at_p2_and_equalises_the_class_terms():
    N = numeric_limits()
    for a, n, cbar, _ in _instances(N_INSTANCES, SEED + 2):
        g = minimax_margins(a, n, mean_margin=cbar)
        np.testing.assert_allclose(N.worst(a, n, cbar), g, rtol=RTOL)
        T = class_bound_term(a, g, n, weight_norm=1.7)
        np.testing.assert_allclose(T, T[0], rtol=1e-10)


def test_per_class_rule_three_ways():
    N = numeric_limits()
    for a, n, cbar, _ in _instances(N_INSTANCES, SEED + 3):
        K = a.size
        rule = per_class_margins(a, n, mean_margin=cbar)
        np.testing.assert_allclose(N.per_class(a, n, cbar), rule, rtol=RTOL)
        x = np.sqrt(a / n)
        x = x / np.sum(x / cbar)  # the objective at uniform margins is 1: well scaled for SLSQP
        g = _slsqp(
            lambda g, x=x: float(np.sum(x / g)),
            np.full(K, cbar),
            [LinearConstraint(np.ones((1, K)), K * cbar, K * cbar)],
            Bounds(np.full(K, 1e-9), np.inf),
        )
        np.testing.assert_allclose(g, rule, rtol=RTOL_SLSQP)
        # with every a_k equal it is LDAM's n_k^(-1/4)
        eq = per_class_margins(np.full(K, 3.0), n, mean_margin=cbar)
        np.testing.assert_allclose(eq, K * cbar * n**-0.25 / np.sum(n**-0.25), rtol=RTOL)


# ------------------------------------------------------------------ step 10: the bound's terms


def _evaluate(expr: sp.Expr, values: dict) -> float:
    """Substitute numbers into a SymPy expression (explicit K: the sums are expanded) and evaluate."""
    return float(sp.N(expr.subs(values).doit().subs(values)))


def test_bound_term_equals_the_sympy_term_of_step_3():
    """bound_term against Theorem 1's complexity term, evaluated from the SymPy result itself."""
    s = symbols()
    rhs = bound().results["bound_rhs"]
    joint = sp.Add(*[t for t in sp.Add.make_args(rhs) if t.has(s.B)])  # 4 B sqrt(K/n) sqrt(sum ...)
    rng = np.random.default_rng(SEED + 4)
    for _ in range(4):
        K = int(rng.integers(2, 5))
        a, g = np.exp(rng.uniform(-2, 2, K)), rng.uniform(0.2, 3.0, K)
        counts, c = rng.integers(3, 300, K).astype(float), rng.uniform(0.5, 2.0, K)
        B, n = float(rng.uniform(0.5, 5.0)), float(counts.sum())
        values = {s.K: K, s.n: n, s.B: B}
        for k in range(K):
            values[s.a[k + 1]] = a[k]
            values[s.g[k + 1]] = g[k]
            values[s.w[k + 1]] = counts[k] / n * c[k] ** 2  # w_k = pihat_k c_k^2
        sym = _evaluate(joint, values)
        assert bound_term(a, g, counts, weight_norm=B, loss_weights=c) == pytest.approx(sym, rel=RTOL)
        # c = 1 (the risk), and the lambdified version of step 10's reading of the same term
        num = bound_term(a, g, counts, weight_norm=B)
        assert numeric_limits().joint_term(a, counts, g, B) == pytest.approx(num, rel=RTOL)
        # the constant is 4: the term is 4 B sqrt(K/n) times margin_term
        assert num == pytest.approx(4 * B * np.sqrt(K / n) * margin_term(a, g, weights=counts / n), rel=RTOL)


def test_class_bound_term_equals_the_sympy_term_of_step_10():
    s = symbols()
    T = worst_class().results["class_term"]
    rng = np.random.default_rng(SEED + 5)
    for _ in range(4):
        K = int(rng.integers(2, 6))
        a, g = np.exp(rng.uniform(-2, 2, K)), rng.uniform(0.2, 3.0, K)
        counts, B = rng.integers(3, 300, K).astype(float), float(rng.uniform(0.5, 5.0))
        got = class_bound_term(a, g, counts, weight_norm=B)
        for k in range(K):
            vals = {s.K: K, s.B: B, s.a[s.k]: a[k], s.g[s.k]: g[k], s.nk[s.k]: counts[k]}
            assert got[k] == pytest.approx(_evaluate(T, vals), rel=RTOL)
        np.testing.assert_allclose(numeric_limits().class_term(a, counts, g, B), got, rtol=RTOL)
        # Theorem 1's term (c = 1) is sqrt(sum_k pihat_k^2 T_k^2), and the prior-weighted mean of the
        # T_k lies between it and sqrt(K) times it
        joint = bound_term(a, g, counts, weight_norm=B)
        pihat = counts / counts.sum()
        assert joint == pytest.approx(np.sqrt(np.sum(pihat**2 * got**2)), rel=RTOL)
        assert joint <= np.sum(pihat * got) * (1 + RTOL) <= np.sqrt(K) * joint * (1 + RTOL)


def test_bound_terms_torch_in_torch_out():
    a, g, n = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), torch.ones(3), [10, 20, 30]
    T = class_bound_term(a, g, n, weight_norm=2.0)
    assert isinstance(T, torch.Tensor) and T.dtype == torch.float64
    ref = class_bound_term(a.numpy(), g.numpy(), n, weight_norm=2.0)
    np.testing.assert_allclose(T.numpy(), ref, rtol=RTOL)
    J = bound_term(a, g, n, weight_norm=2.0)
    assert isinstance(J, torch.Tensor)
    assert float(J) == pytest.approx(bound_term(a.numpy(), g.numpy(), n, weight_norm=2.0), rel=RTOL)


# ------------------------------------------------------------------ numeric rules: torch and invariances


@pytest.mark.parametrize(
    "rule",
    [
        lambda a: optimal_margins(a, budget="geometric", mean_margin=1.3),
        lambda a: minimax_margins(a, [5.0, 50.0, 500.0, 9.0], mean_margin=1.3),
        lambda a: per_class_margins(a, [5.0, 50.0, 500.0, 9.0], mean_margin=1.3),
    ],
    ids=["geometric", "minimax", "per_class"],
)
def test_new_rules_torch_in_torch_out_and_differentiable(rule):
    a = torch.tensor([0.5, 1.0, 3.0, 7.0], dtype=torch.float64, requires_grad=True)
    g = rule(a)
    assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
    np.testing.assert_allclose(g.detach().numpy(), rule(a.detach().numpy()), rtol=RTOL)
    assert torch.autograd.gradcheck(rule, (a,))


def test_new_rules_are_scale_invariant_and_meet_their_budget():
    rng = np.random.default_rng(SEED + 6)
    a, n = np.exp(rng.uniform(-4, 4, 9)), rng.integers(2, 900, 9).astype(float)
    for rule in (
        lambda s, c: minimax_margins(s, n, mean_margin=c),
        lambda s, c: per_class_margins(s, n, mean_margin=c),
    ):
        np.testing.assert_allclose(rule(a * 1e3, 2.0), rule(a, 2.0), rtol=1e-12)
        assert rule(a, 2.0).mean() == pytest.approx(2.0, rel=1e-12)
    np.testing.assert_allclose(
        optimal_margins(a * 1e3, budget="geometric"), optimal_margins(a, budget="geometric"), rtol=1e-12
    )
    # no counts: every class counts the same, so the count drops out
    np.testing.assert_allclose(minimax_margins(a), minimax_margins(a, np.full(9, 7.0)), rtol=1e-12)
    # the zero-spread conventions match optimal_margins: 0 for that class, uniform when all are 0
    assert minimax_margins(np.array([0.0, 1.0]))[0] == 0
    np.testing.assert_array_equal(per_class_margins(np.zeros(3)), np.ones(3))


# ------------------------------------------------------------------ step 12: bias


def test_centred_spread_minimises_the_weighted_sum():
    rng = np.random.default_rng(SEED + 7)
    for _ in range(6):
        K, d = int(rng.integers(2, 6)), int(rng.integers(1, 5))
        mu, s2, pi = rng.normal(size=(K, d)) * 3 + 5, rng.uniform(0.1, 2, K), rng.uniform(0.1, 1, K)
        pi = pi / pi.sum()

        def total(c: np.ndarray, pi=pi, mu=mu, s2=s2) -> float:
            return float(np.sum(pi * (np.sum((mu - c) ** 2, axis=1) + s2)))

        res = minimize(total, np.zeros(d), method="BFGS", options={"gtol": 1e-12})
        got = centred_spread(mu, s2, weights=pi)
        assert float(np.sum(pi * got)) == pytest.approx(res.fun, rel=1e-9)
        np.testing.assert_allclose(res.x, pi @ mu, rtol=1e-6, atol=1e-8)
        # step 12's centroid, lambdified, per coordinate
        for col in range(d):
            assert numeric_limits().centroid(pi, mu[:, col]) == pytest.approx(pi @ mu[:, col], rel=1e-12)
        # it keeps the between-class part: never below the spreads alone, equal only without it
        assert np.all(got >= s2) and np.sum(pi * got) > np.sum(pi * s2)
        same = centred_spread(np.tile(mu[:1], (K, 1)), s2, weights=pi)
        np.testing.assert_allclose(same, s2, rtol=1e-12, atol=1e-12)


def test_centred_spread_torch_and_default_weights():
    mu = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]], dtype=torch.float64)
    s2 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    got = centred_spread(mu, s2)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    bar = mu.numpy().mean(axis=0)
    np.testing.assert_allclose(got.numpy(), ((mu.numpy() - bar) ** 2).sum(1) + s2.numpy(), rtol=RTOL)
    # translation invariance: the rule no longer sees a common shift of the features
    np.testing.assert_allclose(centred_spread(mu + 10.0, s2).numpy(), got.numpy(), rtol=1e-12)


def test_bias_step_results():
    s = symbols()
    centroid = bias().results["centroid"]
    v, mu = sp.IndexedBase("v", positive=True), sp.IndexedBase("mu", real=True)
    vals = {s.K: 3, v[1]: 1, v[2]: 2, v[3]: 3, mu[1]: 0, mu[2]: 1, mu[3]: 5}
    assert _evaluate(centroid, vals) == pytest.approx((0 + 2 + 15) / 6, rel=RTOL)
    assert per_class().verified and budget().verified
