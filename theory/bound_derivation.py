"""Steps 1-3 of the derivation: the setting, the second-moment identity and the bound.

1. :func:`setting`: K classes, features h in R^d, linear head ||W||_F <= B, ramp loss with margin
   gamma_y (1/gamma_y-Lipschitz; the multi-class margin is sqrt(2)-Lipschitz in the logits).
2. :func:`identity`: (1/n) sum_i ||h_i||^2 = ||mu||^2 + s^2, for general n and d.
3. :func:`bound`: Maurer's vector-contraction inequality gives a bound whose margin term is
   sqrt(sum_k w_k a_k / gamma_k^2), w_k = pihat_k c_k^2 (c_k = 1: the risk, equal to the balanced
   error when classes are balanced; c_k = 1/(K pi_k): the balanced error in general).

References: A. Maurer, "A vector-contraction inequality for Rademacher complexities", ALT 2016
(Corollary 1); M. Mohri, A. Rostamizadeh, A. Talwalkar, "Foundations of Machine Learning", 2nd ed.
2018 (Theorem 3.3).
"""

from __future__ import annotations

import functools

import sympy as sp

from theory.steps import Step
from theory.symbolic import (
    assume_in_range,
    named,
    rademacher_expectation,
    sum_linear,
    symbols,
    truth_check,
    zero_check,
)

__all__ = ["setting", "identity", "bound", "IDENTITY_SIZES", "RADEMACHER_SIZE"]


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
    ell = named("ℓ(m)", r"\ell_{\gamma}(m)")
    margin = named("m(h, y)", r"m_W(h, y)")
    top = named("(Wh)ᵧ", r"(Wh)_y")
    rival = named("max(Wh)ⱼ≠ᵧ", r"\max_{j \neq y} (Wh)_j")
    norm_w = named("‖W‖", r"\|W\|_F", positive=True)
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
    s2 = named("s^2", r"s^{2}", nonnegative=True)
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
    second_moment = named(
        "E‖M‖²",
        r"\mathbb{E}_{\varepsilon} \Big\| \sum_{i=1}^{n} L_{y_i} \varepsilon_i h_i^{\top} \Big\|_F^2",
    )
    rademacher = named("R̂(S)", r"\hat{\mathfrak{R}}_S(\mathcal{L}_{\gamma})")
    risk = named("Σₖ πₖ cₖ errₖ(W)", r"\sum_{k=1}^{K} \pi_k c_k \, \mathrm{err}_k(W)")
    emp = named("L̂(W)", r"\frac{1}{n}\sum_{i=1}^n c_{y_i} \ell_{\gamma_{y_i}}(m_W(h_i, y_i))")
    cmax = named("cmax", r"\max_k c_k", positive=True)
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
