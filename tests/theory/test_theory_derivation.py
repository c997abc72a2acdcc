"""The SymPy derivation: every step verified, printable, and equal to the numeric rules it justifies."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from theory import gain_over_uniform, ldam_margins, margin_objective, margin_term, optimal_margins
from theory.derivation import (
    allocation,
    builders,
    derivation,
    numeric,
    special_cases,
    symbols,
)
from theory.gain_derivation import _power_mean_check
from theory.steps import Check, Derivation, Step
from theory.symbolic import (
    assume_in_range,
    collapse_sums,
    rademacher_expectation,
    sum_linear,
    truth_check,
    zero_check,
)

RTOL = 1e-12
SEED = 7
N_INSTANCES = 40
STEP_KEYS = (
    "setting",
    "identity",
    "bound",
    "allocation",
    "special_cases",
    "gain",
    "non_centred",
    "tradeoff",
    "budget",
    "worst_class",
    "per_class",
    "bias",
    "oracle_worst",
    "oracle_balanced",
    "oracle_many",
    "temperature",
)


@pytest.fixture(scope="module")
def deriv() -> Derivation:
    return derivation()


# ------------------------------------------------------------------ the derivation holds


def test_every_step_is_verified(deriv):
    assert tuple(s.key for s in deriv) == STEP_KEYS
    for step in deriv:
        assert step.checks, f"{step.key} has no checks"
        failed = [str(c) for c in step.checks if not c.passed]
        assert not failed, f"{step.key}: {failed}"
    assert deriv.verified and not deriv.failed


def test_derivation_is_built_once_per_process(deriv):
    assert derivation() is deriv
    assert all(build() is deriv[build().key] for build in builders())


def test_closed_form_is_the_expected_expression():
    s = symbols()
    g = allocation().results["gamma_star"]
    expected = s.K * s.cbar * s.x[s.k] ** s.q / sp.Sum(s.x[s.j] ** s.q, (s.j, 1, s.K))
    assert sp.simplify(g - expected) == 0


def test_special_case_exponents():
    e = special_cases().results["exponents"]
    assert e["mr2"] == sp.Rational(1, 3)
    assert e["ldam"] == sp.Rational(-1, 4)
    assert e["risk_imbalanced"] == sp.Rational(1, 3)
    assert e["balanced_imbalanced"] == sp.Rational(-1, 3)
    assert sp.simplify(e["general"] - 1 / (symbols().p + 1)) == 0


def test_gain_ratio_is_a_ratio_of_power_means(deriv):
    s = symbols()
    ratio = deriv.result("gain_ratio")
    Mq = (s.S / s.K) ** (s.p + 1)
    M1 = s.T / s.K
    assert sp.simplify(ratio - Mq / M1) == 0
    assert not ratio.has(s.cbar)


def test_power_mean_check_same_seed_same_numbers():
    a = _power_mean_check(np.random.default_rng(3))
    b = _power_mean_check(np.random.default_rng(3))
    assert a == b and a[0] is True


# ------------------------------------------------------------------ numeric == SymPy


def _instances(n: int):
    rng = np.random.default_rng(SEED)
    for _ in range(n):
        K = int(rng.integers(1, 40))
        yield (
            np.exp(rng.uniform(-5, 5, K)),
            rng.uniform(0.1, 1.0, K),
            float(rng.uniform(0.1, 4)),
            float(rng.uniform(0.2, 6)),
        )


def test_lambdified_margins_equal_numeric_rule():
    N = numeric()
    for a, w, cbar, p in _instances(N_INSTANCES):
        np.testing.assert_allclose(
            N.margins(w * a, cbar, p), optimal_margins(a, mean_margin=cbar, weights=w, power=p), rtol=RTOL
        )


def test_lambdified_objective_gain_and_term_equal_numeric_rules():
    N = numeric()
    for a, w, cbar, p in _instances(N_INSTANCES):
        g = optimal_margins(a, mean_margin=cbar, weights=w, power=p)
        assert N.objective(w * a, g, p) == pytest.approx(margin_objective(a, g, weights=w, power=p), rel=RTOL)
        assert N.gain(w * a, p) == pytest.approx(gain_over_uniform(a, weights=w, power=p) ** p, rel=1e-10)
        assert N.margin_term(w, a, g) == pytest.approx(margin_term(a, g, weights=w), rel=RTOL)


def test_lambdified_multiplier_is_the_common_gradient():
    """lambda* = -dJ/dgamma_k at gamma*, the same for every class (stationarity, numerically)."""
    N = numeric()
    for a, w, cbar, p in _instances(10):
        x = w * a
        g = N.margins(x, cbar, p)
        grad = -p * x * g ** (-p - 1)
        np.testing.assert_allclose(-grad, N.multiplier(x, cbar, p), rtol=1e-10)


def test_lambdified_special_cases_equal_numeric_rules():
    N = numeric()
    rng = np.random.default_rng(SEED)
    a = np.exp(rng.uniform(-3, 3, 9))
    np.testing.assert_allclose(N.mr2(a, 1.0), optimal_margins(a), rtol=RTOL)
    counts = rng.integers(5, 5000, 9).astype(float)
    m = N.ldam(counts, 1.0)
    np.testing.assert_allclose(0.5 * m / m.max(), ldam_margins(counts, max_margin=0.5), rtol=RTOL)


# ------------------------------------------------------------------ printing


@pytest.mark.parametrize("key", STEP_KEYS)
def test_step_prints_and_renders(deriv, key):
    step = deriv[key]
    text = str(step)
    assert text == step.pretty() and step.title in text and "Checks:" in text
    tex = step.latex()
    assert tex.startswith("\\begin{aligned}") and tex.endswith("\\end{aligned}")
    assert tex.count("{") == tex.count("}"), "unbalanced braces in the LaTeX"
    assert step._repr_latex_().startswith("$$") and step._repr_latex_().endswith("$$")
    md = step._repr_markdown_()
    assert md.startswith("### ") and "$$" in md and "✅" in md


def test_derivation_renders(deriv):
    text, md, tex = deriv.text(), deriv.markdown(), deriv.latex()
    for i, step in enumerate(deriv, 1):
        assert f"Step {i}. {step.title}" in text
        assert f"### {i}. {step.title}" in md
    assert tex.count("\\[") == len(deriv) and "\\gamma" in tex
    assert all(f"Theorem {i}" in deriv.theorem for i in (1, 2, 3))


def test_unknown_step_and_result_name_the_options(deriv):
    with pytest.raises(KeyError, match="allocation"):
        deriv["nope"]
    with pytest.raises(KeyError, match="gamma_star"):
        deriv.result("nope")


# ------------------------------------------------------------------ checks can fail


def test_checks_can_fail():
    y = sp.Symbol("y")
    assert not zero_check("y is zero", y, "symbolic").passed
    assert "residual y" in zero_check("y is zero", y, "symbolic").detail
    assert zero_check("y - y is zero", y - y, "symbolic").passed
    assert not truth_check("undecided", sp.Symbol("z").is_positive, "symbolic").passed  # None -> fail
    assert not truth_check("false", False, "symbolic").passed
    bad = Step("bad", "A failing step", (), (sp.Eq(y, 1),), "", (Check("no", False, "test"),))
    good = Step("good", "A passing step", (), (), "", (Check("yes", True, "test"),))
    empty = Step("empty", "No checks", (), (), "", ())
    d = Derivation((good, bad))
    assert not bad.verified and good.verified and not empty.verified
    assert not d.verified and [c.claim for c in d.failed] == ["no"]
    assert "[FAIL]" in str(bad) and "❌" in bad.markdown()


# ------------------------------------------------------------------ the symbolic helpers


def test_sum_linear_pulls_out_constants_and_counts_terms():
    i, n = sp.symbols("i n", integer=True, positive=True)
    x = sp.IndexedBase("x")
    c = sp.Symbol("c")
    got = sum_linear(sp.Sum(2 * c * x[i] + 3, (i, 1, n)))
    assert sp.expand(got - (2 * c * sp.Sum(x[i], (i, 1, n)) + 3 * n)) == 0
    # and it is an identity: explicit n
    assert sp.expand(got.subs(n, 4).doit() - sum(2 * c * x[r] + 3 for r in range(1, 5))) == 0


def test_rademacher_expectation():
    e1, e2, e3 = sp.symbols("e1 e2 e3")
    a, b = sp.symbols("a b")
    assert rademacher_expectation((a * e1 + b * e2) ** 2, [e1, e2]) == a**2 + b**2
    assert rademacher_expectation(e1 * e2 * e3, [e1, e2, e3]) == 0
    assert rademacher_expectation(e1**4 * e2**2 + e1, [e1, e2]) == 1


def test_assume_in_range_only_drops_index_conditions():
    k, K = sp.symbols("k K", integer=True, positive=True)
    t = sp.Symbol("t", real=True)
    kept = sp.Piecewise((1, t > 0), (0, True))
    assert assume_in_range(kept, [k]) == kept
    dropped = sp.Piecewise((t, k <= K), (0, True))
    assert assume_in_range(dropped, [k]) == t


def test_collapse_sums_recognises_combined_powers():
    j, K = sp.symbols("j K", integer=True, positive=True)
    p = sp.Symbol("p", positive=True)
    x = sp.IndexedBase("x", positive=True)
    S = sp.Symbol("S")
    target = sp.Sum(x[j] ** (1 / (p + 1)), (j, 1, K))
    expr = sp.Sum(x[j] * x[j] ** (-p / (p + 1)), (j, 1, K))
    assert collapse_sums(expr, {target: S}) == S
