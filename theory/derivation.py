"""The class-sensitive margin bound and its optimal margins, derived and checked in SymPy.

Seven steps here, and five more on what the bound does and does not say
(``theory.tradeoff_derivation``: step 8, ``theory.limits``: steps 9-12), each a
:class:`theory.steps.Step` that prints (``str``, ``pretty()``), renders LaTeX (``latex()``, Jupyter)
and carries the checks SymPy ran when it was built:

1. :func:`setting`: K classes, features h in R^d, linear head ||W||_F <= B, ramp loss with margin
   gamma_y (1/gamma_y-Lipschitz; the multi-class margin is sqrt(2)-Lipschitz in the logits).
2. :func:`identity`: (1/n) sum_i ||h_i||^2 = ||mu||^2 + s^2, for general n and d.
3. :func:`bound`: Maurer's vector-contraction inequality gives a bound whose margin term is
   sqrt(sum_k w_k a_k / gamma_k^2), w_k = pihat_k c_k^2 (c_k = 1: the risk, equal to the balanced
   error when classes are balanced; c_k = 1/(K pi_k): the balanced error in general).
4. :func:`allocation`: minimise sum_k x_k / gamma_k^p s.t. sum_k gamma_k = K cbar for a generic
   index k (Lagrangian, per-index solve, multiplier factored out through the constraint, Hessian).
5. :func:`special_cases`: MR2 (p = 2, balanced: a_k^(1/3)), LDAM (p = 1, a_k ~ n_k^(-1/2):
   n_k^(-1/4)) and the two prior weightings, all by substitution.
6. :func:`gain`: J(gamma*) / J(uniform) = M_{1/(p+1)}(x) / M_1(x) <= 1 (Jensen).
7. :func:`non_centred`: a_k = ||mu_k||^2 + s_k^2 cannot tell the mean's norm from the variance.

:func:`derivation` assembles all sixteen (steps 13-16, the Gaussian oracle and the temperature
regime, are in ``theory.oracle_derivation``; built once per process) and :func:`numeric` returns NumPy
functions lambdified from the SymPy results, which ``tests/theory`` compares with
``theory.margins``. Never ``solve`` the stationarity system for an explicit K: with K = 4 SymPy did
not finish in 5 minutes. Per generic index it takes well under a second.

References: A. Maurer, "A vector-contraction inequality for Rademacher complexities", ALT 2016
(Corollary 1); M. Mohri, A. Rostamizadeh, A. Talwalkar, "Foundations of Machine Learning", 2nd ed.
2018 (Theorem 3.3); K. Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss", NeurIPS 2019; B. Zhu et al., "Reducing Class-Wise Performance Disparity via Margin
Regularization", ICLR 2026.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import sympy as sp

from theory.oracle_derivation import ORACLE_BUILDERS
from theory.steps import LATEX_NAMES, Check, Derivation, Step
from theory.symbolic import (
    assume_in_range,
    collapse_sums,
    normalise_powers,
    rademacher_expectation,
    sum_linear,
    truth_check,
    zero_check,
)

__all__ = [
    "ASSUMPTIONS",
    "symbols",
    "setting",
    "identity",
    "bound",
    "allocation",
    "special_cases",
    "gain",
    "non_centred",
    "builders",
    "derivation",
    "numeric",
    "NumericRules",
]

# Numeric check of the power-mean inequality inside the gain step (cheap, vectorised).
GAIN_N_INSTANCES = 20_000
GAIN_SEED = 20260212
GAIN_RTOL = 1e-12  # M_q <= M_1 (1 + GAIN_RTOL): float64 rounding only

ASSUMPTIONS = (
    "**A1 (data).** The sample $S = \\{(h_i, y_i)\\}_{i=1}^n$ is drawn i.i.d. from a distribution $D$ on "
    "$\\mathbb{R}^d \\times \\{1, \\dots, K\\}$. The features $h = \\phi(x)$ come from a fixed map that "
    "was not fitted on $S$ (a frozen backbone); a representation learnt on $S$ is not covered.",
    "**A2 (hypotheses).** A linear head $f_W(h) = W h$, $W \\in \\mathbb{R}^{K \\times d}$, "
    "$\\|W\\|_F \\le B$. No bias: a bias is a constant feature 1 appended to $h$, which adds 1 to every "
    "$a_k$.",
    "**A3 (margins).** $\\gamma_k > 0$ are fixed before $S$ is seen. Margins computed from the same "
    "training features (as MR² does) need a union bound over a grid of margin vectors, which adds "
    "$O(\\sqrt{\\log(\\text{grid size}) / n})$.",
    "**A4 (loss).** The ramp loss $\\ell_{\\gamma_y}$ of the multi-class margin "
    "$m_W(h, y) = (Wh)_y - \\max_{j \\ne y} (Wh)_j$, weighted by $c_y > 0$: $c \\equiv 1$ bounds the "
    "risk $P_D(m_W \\le 0)$; $c_y = 1 / (K \\pi_y)$ with the true class priors $\\pi_y$ bounds the "
    "balanced error $\\frac{1}{K}\\sum_k P_D(m_W \\le 0 \\mid y = k)$. Both coincide when classes are "
    "balanced.",
    "**A5 (statistics).** $a_k = \\frac{1}{n_k} \\sum_{i: y_i = k} \\|h_i\\|_2^2 = \\|\\mu_k\\|_2^2 + s_k^2$ "
    "on the sample (L2 norms, uncentred features), $\\hat\\pi_k = n_k / n$, every $n_k \\ge 1$.",
)


# ------------------------------------------------------------------------------------------------
# symbols


def _name(text: str, latex: str, **assumptions: Any) -> sp.Symbol:
    """A symbol printed as ``text`` and rendered in LaTeX as ``latex``."""
    sym = sp.Symbol(text, **assumptions)
    LATEX_NAMES[sym] = latex
    return sym


@functools.cache
def symbols() -> SimpleNamespace:
    """The symbols shared by every step (indices run from 1)."""
    ns = SimpleNamespace()
    ns.K, ns.n, ns.d = sp.symbols("K n d", integer=True, positive=True)
    ns.i, ns.j, ns.k, ns.l, ns.c = sp.symbols("i j k l c", integer=True, positive=True)
    ns.p, ns.lam, ns.cbar, ns.B, ns.delta = sp.symbols("p lambda cbar B delta", positive=True)
    ns.S = _name("S", r"S", positive=True)  # S = sum_j x_j^(1/(p+1))
    ns.T = _name("T", r"T", positive=True)  # T = sum_j x_j
    ns.q = 1 / (ns.p + 1)
    ns.x = sp.IndexedBase("x", positive=True)  # x_k = w_k a_k
    ns.a = sp.IndexedBase("a", positive=True)  # a_k = ||mu_k||^2 + s_k^2
    ns.w = sp.IndexedBase("w", positive=True)  # weights in the objective
    ns.g = sp.IndexedBase("gamma", positive=True)  # margins
    ns.pihat = sp.IndexedBase("pihat", positive=True)  # n_k / n on the sample
    ns.pi = sp.IndexedBase("pi", positive=True)  # true class priors
    ns.cw = sp.IndexedBase("c", positive=True)  # loss weights c_k
    ns.L = sp.IndexedBase("L", positive=True)  # Lipschitz constant of class k's loss
    ns.nk = sp.IndexedBase("n", positive=True)  # n_k, samples of class k
    ns.rho = sp.IndexedBase("rho", positive=True)  # rho[k, i] = ||h_{k,i}||^2
    ns.count = sp.IndexedBase("N", positive=True)  # class sizes in the special cases
    return ns


# ------------------------------------------------------------------------------------------------
# 1. setting


@functools.cache
def setting() -> Step:
    """Step 1: the model, the loss and the per-class statistics; Lipschitz constants checked."""
    s = symbols()
    k, i = s.k, s.i
    m = sp.Symbol("m", real=True)
    gam = sp.Symbol("gamma", positive=True)
    ramp = sp.Piecewise((1, m <= 0), (1 - m / gam, m < gam), (0, True))
    ell = _name("ℓ(m)", r"\ell_{\gamma}(m)")
    margin = _name("m(h, y)", r"m_W(h, y)")
    top = _name("(Wh)ᵧ", r"(Wh)_y")
    rival = _name("max(Wh)ⱼ≠ᵧ", r"\max_{j \neq y} (Wh)_j")
    norm_w = _name("‖W‖", r"\|W\|_F", positive=True)
    statements = (
        sp.Le(norm_w, s.B),
        sp.Eq(margin, top - rival),
        sp.Eq(ell, ramp),
        sp.Eq(s.a[k], sp.Sum(s.rho[k, i], (i, 1, s.nk[k])) / s.nk[k]),
        sp.Eq(s.pihat[k], s.nk[k] / s.n),
    )

    checks = []
    # The ramp is continuous at its two kinks ...
    middle = 1 - m / gam
    checks.append(
        zero_check(
            "the ramp is continuous at m = 0 and m = gamma",
            sp.Abs(middle.subs(m, 0) - 1) + sp.Abs(middle.subs(m, gam) - 0),
            "symbolic",
        )
    )
    # ... and its slope on every piece is at most 1/gamma in absolute value: 1/gamma-Lipschitz.
    slopes = [sp.diff(piece, m) for piece, _ in ramp.args]
    worst = sp.Max(*[sp.Abs(sl) for sl in slopes])
    checks.append(
        zero_check("the ramp's slope is at most 1/gamma on every piece", worst - 1 / gam, "symbolic")
    )
    # It dominates the 0-1 loss: 1 on m <= 0, and 1 - m/gamma = t > 0 on (0, gamma) with m = gamma(1-t).
    t = sp.Symbol("t", positive=True)
    checks.append(
        truth_check(
            "the ramp dominates the 0-1 loss 1{m <= 0} (equal to 1 there, positive on (0, gamma))",
            sp.simplify(middle.subs(m, gam * (1 - t))).is_positive and ramp.subs(m, -t) == 1,
            "symbolic",
        )
    )
    # The margin operator is sqrt(2)-Lipschitz in the logits: |d_y| + |d_j| <= sqrt(2) ||(d_y, d_j)||
    # because 2(u^2 + v^2) - (u + v)^2 = (u - v)^2 >= 0.
    u, v = sp.symbols("u v", nonnegative=True)
    gap = sp.factor(2 * (u**2 + v**2) - (u + v) ** 2)
    checks.append(
        truth_check(
            "the multi-class margin is sqrt(2)-Lipschitz in the logits: 2(u^2+v^2) - (u+v)^2 >= 0",
            gap.is_nonnegative,
            "symbolic",
            f"2(u^2+v^2) - (u+v)^2 = {gap}",
        )
    )
    explanation = (
        "Samples of class $k$ are re-indexed $h_{k,1}, \\dots, h_{k,n_k}$ and "
        "$\\rho_{k,i} = \\|h_{k,i}\\|_2^2$. The ramp loss is 1 for $m \\le 0$, falls linearly to 0 at "
        "$m = \\gamma$, so it dominates the 0-1 loss and is $1/\\gamma$-Lipschitz. The margin "
        "$m_W$ changes by at most "
        "$|\\Delta_y| + \\max_{j \\ne y} |\\Delta_j| \\le \\sqrt{2} \\|\\Delta\\|_2$ "
        "when the logits move by $\\Delta$, so sample $i$'s loss $c_{y_i} \\ell_{\\gamma_{y_i}}(m_W)$ is "
        "$L_{y_i} = \\sqrt{2}\\, c_{y_i} / \\gamma_{y_i}$-Lipschitz in the logit vector."
    )
    return Step(
        "setting",
        "Setting: linear head, class margins, ramp loss",
        (
            "A1: an i.i.d. sample $(h_i, y_i)$, features from a fixed map.",
            "A2: a linear head $W h$ with $\\|W\\|_F \\le B$.",
            "A3: margins $\\gamma_k > 0$ fixed before the sample is seen.",
            "A4: the ramp loss of the multi-class margin, weighted by $c_y > 0$.",
        ),
        statements,
        explanation,
        tuple(checks),
        {"ramp": ramp},
    )


# ------------------------------------------------------------------------------------------------
# 2. identity


IDENTITY_SIZES = ((1, 1), (2, 3), (3, 2), (5, 4))  # (n, d) verified with fully symbolic entries


@functools.cache
def identity() -> Step:
    """Step 2: (1/n) sum_i ||h_i||^2 = ||mu||^2 + s^2, for general n and d (one class, n = n_k)."""
    s = symbols()
    n, d, i, c = s.n, s.d, s.i, s.c
    X = sp.IndexedBase("h", real=True)  # h[i, c]: coordinate c of the class's i-th feature vector
    mu = sp.IndexedBase("mu", real=True)
    s2 = _name("s^2", r"s^{2}", nonnegative=True)
    mean_def = sp.Sum(X[i, c], (i, 1, n)) / n
    # The sums run over i inside c (finite sums commute), so the mean appears as an inner sum.
    second = sp.Sum(sp.Sum(X[i, c] ** 2, (i, 1, n)), (c, 1, d)) / n
    spread = sp.Sum(sp.Sum((X[i, c] - mu[c]) ** 2, (i, 1, n)), (c, 1, d)) / n
    norm_mu = sp.Sum(mu[c] ** 2, (c, 1, d))
    statements = (
        sp.Eq(mu[c], mean_def),
        sp.Eq(s2, spread),
        sp.Eq(second, norm_mu + s2),
    )

    checks = []
    # General n and d: linearity of finite sums, then the definition sum_i h_ic = n mu_c.
    expanded = sum_linear(spread).xreplace({sp.Sum(X[i, c], (i, 1, n)): n * mu[c]})
    residual = sum_linear(second) - (sum_linear(norm_mu) + sum_linear(sp.expand(expanded)))
    checks.append(
        zero_check(
            "(1/n) sum_i ||h_i||^2 - ||mu||^2 - s^2 = 0",
            residual,
            "symbolic, general n and d (linearity of finite sums + definition of the mean)",
        )
    )
    # Fully explicit entries for a few sizes: no sum rules involved at all.
    for nn, dd in IDENTITY_SIZES:
        H = sp.Matrix(nn, dd, lambda r, col: sp.Symbol(f"h_{r}{col}", real=True))
        m_vec = [sum(H[r, col] for r in range(nn)) / nn for col in range(dd)]
        lhs = sum(H[r, col] ** 2 for r in range(nn) for col in range(dd)) / nn
        var = sum((H[r, col] - m_vec[col]) ** 2 for r in range(nn) for col in range(dd)) / nn
        rhs = sum(mc**2 for mc in m_vec) + var
        checks.append(
            zero_check(
                f"identity with explicit entries, n = {nn}, d = {dd}",
                lhs - rhs,
                "symbolic, explicit entries",
                simplify=False,
            )
        )
    explanation = (
        "Per class ($n = n_k$): the mean squared norm of the features splits into the squared norm of "
        "the class mean plus the mean squared deviation from it. So $a_k = \\|\\mu_k\\|^2 + s_k^2$ is "
        "the class's second moment about the origin, not its variance: the proof uses only linearity "
        "of finite sums and $\\sum_i h_{ic} = n \\mu_c$, so it holds for every $n$ and $d$."
    )
    return Step(
        "identity",
        "Identity: second moment = squared mean norm + spread",
        ("$h_1, \\dots, h_n \\in \\mathbb{R}^d$ are the features of one class, $n \\ge 1$.",),
        statements,
        explanation,
        tuple(checks),
        {"identity": statements[-1]},
    )


# ------------------------------------------------------------------------------------------------
# 3. bound


RADEMACHER_SIZE = (3, 2, 2)  # (n, K, d) for the exact enumeration of the sign expectation


@functools.cache
def bound() -> Step:
    """Step 3: the vector-contraction bound and its class-sensitive margin term."""
    s = symbols()
    K, n, k, i, j, B = s.K, s.n, s.k, s.i, s.j, s.B
    Lk = sp.sqrt(2) * s.cw[k] / s.g[k]
    second_moment = _name(
        "E‖M‖²",
        r"\mathbb{E}_{\varepsilon} \Big\| \sum_{i=1}^{n} L_{y_i} \varepsilon_i h_i^{\top} \Big\|_F^2",
    )
    rademacher = _name("R̂(S)", r"\hat{\mathfrak{R}}_S(\mathcal{L}_{\gamma})")
    risk = _name("Σₖ πₖ cₖ errₖ(W)", r"\sum_{k=1}^{K} \pi_k c_k \, \mathrm{err}_k(W)")
    emp = _name("L̂(W)", r"\frac{1}{n}\sum_{i=1}^n c_{y_i} \ell_{\gamma_{y_i}}(m_W(h_i, y_i))")
    cmax = _name("cmax", r"\max_k c_k", positive=True)
    inner = sp.Sum(s.L[k] ** 2 * s.rho[k, i], (i, 1, s.nk[k]))
    by_class = K * sp.Sum(inner, (k, 1, K))
    weighted = sp.Sum(s.pihat[k] * s.cw[k] ** 2 * s.a[k] / s.g[k] ** 2, (k, 1, K))
    term = sp.Sum(s.w[k] * s.a[k] / s.g[k] ** 2, (k, 1, K))
    rad_bound = 2 * B * sp.sqrt(K / n) * sp.sqrt(weighted)
    theorem_rhs = (
        emp + 4 * B * sp.sqrt(K / n) * sp.sqrt(term) + 3 * cmax * sp.sqrt(sp.log(2 / s.delta) / (2 * n))
    )
    statements = (
        sp.Eq(s.L[k], Lk),
        sp.Eq(second_moment, by_class),
        sp.Eq(by_class, 2 * K * n * weighted),
        sp.Le(rademacher, rad_bound),
        sp.Eq(s.w[k], s.pihat[k] * s.cw[k] ** 2),
        sp.Le(risk, theorem_rhs),
    )

    checks = []
    # (a) E (sum_i eps_i z_i)^2 = sum_i z_i^2 for general n: E[eps_i eps_j] = delta_ij.
    z = sp.IndexedBase("z", real=True)
    cross = sp.Sum(sp.Sum(z[i] * z[j] * sp.KroneckerDelta(i, j), (j, 1, n)), (i, 1, n)).doit()
    checks.append(
        zero_check(
            "E(sum_i eps_i z_i)^2 = sum_i z_i^2 (one entry of the matrix)",
            assume_in_range(cross, [i, j]) - sp.Sum(z[i] ** 2, (i, 1, n)),
            "symbolic, general n (E[eps_i eps_j] = delta_ij)",
        )
    )
    # (b) Exact expectation over all 2^(nK) sign patterns:
    #     E||sum_i L_i eps_i h_i^T||_F^2 = K sum_i L_i^2 ||h_i||^2.
    nn, KK, dd = RADEMACHER_SIZE
    eps = sp.Matrix(nn, KK, lambda r, col: sp.Symbol(f"e_{r}{col}"))
    hmat = sp.Matrix(nn, dd, lambda r, col: sp.Symbol(f"h_{r}{col}", real=True))
    lip = [sp.Symbol(f"L_{r}", positive=True) for r in range(nn)]
    M = sum((lip[r] * eps[r, :].T * hmat[r, :] for r in range(nn)), sp.zeros(KK, dd))
    frob2 = sum(e**2 for e in M)
    expect = rademacher_expectation(frob2, list(eps))
    target = KK * sum(lip[r] ** 2 * sum(hmat[r, col] ** 2 for col in range(dd)) for r in range(nn))
    checks.append(
        zero_check(
            "E||sum_i L_i eps_i h_i^T||_F^2 = K sum_i L_i^2 ||h_i||^2 "
            f"(all 2^{nn * KK} sign patterns, n = {nn}, K = {KK}, d = {dd})",
            expect - target,
            "symbolic, exact enumeration",
            simplify=False,
        )
    )
    # (c) sup_{||W||_F <= B} <W, M> = B ||M||_F is attained at W = B M / ||M||_F. With N = ||M||_F > 0
    # (N^2 = sum M^2) both claims are polynomial identities after multiplying by N or N^2.
    Msym = sp.Matrix(2, 3, lambda r, col: sp.Symbol(f"M_{r}{col}", real=True))
    N = sp.Symbol("N", positive=True)
    sq = sum(e**2 for e in Msym)
    Wstar = B * Msym / N
    inner_w = sum(wv * mv for wv, mv in zip(Wstar, Msym, strict=True))
    norm_w2 = sum(wv**2 for wv in Wstar)
    checks.append(
        zero_check(
            "W = B M / ||M||_F has ||W||_F = B and <W, M> = B ||M||_F (Cauchy-Schwarz is attained)",
            (sp.expand(inner_w * N - B * sq)) ** 2 + sp.expand(norm_w2 * N**2 - B**2 * sq) ** 2,
            "symbolic, K = 2, d = 3",
            simplify=False,
        )
    )
    # (d) Jensen: E sqrt(Z) <= sqrt(E Z) because sqrt is concave.
    zz = sp.Symbol("z", positive=True)
    checks.append(
        truth_check(
            "sqrt is concave, so E||M||_F <= sqrt(E||M||_F^2)",
            sp.diff(sp.sqrt(zz), zz, 2).is_negative,
            "symbolic",
        )
    )
    # (e) Grouping by class: K sum_k sum_i L_k^2 rho_ki = 2 K n sum_k pihat_k c_k^2 a_k / gamma_k^2.
    grouped = sum_linear(by_class).xreplace({sp.Sum(s.rho[k, i], (i, 1, s.nk[k])): s.nk[k] * s.a[k]})
    # xreplace, not subs: SymPy's subs leaves terms alone that contain a sum's bound index
    grouped = grouped.xreplace({s.L[k]: Lk}).xreplace({s.nk[k]: n * s.pihat[k]})
    checks.append(
        zero_check(
            "K sum_k sum_{i<=n_k} L_k^2 ||h_ki||^2 = 2 K n sum_k pihat_k c_k^2 a_k / gamma_k^2",
            sum_linear(grouped) - sum_linear(2 * K * n * weighted),
            "symbolic, general K and n_k (linearity + definitions of a_k, pihat_k)",
        )
    )
    # (f) The constants: 2 x (sqrt(2) B / n) sqrt(2 K n W) = 4 B sqrt(K / n) sqrt(W).
    Wsum = sp.Symbol("W", positive=True)
    checks.append(
        zero_check(
            "2 (sqrt(2) B / n) sqrt(K 2 n W) = 4 B sqrt(K/n) sqrt(W)",
            2 * sp.sqrt(2) * B / n * sp.sqrt(K * 2 * n * Wsum) - 4 * B * sp.sqrt(K / n) * sp.sqrt(Wsum),
            "symbolic",
        )
    )
    # (g) c_k = 1/(K pi_k) turns the prior-weighted risk into the balanced error.
    err = sp.IndexedBase("err", nonnegative=True)
    balanced = sp.Sum(s.pi[k] * err[k] / (K * s.pi[k]), (k, 1, K))
    checks.append(
        zero_check(
            "sum_k pi_k c_k err_k with c_k = 1/(K pi_k) equals (1/K) sum_k err_k (the balanced error)",
            sum_linear(balanced) - sum_linear(sp.Sum(err[k], (k, 1, K)) / K),
            "symbolic, general K",
        )
    )
    explanation = (
        "Maurer's vector-contraction inequality (ALT 2016, Cor. 1) with per-sample Lipschitz constants "
        "(apply it to the 1-Lipschitz $\\psi_i(u / L_{y_i})$ and the class $h \\mapsto L_y W h$) gives "
        "$n\\hat{\\mathfrak{R}}_S \\le \\sqrt{2}\\, \\mathbb{E}_\\varepsilon \\sup_W \\sum_{i,k} "
        "\\varepsilon_{ik} L_{y_i} (W h_i)_k = \\sqrt{2} B\\, \\mathbb{E}_\\varepsilon \\|\\sum_i L_{y_i} "
        "\\varepsilon_i h_i^\\top\\|_F$ (Cauchy-Schwarz over the Frobenius ball), then Jensen. "
        "**Where $\\sqrt{K}$ comes from:** each of the $K$ rows of $W$ carries its own independent "
        "Rademacher sign per sample, and every row sees the whole $\\|h_i\\|^2$, so the second moment "
        "is $K$ times $\\sum_i L_{y_i}^2 \\|h_i\\|^2$. **Where $\\hat\\pi_k$ comes from:** grouping the "
        "samples by class turns $\\sum_i \\|h_i\\|^2 / \\gamma_{y_i}^2$ into "
        "$\\sum_k n_k a_k / \\gamma_k^2 = n \\sum_k \\hat\\pi_k a_k / \\gamma_k^2$. The usual "
        "Rademacher bound (Mohri et al. 2018, Thm 3.3; loss range $[0, \\max_k c_k]$) then holds with "
        "probability $\\ge 1 - \\delta$ for every $W$ in the ball, and the 0-1 loss is below the ramp. "
        "The constant is $4 = 2 \\cdot \\sqrt{2} \\cdot \\sqrt{2}$: one $\\sqrt{2}$ is Maurer's, the "
        "other is the margin operator's Lipschitz constant (a constant of $\\sqrt{2}\\,B\\sqrt{K/n}$ "
        "omits the latter and the factor 2 of the Rademacher bound). Constants do not move the optimal "
        "margins; `theory.bound_term` evaluates the term with this constant."
    )
    return Step(
        "bound",
        "Bound: vector contraction gives a class-sensitive margin term",
        (
            "A1-A5; Maurer's vector-contraction inequality and the Rademacher generalisation bound "
            "(cited, not re-proved).",
            "$c_k \\equiv 1$: the risk, equal to the balanced error when $\\pi_k = 1/K$; "
            "$c_k = 1/(K\\pi_k)$: the balanced error, with weights $w_k = \\hat\\pi_k / (K \\pi_k)^2$.",
        ),
        statements,
        explanation,
        tuple(checks),
        {
            "lipschitz": Lk,
            "margin_term": sp.sqrt(term),
            "rademacher_bound": rad_bound,
            "bound_rhs": theorem_rhs,
            "weights": s.pihat[k] * s.cw[k] ** 2,
        },
    )


# ------------------------------------------------------------------------------------------------
# 4. allocation


HESSIAN_K = 3  # an explicit K whose full Hessian is also formed (only differentiation, no solve)


@functools.cache
def allocation() -> Step:
    """Step 4: the optimal margins for a generic index k, with the multiplier factored out."""
    s = symbols()
    K, k, l, j, p, lam, cbar, q, x, g = s.K, s.k, s.l, s.j, s.p, s.lam, s.cbar, s.q, s.x, s.g
    J = sp.Sum(x[j] * g[j] ** (-p), (j, 1, K))
    constraint = sp.Sum(g[j], (j, 1, K)) - K * cbar
    lagrangian = J + lam * constraint
    Jsym = _name("J(γ)", r"J(\gamma)")
    Lsym = _name("ℒ(γ, λ)", r"\mathcal{L}(\gamma, \lambda)")

    # Stationarity in gamma_k for a generic k: SymPy differentiates the sum term by term
    # (KroneckerDelta) and adds a Piecewise for "k in 1..K", which holds for a class index.
    stationarity = assume_in_range(sp.diff(lagrangian, g[k]).doit(), [k])
    t0 = time.perf_counter()
    roots = sp.solve(sp.Eq(stationarity, 0), g[k])  # per index: one equation, one unknown
    solve_s = time.perf_counter() - t0
    per_index = roots[0]
    # Factor the multiplier out: gamma_k = t x_k^q with t = (p / lambda)^q the same for every k.
    t = sp.Symbol("t", positive=True)
    t_of_lam = (p / lam) ** q
    sum_t = sum_linear(sp.Sum(t * x[j] ** q, (j, 1, K)))  # = t * sum_j x_j^q
    # check=False: both solutions are verified below by substitution (stationarity and budget)
    t_star = sp.solve(sp.Eq(sum_t, K * cbar), t, check=False)[0]
    gamma_star = sp.simplify(t_star * x[k] ** q)
    # The multiplier: stationarity is linear in lambda; at gamma* it must not depend on k.
    lam_of_k = sp.solve(sp.Eq(stationarity, 0), lam, check=False)[0]
    lam_star = sp.simplify(normalise_powers(lam_of_k.subs(g[k], gamma_star)))
    hess = assume_in_range(sp.diff(J, g[k], g[l]).doit(), [k, l])
    hess_kk = assume_in_range(sp.diff(J, g[k], 2).doit(), [k])

    checks = [
        Check(
            "stationarity has exactly one root in gamma_k, solved per index (no explicit K)",
            len(roots) == 1,
            "symbolic, sympy.solve on one equation",
            f"{len(roots)} root(s) in {solve_s:.2f} s",
        ),
        zero_check(
            "the per-index root is t x_k^(1/(p+1)) with t = (p/lambda)^(1/(p+1)), the same for all k",
            sp.powsimp(sp.expand_power_base(per_index / x[k] ** q, force=True), force=True) - t_of_lam,
            "symbolic",
        ),
        Check(
            "the multiplier lambda* = p x_k gamma*_k^(-p-1) is the same for every class k",
            not lam_star.has(x[k]),
            "symbolic",
            f"lambda* = {lam_star}",
        ),
        zero_check(
            "(gamma*, lambda*) satisfies stationarity",
            stationarity.subs({g[k]: gamma_star, lam: lam_star}),
            "symbolic, generic k",
        ),
        zero_check(
            "gamma* meets the budget: sum_j gamma*_j = K cbar",
            sum_linear(sp.Sum(gamma_star.subs(k, j), (j, 1, K))) - K * cbar,
            "symbolic, general K",
        ),
        zero_check(
            "the Hessian of J is diagonal: d^2J / dgamma_k dgamma_l = 0 for l != k",
            hess.subs(sp.KroneckerDelta(k, l), 0),
            "symbolic, generic k, l",
        ),
        truth_check(
            "the Hessian's diagonal p (p+1) x_k gamma_k^(-p-2) is positive: J is strictly convex",
            sp.simplify(hess_kk).is_positive,
            "symbolic, generic k (x_k, gamma_k, p > 0)",
        ),
    ]
    gs = sp.symbols(f"g1:{HESSIAN_K + 1}", positive=True)
    xs = sp.symbols(f"x1:{HESSIAN_K + 1}", positive=True)
    H3 = sp.hessian(sum(xv * gv ** (-p) for xv, gv in zip(xs, gs, strict=True)), gs)
    diag_ok = all(H3[r, cc] == 0 for r in range(HESSIAN_K) for cc in range(HESSIAN_K) if r != cc)
    pos_ok = all(H3[r, r].is_positive for r in range(HESSIAN_K))
    checks.append(
        Check(
            f"explicit K = {HESSIAN_K}: the full Hessian is diagonal with positive entries",
            bool(diag_ok and pos_ok),
            "symbolic (differentiation only)",
        )
    )
    gp = sp.Symbol("gamma_k", positive=True)
    edge = sp.limit(sp.Symbol("x_k", positive=True) * gp ** (-p), gp, 0, "+")
    checks.append(
        Check(
            "J -> infinity as any gamma_k -> 0+, so the minimum is interior",
            edge == sp.oo,
            "symbolic",
            f"limit {edge}",
        )
    )
    explanation = (
        "Write $x_k = w_k a_k$. The Lagrangian's derivative in $\\gamma_k$ involves only $\\gamma_k$ and "
        "$\\lambda$, so each index is solved on its own: $\\gamma_k = (p x_k / \\lambda)^{1/(p+1)}$. "
        "The factor $t = (p / \\lambda)^{1/(p+1)}$ is common to all classes; putting "
        "$\\gamma_j = t x_j^{1/(p+1)}$ into the budget $\\sum_j \\gamma_j = K\\bar c$ gives "
        "$t = K \\bar c / \\sum_j x_j^{1/(p+1)}$. The objective's Hessian is diagonal with positive "
        "entries on the positive orthant, so $J$ is strictly convex there; the feasible set "
        "(the budget hyperplane in the open orthant) is convex and $J \\to \\infty$ at its boundary, "
        "so the stationary point is the unique global minimum. The multiplier at the optimum is "
        "$\\lambda^* = p\\,(\\sum_j x_j^{1/(p+1)} / (K\\bar c))^{p+1}$, the same for every class. "
        "Solving the whole system for an explicit $K$ instead is hopeless (with $K = 4$ SymPy did "
        "not finish in 5 minutes; it is not attempted here)."
    )
    statements = (
        sp.Eq(Jsym, J),
        sp.Eq(Lsym, lagrangian),
        sp.Eq(stationarity, 0),
        sp.Eq(g[k], per_index),
        sp.Eq(t, t_star),
        sp.Eq(_name("γₖ*", r"\gamma_k^{*}"), gamma_star),
        sp.Eq(_name("λ*", r"\lambda^{*}"), lam_star),
        sp.Eq(sp.Derivative(J, g[k], g[l]), hess),
    )
    return Step(
        "allocation",
        "Allocation: optimal margins under a fixed budget (generic index k)",
        (
            "$x_k = w_k a_k > 0$, $p > 0$, $\\bar c > 0$; the budget is "
            "$\\frac{1}{K}\\sum_k \\gamma_k = \\bar c$.",
            "For the bound of step 3, $p = 2$ (minimising the square root of $J$ is minimising $J$).",
        ),
        statements,
        explanation,
        tuple(checks),
        {"objective": J, "gamma_star": gamma_star, "lambda_star": lam_star, "hessian": hess},
    )


# ------------------------------------------------------------------------------------------------
# 5. special cases


def _replace_indexed(expr: sp.Expr, base: sp.IndexedBase, fn: Callable[[Any], sp.Expr]) -> sp.Expr:
    """Substitute ``base[idx] -> fn(idx)`` everywhere, inside sums too."""
    return expr.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == base,
        lambda e: fn(e.indices[0]),
    )


def _elasticity(ratio: sp.Expr, var: sp.Expr) -> sp.Expr:
    """d log(ratio) / d log(var): the exponent e in ratio ~ var^e."""
    dummy = sp.Symbol("v_", positive=True)
    expr = sp.expand_log(sp.log(ratio.xreplace({var: dummy})), force=True)
    return sp.simplify(dummy * sp.diff(expr, dummy))


@functools.cache
def special_cases() -> Step:
    """Step 5: MR2 (p = 2, balanced), LDAM (p = 1, a_k ~ n_k^(-1/2)) and prior weightings."""
    s = symbols()
    K, k, l, j, p, cbar, x, a, N = s.K, s.k, s.l, s.j, s.p, s.cbar, s.x, s.a, s.count
    gstar = allocation().results["gamma_star"]
    C = sp.Symbol("C", positive=True)  # a proportionality constant that must drop out

    def case(power: Any, x_of: Callable[[Any], sp.Expr]) -> sp.Expr:
        expr = _replace_indexed(gstar.subs(p, power), x, x_of)
        expr = sp.expand_power_base(expr, force=True)
        return sp.simplify(sum_linear(expr))

    def ratio(expr: sp.Expr) -> sp.Expr:  # gamma_k / gamma_l: the sums cancel
        return sp.simplify(expr / expr.subs(k, l))

    mr2 = case(2, lambda idx: a[idx] / K)
    ldam = case(1, lambda idx: C * N[idx] ** sp.Rational(-1, 2) / K)
    risk = case(2, lambda idx: C * N[idx])  # w_k = pihat_k ~ n_k, equal spreads
    balanced = case(2, lambda idx: C / N[idx])  # w_k = pihat_k / (K pi_k)^2 ~ 1/n_k, equal spreads
    exps = {
        "general": _elasticity(ratio(gstar), x[k]),
        "mr2": _elasticity(ratio(mr2), a[k]),
        "ldam": _elasticity(ratio(ldam), N[k]),
        "risk_imbalanced": _elasticity(ratio(risk), N[k]),
        "balanced_imbalanced": _elasticity(ratio(balanced), N[k]),
    }
    expected_form = K * cbar * a[k] ** sp.Rational(1, 3) / sp.Sum(a[j] ** sp.Rational(1, 3), (j, 1, K))
    checks = [
        zero_check(
            "MR2 (p = 2, w_k = 1/K): gamma_k = K cbar a_k^(1/3) / sum_j a_j^(1/3)",
            mr2 - expected_form,
            "symbolic, substitution into gamma*",
        ),
        Check(
            "MR2 exponent d log(gamma_k/gamma_l) / d log a_k = 1/3",
            exps["mr2"] == sp.Rational(1, 3),
            "symbolic",
            f"derived {exps['mr2']}",
        ),
        Check(
            "LDAM (p = 1, a_k = C n_k^(-1/2)): exponent of n_k is -1/4",
            exps["ldam"] == sp.Rational(-1, 4),
            "symbolic",
            f"derived {exps['ldam']}",
        ),
        Check(
            "C (the unknown scale of a_k) drops out of the LDAM margins",
            not ldam.has(C),
            "symbolic",
        ),
        Check(
            "general exponent of x_k is 1/(p+1)",
            sp.simplify(exps["general"] - s.q) == 0,
            "symbolic",
            f"derived {exps['general']}",
        ),
    ]
    rn = sp.Rational(1, 3)
    checks.append(
        Check(
            "risk bound (w_k = pihat_k), equal spreads: exponent of n_k is +1/3; "
            "balanced-error bound (w_k ~ 1/pi_k): -1/3",
            exps["risk_imbalanced"] == rn and exps["balanced_imbalanced"] == -rn,
            "symbolic",
            f"derived {exps['risk_imbalanced']} and {exps['balanced_imbalanced']}",
        )
    )
    explanation = (
        "Substituting into the closed form of step 4 (never typing the answer): with $p = 2$ and "
        "uniform weights the margins grow as $a_k^{1/3}$, MR²'s rule. With $p = 1$ and a per-class "
        "term proportional to $n_k^{-1/2}$ (LDAM's per-class bound $\\propto 1/(\\gamma_k \\sqrt{n_k})$, "
        "summed rather than square-rooted), the margins go as $n_k^{-1/4}$, LDAM's rule. "
        "**Surprise:** the joint bound of step 3 weights classes by $\\hat\\pi_k$, so under imbalance "
        "the risk bound gives *frequent* classes larger margins ($n_k^{+1/3}$ at equal spread), the "
        "opposite of LDAM; only the balanced-error version ($c_k = 1/(K\\pi_k)$) favours rare classes, "
        "and then as $n_k^{-1/3}$, not $n_k^{-1/4}$. LDAM's $-1/4$ comes from $p = 1$ (a sum of "
        "per-class square-root bounds), not from this bound."
    )
    statements = (
        sp.Eq(sp.Symbol("γₖ(MR²)"), mr2),
        sp.Eq(sp.Symbol("γₖ(LDAM)"), ldam),
        sp.Eq(sp.Symbol("γₖ(risk, imbalanced)"), risk),
        sp.Eq(sp.Symbol("γₖ(balanced error, imbalanced)"), balanced),
    )
    for sym, tex in zip(
        (st.lhs for st in statements),
        (
            r"\gamma_k^{\mathrm{MR^2}}",
            r"\gamma_k^{\mathrm{LDAM}}",
            r"\gamma_k^{\mathrm{risk},\ \mathrm{imbal.}}",
            r"\gamma_k^{\mathrm{bal.\ err.},\ \mathrm{imbal.}}",
        ),
        strict=True,
    ):
        LATEX_NAMES[sym] = tex
    return Step(
        "special_cases",
        "Special cases: MR2's exponent 1/3 and LDAM's n^(-1/4)",
        (
            "MR²: $p = 2$, balanced classes ($w_k = 1/K$).",
            "LDAM: $p = 1$, $w_k = 1/K$, $a_k = C n_k^{-1/2}$ for an unknown $C > 0$.",
            "Imbalanced priors at equal spreads: $w_k = \\hat\\pi_k \\propto n_k$ (risk) or "
            "$w_k \\propto 1/n_k$ (balanced error).",
        ),
        statements,
        explanation,
        tuple(checks),
        {"mr2": mr2, "ldam": ldam, "exponents": exps},
    )


# ------------------------------------------------------------------------------------------------
# 6. gain over uniform margins


def _power_mean_check(rng: np.random.Generator) -> tuple[bool, str]:
    """M_{1/(p+1)}(x) <= M_1(x) on random instances (vectorised per K)."""
    worst = -np.inf
    sizes = (2, 3, 5, 10, 100)
    per = GAIN_N_INSTANCES // len(sizes)
    for K in sizes:
        p = rng.uniform(0.05, 10.0, size=(per, 1))
        x = 10.0 ** rng.uniform(-6.0, 6.0, size=(per, K))
        q = 1.0 / (p + 1.0)
        x = x / x.max(axis=1, keepdims=True)
        mq = np.mean(x**q, axis=1, keepdims=True) ** (1.0 / q)
        worst = max(worst, float(np.max(mq / x.mean(axis=1, keepdims=True))))
    return bool(worst <= 1.0 + GAIN_RTOL), f"max M_q/M_1 = {worst:.15f} over {per * len(sizes):,} instances"


@functools.cache
def gain() -> Step:
    """Step 6: J(gamma*) / J(uniform) = M_{1/(p+1)}(x) / M_1(x) <= 1."""
    s = symbols()
    K, k, j, p, q, cbar, x, S, T = s.K, s.k, s.j, s.p, s.q, s.cbar, s.x, s.S, s.T
    gstar = allocation().results["gamma_star"]
    J = allocation().results["objective"]
    sums = {sp.Sum(x[j] ** q, (j, 1, K)): S, sp.Sum(x[j], (j, 1, K)): T}
    gstar_S = collapse_sums(gstar, sums)
    J_opt = J.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == s.g, lambda e: gstar_S.subs(k, e.indices[0])
    )
    J_opt = collapse_sums(sum_linear(sp.expand_power_base(J_opt, force=True)), sums)
    J_uni = collapse_sums(
        sum_linear(J.replace(lambda e: isinstance(e, sp.Indexed) and e.base == s.g, lambda e: cbar)), sums
    )
    ratio = sp.simplify(J_opt / J_uni)
    Mq = (S / K) ** (1 / q)
    M1 = T / K
    r = sp.Symbol("r", positive=True)
    # Jensen for phi(y) = y^(p+1), convex: (mean y)^(p+1) <= mean y^(p+1), applied to y_k = x_k^q.
    phi2 = sp.diff(r ** (p + 1), r, 2)
    u, v = sp.symbols("u v", positive=True)
    cert1 = sp.factor((u**2 + v**2) / 2 - ((u + v) / 2) ** 2)  # p = 1, x = (u^2, v^2)
    cert2 = sp.factor((u**3 + v**3) / 2 - ((u + v) / 2) ** 3)  # p = 2, x = (u^3, v^3)
    e = sp.Symbol("e", positive=True)
    two = (((1 + e) ** q + (1 - e) ** q) / 2) ** (1 / q)  # M_q(1+e, 1-e) / M_1(1+e, 1-e), M_1 = 1
    # Taylor coefficients by differentiation (faster than sympy.series here, same result)
    series = sum(sp.simplify(sp.diff(two, e, r).subs(e, 0) / sp.factorial(r)) * e**r for r in range(3))
    ok_num, detail_num = _power_mean_check(np.random.default_rng(GAIN_SEED))
    checks = [
        zero_check(
            "J(gamma*) = S^(p+1) / (K cbar)^p with S = sum_j x_j^(1/(p+1))",
            J_opt - S ** (p + 1) / (K * cbar) ** p,
            "symbolic, general K",
        ),
        zero_check("J(cbar, ..., cbar) = T / cbar^p with T = sum_j x_j", J_uni - T / cbar**p, "symbolic"),
        zero_check(
            "J(gamma*) / J(uniform) = M_{1/(p+1)}(x) / M_1(x), independent of cbar",
            ratio - Mq / M1,
            "symbolic, general K",
        ),
        truth_check(
            "phi(y) = y^(p+1) is strictly convex for y > 0 (Jensen gives M_q <= M_1)",
            sp.simplify(phi2).is_positive,
            "symbolic",
            f"phi'' = {sp.factor(phi2)}",
        ),
        zero_check(
            "y_k = x_k^(1/(p+1)) has y_k^(p+1) = x_k",
            sp.powdenest((x[k] ** q) ** (p + 1), force=True) - x[k],
            "symbolic",
        ),
        truth_check(
            "K = 2 certificates: M_1 - M_{1/2} and M_1 - M_{1/3} are >= 0 as factored polynomials",
            bool(cert1.is_nonnegative and cert2.is_nonnegative),
            "symbolic, K = 2, p = 1 and 2",
            f"{cert1} and {cert2}",
        ),
        zero_check(
            "near-equal spreads x = (1 + e, 1 - e): gain = 1 - p e^2 / (2 (p + 1)) + O(e^3)",
            series - (1 - p * e**2 / (2 * (p + 1))),
            "symbolic, series",
        ),
        Check(
            "M_{1/(p+1)}(x) <= M_1(x)",
            ok_num,
            "numeric, random x over 12 decades, p in (0.05, 10)",
            detail_num,
        ),
    ]
    Mq_sym = _name("Mq(x)", r"M_{1/(p+1)}(x)")
    M1_sym = _name("M₁(x)", r"M_{1}(x)")
    statements = (
        sp.Eq(_name("J(γ*)", r"J(\gamma^{*})"), sp.powsimp(J_opt)),
        sp.Eq(_name("J(c̄⋅1)", r"J(\bar{c}\,\mathbf{1})"), J_uni),
        sp.Eq(_name("J(γ*)/J(c̄⋅1)", r"\frac{J(\gamma^{*})}{J(\bar{c}\,\mathbf{1})}"), ratio),
        sp.Eq(ratio, Mq_sym / M1_sym),
        sp.Le(Mq_sym / M1_sym, 1),
    )
    explanation = (
        "With $S = \\sum_j x_j^{1/(p+1)}$ and $T = \\sum_j x_j$, the optimum's objective is "
        "$S^{p+1} / (K\\bar c)^p$ and uniform margins give $T / \\bar c^p$; their ratio is the ratio "
        "of power means $M_{1/(p+1)}(x) / M_1(x)$, $M_r(x) = (\\frac{1}{K}\\sum_k x_k^r)^{1/r}$. Jensen "
        "for the convex $y^{p+1}$ at $y_k = x_k^{1/(p+1)}$ proves it never exceeds 1, with equality "
        "exactly when all $x_k$ are equal. The bound's margin term improves by the $p$-th root of it. "
        "**Surprise:** the gain is second order in the dispersion of the spreads: "
        "$1 - \\frac{p}{2(p+1)} e^2$ for $x = (1 \\pm e)$, i.e. $1 - e^2/3$ for MR² and only "
        "$1 - e^2/6$ on the margin term itself; spreads that differ by $\\pm 20\\%$ improve the bound's "
        "margin term by under 1%."
    )
    return Step(
        "gain",
        "Gain over uniform margins: a ratio of power means, never above 1",
        ("Same budget $\\bar c$ for both margin vectors; $x_k = w_k a_k > 0$.",),
        statements,
        explanation,
        tuple(checks),
        {
            "gain_ratio": ratio,
            "gain_sums": ratio.subs({S: list(sums)[0], T: list(sums)[1]}),
            "series": series,
        },
    )


# ------------------------------------------------------------------------------------------------
# 7. non-centred features


NON_CENTRED_EXAMPLE = {"s2": (1, 4), "mean_norm2": (0, 10)}  # spreads and a common ||mu||^2


@functools.cache
def non_centred() -> Step:
    """Step 7: what a_k = ||mu_k||^2 + s_k^2 does when the features are not centred."""
    s = symbols()
    mk = _name("‖μₖ‖²", r"\|\mu_k\|^{2}", nonnegative=True)
    ml = _name("‖μₗ‖²", r"\|\mu_l\|^{2}", nonnegative=True)
    sk, sl = _name("sₖ²", r"s_k^{2}", positive=True), _name("sₗ²", r"s_l^{2}", positive=True)
    mr2 = special_cases().results["mr2"]
    ratio = sp.simplify(mr2 / mr2.subs(s.k, s.l)).subs({s.a[s.k]: mk + sk, s.a[s.l]: ml + sl})
    d_mean, d_var = sp.diff(ratio, mk), sp.diff(ratio, sk)
    elast = sp.simplify(sk * d_var / ratio)
    lo, hi = NON_CENTRED_EXAMPLE["s2"]
    examples = {m0: ratio.subs({mk: m0, ml: m0, sk: hi, sl: lo}) for m0 in NON_CENTRED_EXAMPLE["mean_norm2"]}
    # A common shift h -> h + c changes a_k by 2 mu_k.c + ||c||^2, which differs between classes.
    dd = 3
    mu = sp.Matrix(sp.symbols(f"mu1:{dd + 1}", real=True))
    cvec = sp.Matrix(sp.symbols(f"c1:{dd + 1}", real=True))
    shifted = (mu + cvec).dot(mu + cvec) - mu.dot(mu)
    checks = [
        zero_check(
            "the MR2 margins respond identically to the mean's norm and to the spread",
            d_mean - d_var,
            "symbolic",
        ),
        zero_check(
            "elasticity of gamma_k/gamma_l in s_k^2 is s_k^2 / (3 (||mu_k||^2 + s_k^2))",
            elast - sk / (3 * (mk + sk)),
            "symbolic",
        ),
        Check(
            "that elasticity is 1/3 for centred features and -> 0 as ||mu_k||^2 grows",
            elast.subs(mk, 0) == sp.Rational(1, 3) and sp.limit(elast, mk, sp.oo) == 0,
            "symbolic",
        ),
        zero_check(
            "a common shift c of all features changes a_k by 2 mu_k.c + ||c||^2",
            shifted - (2 * mu.dot(cvec) + cvec.dot(cvec)),
            f"symbolic, d = {dd}",
            simplify=False,
        ),
    ]
    detail = ", ".join(f"||mu||^2 = {m0}: {sp.nsimplify(v)} = {float(v):.3f}" for m0, v in examples.items())
    checks.append(
        Check(
            f"example: spreads s^2 = {lo} and {hi}; margin ratio shrinks towards 1 with a common mean norm",
            float(examples[NON_CENTRED_EXAMPLE["mean_norm2"][1]]) < float(examples[0]),
            "symbolic, exact values",
            detail,
        )
    )
    explanation = (
        "**Surprise:** $a_k$ is the second moment about the origin, so the rule cannot tell a class "
        "whose features are spread out from one whose mean lies far from the origin; a margin grows "
        "with $\\|\\mu_k\\|^2$ exactly as fast as with $s_k^2$. Non-centred features (post-ReLU "
        "features are non-negative, so their means are far from 0) dilute the spread: the sensitivity "
        "of the margin ratio to $s_k^2$ falls from $1/3$ to $s_k^2 / (3(\\|\\mu_k\\|^2 + s_k^2))$. "
        f"With spreads {lo} and {hi} the MR² margin ratio is {float(examples[0]):.3f} for centred "
        f"features but {float(examples[NON_CENTRED_EXAMPLE['mean_norm2'][1]]):.3f} when both means "
        f"have squared norm {NON_CENTRED_EXAMPLE['mean_norm2'][1]}. The rule is also not "
        "translation invariant: shifting every feature by $c$ (which a head with a bias absorbs) "
        "changes $a_k$ by $2\\mu_k^\\top c + \\|c\\|^2$, class by class. The bound itself is correct "
        "for uncentred features (step 2 is exact); it is the margin rule that then tracks the mean's "
        "norm as much as the variance. A bias term (constant feature 1) adds 1 to every $a_k$ and "
        "pushes the margins towards uniform in the same way."
    )
    statements = (
        sp.Eq(sp.Symbol("γₖ/γₗ"), ratio),
        sp.Eq(sp.Derivative(sp.Symbol("γₖ/γₗ"), mk), d_mean),
        sp.Eq(sp.Derivative(sp.Symbol("γₖ/γₗ"), sk), d_var),
        sp.Eq(sp.Symbol("elasticity"), elast),
    )
    LATEX_NAMES[statements[0].lhs] = r"\gamma_k / \gamma_l"
    LATEX_NAMES[statements[3].lhs] = r"\frac{\partial \log(\gamma_k/\gamma_l)}{\partial \log s_k^2}"
    return Step(
        "non_centred",
        "Non-centred features: the rule tracks the mean's norm as much as the spread",
        ("MR²'s rule ($p = 2$, balanced); $a_k = \\|\\mu_k\\|^2 + s_k^2$ with uncentred features.",),
        statements,
        explanation,
        tuple(checks),
        {"ratio": ratio, "elasticity": elast},
    )


# ------------------------------------------------------------------------------------------------
# assembly


STEP_BUILDERS = (setting, identity, bound, allocation, special_cases, gain, non_centred)


def _theorem() -> str:
    term = sp.latex(bound().results["margin_term"], symbol_names=LATEX_NAMES)
    gstar = sp.latex(allocation().results["gamma_star"], symbol_names=LATEX_NAMES)
    return (
        "**Theorem 1 (class-sensitive margin bound).** Under A1-A5, for every $\\delta \\in (0, 1)$, "
        "with probability at least $1 - \\delta$ over the sample, every $W$ with $\\|W\\|_F \\le B$ "
        "satisfies\n\n$$\n\\sum_{k=1}^K \\pi_k c_k \\, P_D(m_W(h, y) \\le 0 \\mid y = k) \\le "
        "\\frac{1}{n}\\sum_{i=1}^n c_{y_i} \\ell_{\\gamma_{y_i}}(m_W(h_i, y_i)) + "
        f"4 B \\sqrt{{\\frac{{K}}{{n}}}}\\, {term} "
        "+ 3 \\max_k c_k \\sqrt{\\frac{\\log(2/\\delta)}{2n}}\n$$\n\n"
        "with $w_k = \\hat\\pi_k c_k^2$. With $c \\equiv 1$ the left side is the risk, and it is the "
        "balanced error when classes are balanced ($w_k = \\hat\\pi_k = 1/K$); with $c_k = 1/(K\\pi_k)$ "
        "it is the balanced error for any priors.\n\n"
        "**Theorem 2 (optimal margins).** For $x_k = w_k a_k > 0$ and $p > 0$, the unique minimiser of "
        "$J(\\gamma) = \\sum_k x_k / \\gamma_k^p$ subject to "
        "$\\frac{1}{K}\\sum_k \\gamma_k = \\bar c$ is\n\n"
        f"$$\n\\gamma_k^* = {gstar}\n$$\n\n"
        "and $J(\\gamma^*) / J(\\bar c\\,\\mathbf{1}) = M_{1/(p+1)}(x) / M_1(x) \\le 1$, with equality "
        "iff all $x_k$ are equal. The bound's margin term is $J^{1/2}$ ($p = 2$).\n\n"
        "**Corollary.** MR² (balanced, $p = 2$): $\\gamma_k \\propto a_k^{1/3}$. LDAM ($p = 1$, "
        "$x_k \\propto n_k^{-1/2}$): $\\gamma_k \\propto n_k^{-1/4}$."
    )


def builders() -> tuple[Callable[[], Step], ...]:
    """Every step's builder in order: the seven above, ``theory.limits.LIMIT_BUILDERS`` (8-12), then
    ``theory.oracle_derivation.ORACLE_BUILDERS`` (13-16)."""
    from theory.limits import LIMIT_BUILDERS  # imported here: theory.limits imports this module

    return (*STEP_BUILDERS, *LIMIT_BUILDERS, *ORACLE_BUILDERS)


@functools.cache
def derivation() -> Derivation:
    """All sixteen steps, built and checked once per process (seconds after SymPy is imported)."""
    from theory.limits import theorem_addendum

    steps = tuple(build() for build in builders())
    return Derivation(steps, ASSUMPTIONS, _theorem() + "\n\n" + theorem_addendum())


# ------------------------------------------------------------------------------------------------
# numeric versions of the SymPy results


class NumericRules(SimpleNamespace):
    """NumPy functions lambdified from the derivation's SymPy results (reference, not hot path).

    Attributes (all take 1-D float arrays of length K):
        margins(x, cbar, p): gamma* of step 4, x_k = w_k a_k.
        multiplier(x, cbar, p): the Lagrange multiplier lambda* of step 4.
        objective(x, gamma, p): J(gamma) = sum_k x_k / gamma_k^p.
        gain(x, p): J(gamma*) / J(uniform) of step 6.
        margin_term(w, a, gamma): sqrt(sum_k w_k a_k / gamma_k^2) of step 3.
        mr2(a, cbar): MR2's margins of step 5.
        ldam(counts, cbar): the LDAM-case margins of step 5 (mean cbar).
    """


def _lambdify(args: tuple, expr: sp.Expr) -> Callable[..., Any]:
    return sp.lambdify(args, expr, modules="numpy")


def _pad(v: Any) -> np.ndarray:
    """Indices run from 1 in the derivation: prepend a NaN so that v[1..K] are the entries (and any
    accidental use of v[0] shows up as NaN)."""
    v = np.asarray(v, dtype=np.float64)
    return np.concatenate([[np.nan], v])


@functools.cache
def numeric() -> NumericRules:
    """Lambdify the derivation's results into NumPy functions (see :class:`NumericRules`)."""
    s = symbols()
    K, k, p, cbar = s.K, s.k, s.p, s.cbar
    gstar = allocation().results["gamma_star"]
    lstar = allocation().results["lambda_star"]
    J = allocation().results["objective"]
    gain_expr = gain().results["gain_sums"]
    term = bound().results["margin_term"]
    mr2 = special_cases().results["mr2"]
    ldam = special_cases().results["ldam"]
    f_g = _lambdify((s.x, k, K, cbar, p), gstar)
    f_l = _lambdify((s.x, K, cbar, p), lstar)
    f_J = _lambdify((s.x, s.g, K, p), J)
    f_gain = _lambdify((s.x, K, p), gain_expr)
    f_term = _lambdify((s.w, s.a, s.g, K), term)
    f_mr2 = _lambdify((s.a, k, K, cbar), mr2)
    f_ldam = _lambdify((s.count, k, K, cbar), ldam)

    def idx(v: Any) -> np.ndarray:
        return np.arange(1, len(v) + 1)

    return NumericRules(
        margins=lambda x, cbar, p: np.asarray(f_g(_pad(x), idx(x), len(x), cbar, p), dtype=np.float64),
        multiplier=lambda x, cbar, p: float(f_l(_pad(x), len(x), cbar, p)),
        objective=lambda x, gamma, p: float(f_J(_pad(x), _pad(gamma), len(x), p)),
        gain=lambda x, p: float(f_gain(_pad(x), len(x), p)),
        margin_term=lambda w, a, gamma: float(f_term(_pad(w), _pad(a), _pad(gamma), len(a))),
        mr2=lambda a, cbar: np.asarray(f_mr2(_pad(a), idx(a), len(a), cbar), dtype=np.float64),
        ldam=lambda counts, cbar: np.asarray(
            f_ldam(_pad(counts), idx(counts), len(counts), cbar), dtype=np.float64
        ),
    )
