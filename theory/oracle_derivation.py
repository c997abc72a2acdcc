"""Steps 13-14 of the derivation: the Gaussian oracle for two classes, derived in SymPy.

13. :func:`oracle_worst`: isotropic Gaussian classes N(mu_k, sigma_k^2 I), equal priors, a linear
    boundary. The optimal hyperplane is perpendicular to the mean difference and the worst-class
    error is minimised by m_k = delta sigma_k / (sigma_1 + sigma_2): margin ~ variance^(1/2).
14. :func:`oracle_balanced`: the balanced error's stationarity is the density-intersection quadratic;
    its larger root is the global minimum for every delta; the margin's exponent on the variance is
    1/2 - 2 sigma^2/delta^2 near equal variances, and the wider class gets the larger margin only above
    delta* = 2 sqrt(v_1 v_2 log(v_2/v_1) / (v_2 - v_1)).

Step 15 (K > 2) is in ``theory.oracle_kclass_derivation``, step 16 (the temperature regime) in
``theory.temperature_derivation``. The numeric rules live in :mod:`theory.oracle`; the checks here
compare them with the SymPy results, with SciPy's optimisers and with Monte Carlo.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from theory.steps import Check, Step
from theory.symbolic import truth_check, zero_check

__all__ = ["oracle_worst", "oracle_balanced", "ORACLE_SEED", "MC_N", "MC_SIGMAS"]

ORACLE_SEED = 20261202
# (s_1, s_2, delta) for the numeric checks of the two-class closed forms
PAIR_GRID = tuple(
    (s1, s2, d) for s1 in (0.5, 1.0, 2.5) for s2 in (0.7, 1.0, 3.0) for d in (0.2, 1.5, 4.0, 10.0)
)
OPT_ATOL = 1e-6  # |closed form - SciPy optimiser| in units of delta
QUAD_ATOL = 1e-9  # numeric integration of a normal density against its tail function
LAMBDIFY_RTOL = 1e-12  # SymPy closed form (lambdified) against theory.oracle
MC_N = 200_000  # Monte Carlo draws per class
MC_SIGMAS = 4.5  # an MC estimate lies within this many binomial SDs of the exact value


def _Q(z: sp.Expr) -> sp.Expr:
    """The standard normal upper tail."""
    return sp.erfc(z / sp.sqrt(2)) / 2


def _phi(z: sp.Expr) -> sp.Expr:
    return sp.exp(-(z**2) / 2) / sp.sqrt(2 * sp.pi)


@functools.cache
def _pair_symbols() -> tuple[sp.Symbol, ...]:
    s1, s2, delta = sp.symbols("sigma_1 sigma_2 delta", positive=True)
    m = sp.Symbol("m_1", real=True)
    return s1, s2, delta, m


# ------------------------------------------------------------------------------------------------
# 13. two classes, the direction and the worst-class error


def _pair_numeric_checks(criterion: str, closed: sp.Expr) -> list[Check]:
    """Closed form against theory.oracle (lambdified) and against SciPy's bounded Brent search."""
    from scipy.optimize import minimize_scalar
    from scipy.special import ndtr

    from theory.oracle import pair_margins

    s1, s2, delta, _ = _pair_symbols()
    f = sp.lambdify((s1, s2, delta), closed, modules="numpy")
    lam_err, opt_err = 0.0, 0.0
    for a, b, d in PAIR_GRID:
        mine = float(pair_margins(a, b, d, criterion)[0])
        lam_err = max(lam_err, abs(float(f(a, b, d)) - mine) / d)
        if criterion == "worst":
            obj, lo, hi = (lambda m, a=a, b=b, d=d: max(ndtr(-m / a), ndtr(-(d - m) / b))), 0.0, d
        else:
            obj, lo, hi = (
                (lambda m, a=a, b=b, d=d: ndtr(-m / a) + ndtr(-(d - m) / b)),
                -10 * (a + b),
                d + 10 * (a + b),
            )
        res = minimize_scalar(obj, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        opt_err = max(opt_err, abs(res.x - mine) / d)
    return [
        Check(
            "the SymPy closed form equals theory.oracle.pair_margins",
            lam_err < LAMBDIFY_RTOL,
            f"numeric, lambdified, {len(PAIR_GRID)} (s_1, s_2, delta)",
            f"max |difference| / delta = {lam_err:.1e}",
        ),
        Check(
            f"the closed form is the minimiser of the exact {criterion}-class error",
            opt_err < OPT_ATOL,
            f"numeric, SciPy bounded Brent on the exact error, {len(PAIR_GRID)} cases",
            f"max |m_1 - optimiser| / delta = {opt_err:.1e}",
        ),
    ]


def _quad_check(criterion: str, closed: sp.Expr) -> Check:
    """Each class's error at the SymPy closed form, by numeric integration of its normal density."""
    import math

    from scipy.integrate import quad
    from scipy.special import ndtr

    def pdf(x: float, mean: float, sd: float) -> float:
        return math.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

    s1, s2, delta, _ = _pair_symbols()
    f = sp.lambdify((s1, s2, delta), closed, modules="numpy")
    worst = 0.0
    for a, b, d in PAIR_GRID:
        m1 = float(f(a, b, d))
        e1 = quad(pdf, m1, np.inf, args=(0.0, a), epsabs=1e-13)[0]  # class 1 beyond the boundary
        e2 = quad(pdf, -np.inf, m1, args=(d, b), epsabs=1e-13)[0]  # class 2 on class 1's side
        worst = max(worst, abs(e1 - float(ndtr(-m1 / a))), abs(e2 - float(ndtr(-(d - m1) / b))))
    return Check(
        f"class errors at the {criterion} closed form: numeric integration of the densities = Q(m_k/sigma_k)",
        worst < QUAD_ATOL,
        f"numeric, scipy.integrate.quad, {len(PAIR_GRID)} cases",
        f"max |difference| = {worst:.1e}",
    )


def _mc_check(criterion: str) -> Check:
    """Sample two classes in d = 3, cut at the oracle hyperplane, count each class's errors."""
    from scipy.special import ndtr

    from theory.oracle import oracle_margins

    rng = np.random.default_rng([ORACLE_SEED, 13 if criterion == "worst" else 14])
    dim, delta, sig = 3, 2.5, np.array([0.8, 1.6])
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    m = oracle_margins(sig, delta, criterion)
    point = m[0] * u  # mean 0 at the origin, mean 1 at delta u
    worst, rows = 0.0, []
    for k, mean in enumerate((np.zeros(dim), delta * u)):
        x = mean + sig[k] * rng.normal(size=(MC_N, dim))
        side = (x - point) @ u > 0
        got = float(np.mean(side if k == 0 else ~side))
        exact = float(ndtr(-m[k] / sig[k]))
        worst = max(worst, abs(got - exact) / np.sqrt(exact * (1 - exact) / MC_N))
        rows.append(f"class {k + 1}: MC {got:.4f}, Q(m/s) {exact:.4f}")
    return Check(
        f"class errors at the {criterion} oracle boundary equal Q(m_k/sigma_k) (Monte Carlo, d = 3)",
        worst < MC_SIGMAS,
        f"numeric, {MC_N:,} draws per class, seed {ORACLE_SEED}",
        "; ".join(rows) + f"; max |z| = {worst:.2f}",
    )


@functools.cache
def oracle_worst() -> Step:
    """Step 13: the optimal direction and the worst-class oracle, m_k = delta s_k / (s_1 + s_2)."""
    s1, s2, delta, m = _pair_symbols()
    sig = sp.Symbol("sigma", positive=True)
    dp = sp.Symbol("delta'", positive=True)  # projected separation along another direction
    equalise = m / s1 - (delta - m) / s2  # linear in m_1 (checked below): its one root, directly
    m1w = sp.cancel(-equalise.subs(m, 0) / sp.diff(equalise, m))
    m2w = sp.simplify(delta - m1w)
    log_ratio = sp.expand_log(sp.log(m2w / m1w), force=True)
    v_ratio = sp.log(s2**2 / s1**2)
    checks = []
    # A unit direction w = u / |u| projects sigma^2 I to variance sigma^2 (explicit entries, d = 3, 4).
    for dim in (3, 4):
        u = sp.Matrix(sp.symbols(f"u1:{dim + 1}", real=True))
        w = u / sp.sqrt(u.dot(u))
        var = (w.T * (sig**2 * sp.eye(dim)) * w)[0, 0]
        checks.append(
            zero_check(f"w' (sigma^2 I) w = sigma^2 for unit w, d = {dim}", var - sig**2, "symbolic")
        )
    # Cauchy-Schwarz by Lagrange's identity: |u|^2 |D|^2 - (u.D)^2 is a sum of squares (d = 3).
    u = sp.Matrix(sp.symbols("u1:4", real=True))
    D = sp.Matrix(sp.symbols("D1:4", real=True))
    sos = sum((u[i] * D[j] - u[j] * D[i]) ** 2 for i in range(3) for j in range(i + 1, 3))
    checks.append(
        zero_check(
            "projected separation w.(mu_2 - mu_1) <= delta: |u|^2 |D|^2 - (u.D)^2 is a sum of squares",
            u.dot(u) * D.dot(D) - u.dot(D) ** 2 - sos,
            "symbolic, d = 3 (Lagrange's identity)",
            simplify=False,
        )
    )
    # At a fixed m_1 a larger projected separation lowers class 2's error (class 1's is unchanged).
    checks.append(
        truth_check(
            "d/d delta' Q((delta' - m_1)/sigma_2) < 0: the mean-difference direction is optimal",
            sp.simplify(sp.diff(_Q((dp - m) / s2), dp)).is_negative,
            "symbolic",
        )
    )
    checks.append(
        truth_check(
            "Q(m_1/sigma_1) falls and Q((delta - m_1)/sigma_2) rises with m_1: the minimax equalises them",
            bool(sp.diff(_Q(m / s1), m).is_negative and sp.diff(_Q((delta - m) / s2), m).is_positive),
            "symbolic",
        )
    )
    checks.append(
        zero_check(
            "worst class: m_1 = delta sigma_1 / (sigma_1 + sigma_2)", m1w - delta * s1 / (s1 + s2), "symbolic"
        )
    )
    checks.append(
        zero_check(
            "m_1/sigma_1 = m_2/sigma_2 is linear in m_1 (one root) and the root satisfies it",
            sp.diff(equalise, m, 2) + sp.Abs(sp.cancel(equalise.subs(m, m1w))),
            "symbolic",
        )
    )
    checks.append(
        zero_check(
            "log(m_2/m_1) = (1/2) log(v_2/v_1): exponent 1/2 on the variance",
            log_ratio - v_ratio / 2,
            "symbolic",
        )
    )
    checks.append(zero_check("... independent of delta", sp.diff(log_ratio, delta), "symbolic"))
    checks += _pair_numeric_checks("worst", m1w)
    checks.append(_quad_check("worst", m1w))
    checks.append(_mc_check("worst"))
    statements = (
        sp.Eq(sp.Function("Var")(sp.Symbol("x_w")), sig**2),
        sp.Eq(sp.Symbol("err_k"), _Q(sp.Symbol("m_k") / sp.Symbol("sigma_k", positive=True))),
        sp.Eq(sp.Symbol("m_1") + sp.Symbol("m_2"), delta),
        sp.Eq(sp.Symbol("m_1^worst"), m1w),
        sp.Eq(sp.Symbol("m_2^worst"), m2w),
        sp.Eq(sp.log(sp.Symbol("m_2") / sp.Symbol("m_1")), v_ratio / 2),
    )
    explanation = (
        "Class $k$ is $N(\\mu_k, \\sigma_k^2 I)$, priors equal, the classifier a hyperplane; $m_k$ is the "
        "signed distance from $\\mu_k$ to it. Every unit direction $w$ projects class $k$ to a normal "
        "with SD $\\sigma_k$, so only the projected separation $w^\\top(\\mu_2 - \\mu_1) \\le \\delta$ "
        "depends on $w$, and both class errors fall with it: the optimal hyperplane is perpendicular to "
        "the mean difference and class $k$'s error is $Q(m_k/\\sigma_k)$ with $m_1 + m_2 = \\delta$. "
        "The worst-class error is smallest where the two are equal: $m_k \\propto \\sigma_k$, "
        "**exponent 1/2 on the variance at every distance** (the bound's rule $a_k^{1/3}$ has 1/3 on "
        "the second moment). This is the population optimum of a linear boundary (the Bayes rule for "
        "unequal variances is quadratic), not what a finite sample trains."
    )
    return Step(
        "oracle_worst",
        "Gaussian oracle, two classes: the direction and the worst-class margins",
        (
            "Two classes $N(\\mu_k, \\sigma_k^2 I)$, $\\|\\mu_2 - \\mu_1\\| = \\delta$, equal priors.",
            "A linear decision boundary; criterion: the larger of the two class errors.",
        ),
        statements,
        explanation,
        tuple(checks),
        {"oracle_worst_margin": m1w, "oracle_worst_log_ratio": log_ratio, "oracle_symbols": (s1, s2, delta)},
    )


# ------------------------------------------------------------------------------------------------
# 14. two classes, the balanced error


@functools.cache
def oracle_balanced() -> Step:
    """Step 14: the balanced-error oracle, the root of the density-intersection quadratic."""
    from theory.oracle import pair_margins, wider_gets_larger_threshold

    s1, s2, delta, m = _pair_symbols()
    t = sp.Symbol("t", real=True)
    L = sp.log(s2**2 / s1**2)
    R = sp.sqrt(delta**2 + (s2**2 - s1**2) * L)
    B = _Q(m / s1) + _Q((delta - m) / s2)  # twice the balanced error
    dB = sp.diff(B, m)
    stationary = -_phi(m / s1) / s1 + _phi((delta - m) / s2) / s2
    quad = (s1**2 - s2**2) * m**2 - 2 * delta * s1**2 * m + s1**2 * delta**2 + s1**2 * s2**2 * L
    m1b = s1 * (delta**2 + s2**2 * L) / (delta * s1 + s2 * R)
    m2b = s2 * (delta**2 - s1**2 * L) / (delta * s2 + s1 * R)
    log_gap = sp.log(_phi(m / s1) / s1) - sp.log(_phi((delta - m) / s2) / s2)
    # The root identities hold for any value ell of L: checked with L as a free symbol (polynomial).
    ell = sp.Symbol("ell", real=True)
    R_ell = sp.sqrt(delta**2 + (s2**2 - s1**2) * ell)
    q_ell = quad.subs(L, ell)
    plain = (delta * s1**2 - s1 * s2 * R_ell) / (s1**2 - s2**2)  # the textbook root
    same = s1 * (delta**2 + s2**2 * ell) * (s1**2 - s2**2) - (delta * s1**2 - s1 * s2 * R_ell) * (
        delta * s1 + s2 * R_ell
    )
    y = sp.Symbol("y", positive=True)  # s_2^2 = s_1^2 (1 + y): the wider class is class 2
    wider = {s2: s1 * sp.sqrt(1 + y)}
    half = sp.expand_log(
        sp.log((_phi(delta / (2 * s2)) / s2) / (_phi(delta / (2 * s1)) / s1)), force=True
    )  # log f_2(delta/2) - log f_1(delta/2)
    v1, v2 = s1**2, s2**2
    star2 = 4 * v1 * v2 * sp.log(v2 / v1) / (v2 - v1)
    lr = sp.log(m2b / m1b).subs(s2, s1 * sp.exp(t))
    local = sp.simplify(sp.diff(lr, t).subs(t, 0) / 2)  # d log(m2/m1) / d log(v2/v1), v2/v1 = e^(2t)
    checks = [
        zero_check(
            "dB/dm_1 = -phi(m_1/s_1)/s_1 + phi(m_2/s_2)/s_2 (B = sum of class errors)",
            dB - stationary,
            "symbolic",
        ),
        zero_check(
            "log of the stationarity condition, times 2 s_1^2 s_2^2, is the quadratic q(m_1)",
            sp.expand(sp.expand_log(2 * s1**2 * s2**2 * log_gap, force=True) - quad),
            "symbolic",
        ),
        zero_check(
            "m_1 = (delta s_1^2 - s_1 s_2 R)/(s_1^2 - s_2^2) is a root of q",
            sp.cancel(sp.expand(q_ell.subs(m, plain))),
            "symbolic, any value of log(s_2^2/s_1^2)",
            simplify=False,
        ),
        zero_check(
            "... and equals the cancellation-free form s_1 (delta^2 + s_2^2 L)/(delta s_1 + s_2 R)",
            same,
            "symbolic, cross-multiplied",
            simplify=False,
        ),
        zero_check("m_1 + m_2 = delta", m1b + m2b - delta, "symbolic"),
        truth_check(
            "R^2 = delta^2 + (s_2^2 - s_1^2) log(s_2^2/s_1^2) > 0 for every delta (s_2^2 = s_1^2 (1 + y))",
            sp.simplify((R**2).subs(wider)).is_positive,
            "symbolic, class 2 the wider (the other case by symmetry)",
        ),
        truth_check(
            "the roots of q straddle 0 (their product c/a < 0) and the closed form is the positive one: "
            "B' = f_2 - f_1 > 0 in both tails, so it is the minimum",
            bool(
                sp.simplify(
                    ((s1**2 * delta**2 + s1**2 * s2**2 * L) / (s1**2 - s2**2)).subs(wider)
                ).is_negative
                and sp.simplify(m1b.subs(wider)).is_positive
            ),
            "symbolic, s_2^2 = s_1^2 (1 + y)",
        ),
        Check(
            "B -> 1 as m_1 -> -oo and as m_1 -> +oo",
            sp.limit(B, m, -sp.oo) == 1 and sp.limit(B, m, sp.oo) == 1,
            "symbolic, limits",
        ),
        Check(
            "equal spreads: m_1 -> delta/2 as s_2 -> s_1",
            sp.simplify(sp.limit(m1b, s2, s1) - delta / 2) == 0,
            "symbolic, limit",
        ),
        zero_check(
            "log f_2(delta/2) - log f_1(delta/2) = delta^2 (v_2 - v_1)/(8 v_1 v_2) - log(v_2/v_1)/2",
            half - (delta**2 * (v2 - v1) / (8 * v1 * v2) - sp.log(v2 / v1) / 2),
            "symbolic",
        ),
        zero_check(
            "m_2 > 0 iff delta^2 > s_1^2 log(v_2/v_1): m_2's numerator",
            sp.numer(sp.together(m2b)) - s2 * (delta**2 - s1**2 * L),
            "symbolic",
        ),
        zero_check(
            "local exponent d log(m_2/m_1) / d log(v_2/v_1) at v_1 = v_2 is 1/2 - 2 sigma^2/delta^2",
            local - (sp.Rational(1, 2) - 2 * s1**2 / delta**2),
            "symbolic",
        ),
        Check(
            "far apart: m_2/m_1 -> s_2/s_1 as delta -> oo (exponent -> 1/2, the worst-class rule)",
            sp.simplify(sp.limit(m2b / m1b, delta, sp.oo) - s2 / s1) == 0,
            "symbolic, limit",
        ),
    ]
    checks += _pair_numeric_checks("balanced", m1b)
    checks.append(_quad_check("balanced", m1b))
    checks.append(_mc_check("balanced"))
    # The regime boundary: the wider class's margin exceeds the narrower's exactly above delta*.
    flips, tried = 0, 0
    for a, b in ((1.0, 2.0), (0.5, 0.6), (2.0, 7.0)):
        star = float(wider_gets_larger_threshold(a, b))
        for f in (0.9, 1.1):
            m1, m2 = pair_margins(a, b, f * star, "balanced")
            tried += 1
            flips += int((float(m2) > float(m1)) == (f > 1))
    checks.append(
        Check(
            "the wider class gets the larger margin iff delta^2 > 4 v_1 v_2 log(v_2/v_1)/(v_2 - v_1)",
            flips == tried,
            "numeric, 0.9 and 1.1 times delta* for three spread pairs",
            f"{flips} of {tried} on the predicted side",
        )
    )
    # Second derivative positive at the root (numeric, smooth grid)
    d2 = sp.lambdify((m, s1, s2, delta), sp.diff(B, m, 2), modules="scipy")
    bad = [
        (a, b, d)
        for a, b, d in PAIR_GRID
        if a != b and d2(float(pair_margins(a, b, d, "balanced")[0]), a, b, d) <= 0
    ]
    checks.append(
        Check(
            "B'' > 0 at the closed-form root",
            not bad,
            f"numeric, {len(PAIR_GRID)} (s_1, s_2, delta) with s_1 != s_2",
            f"failures: {bad}" if bad else "all positive",
        )
    )
    delta_star = sp.Symbol("delta_*", positive=True)
    statements = (
        sp.Eq(2 * sp.Function("BalErr")(m), B),
        sp.Eq(stationary, 0),
        sp.Eq(quad, 0),
        sp.Eq(sp.Symbol("m_1^bal"), m1b),
        sp.Eq(sp.Symbol("m_2^bal"), m2b),
        sp.Eq(delta_star**2, star2),
        sp.Eq(
            sp.Function("e")(delta), sp.Rational(1, 2) - 2 * sp.Symbol("sigma", positive=True) ** 2 / delta**2
        ),
    )
    explanation = (
        "The balanced error's stationarity "
        "$\\varphi(m_1/\\sigma_1)/\\sigma_1 = \\varphi(m_2/\\sigma_2)/\\sigma_2$ puts the boundary "
        "where the class densities cross; taking logs gives a quadratic whose "
        "discriminant is positive for every $\\delta$ (unequal spreads), whose roots straddle the "
        "narrower mean, and whose larger root is the global minimum (the error tends to 1/2 at both "
        "ends). The form above has no cancellation; at equal spreads it is $\\delta/2$. "
        "**Which class gets the larger margin depends on the distance.** Near equal variances the "
        "exponent on the variance is $1/2 - 2\\sigma^2/\\delta^2$: negative below $\\delta = 2\\sigma$ "
        "(the wider class gets the *smaller* margin), and it tends to the worst-class $1/2$ as "
        "$\\delta \\to \\infty$. In general the wider class gets the larger margin iff "
        "$\\delta > \\delta^*$, and its margin is negative (the boundary passes beyond its mean) when "
        "$\\delta^2 < \\sigma_1^2 \\log(v_2/v_1)$."
    )
    return Step(
        "oracle_balanced",
        "Gaussian oracle, two classes: the balanced-error margins",
        ("As step 13; criterion: the mean of the two class errors.",),
        statements,
        explanation,
        tuple(checks),
        {
            "oracle_balanced_margin": m1b,
            "oracle_balanced_exponent": sp.Rational(1, 2)
            - 2 * sp.Symbol("sigma", positive=True) ** 2 / delta**2,
            "oracle_wider_threshold": star2,
        },
    )
