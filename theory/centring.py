"""Step 12 of the derivation: a bias in the head, and the statistic the bound then supports.

W h + b = W (h - c) + (b + W c) for any constant c, so the bound holds on (h - c, 1) with
a_k(c) = ||mu_k - c||^2 + s_k^2 + 1 (the +1 from the constant feature) when the norm constraint is
placed on (W, b + W c); its prior-weighted sum is smallest at the weighted centroid of the class
means. The bound therefore supports the centred statistic ||mu_k - mu_bar||^2 + s_k^2 + 1 (not s_k^2
alone, and not the second moment about the origin a_k of MR2). ``theory.margins.centred_spread`` is
its numeric version without the constant +1.
"""

from __future__ import annotations

import functools

import sympy as sp

from theory.steps import Check, Step
from theory.symbolic import named, sum_linear, symbols, truth_check, zero_check

__all__ = ["bias"]


# ------------------------------------------------------------------------------------------------
# 12. a bias in the head


BIAS_SIZES = {"affine": (2, 3), "identity": (3, 2), "decomposition": (3, 2)}  # (K or n, d)


@functools.cache
def bias() -> Step:
    """Step 12: a bias lets the bound use features centred at any c; the weighted centroid is best."""
    s = symbols()
    K, j = s.K, s.j
    checks = []
    # (1) W h + b = W (h - c) + (b + W c): any fixed centre can be absorbed by the bias.
    KK, dd = BIAS_SIZES["affine"]
    W = sp.Matrix(KK, dd, lambda r, col: sp.Symbol(f"W_{r}{col}", real=True))
    h = sp.Matrix(dd, 1, lambda r, _: sp.Symbol(f"h_{r}", real=True))
    cv = sp.Matrix(dd, 1, lambda r, _: sp.Symbol(f"c_{r}", real=True))
    bv = sp.Matrix(KK, 1, lambda r, _: sp.Symbol(f"b_{r}", real=True))
    checks.append(
        zero_check(
            "W h + b = W (h - c) + (b + W c)",
            sum(abs(e) for e in sp.expand(W * h + bv - (W * (h - cv) + (bv + W * cv)))),
            f"symbolic, K = {KK}, d = {dd}",
            simplify=False,
        )
    )
    # (2) The identity of step 2 for h - c: (1/n) sum ||h_i - c||^2 = ||mu - c||^2 + s^2.
    nn, dd = BIAS_SIZES["identity"]
    H = sp.Matrix(nn, dd, lambda r, col: sp.Symbol(f"h_{r}{col}", real=True))
    cc = [sp.Symbol(f"c_{col}", real=True) for col in range(dd)]
    mean = [sum(H[r, col] for r in range(nn)) / nn for col in range(dd)]
    lhs = sum((H[r, col] - cc[col]) ** 2 for r in range(nn) for col in range(dd)) / nn
    var = sum((H[r, col] - mean[col]) ** 2 for r in range(nn) for col in range(dd)) / nn
    checks.append(
        zero_check(
            "a_k(c) = (1/n_k) sum_i ||h_i - c||^2 = ||mu_k - c||^2 + s_k^2 (the spread s_k^2 does not move)",
            lhs - (sum((mean[col] - cc[col]) ** 2 for col in range(dd)) + var),
            f"symbolic, explicit entries, n = {nn}, d = {dd}",
            simplify=False,
        )
    )
    # (2b) The bias as a constant feature rho: (h - c, rho) has second moment a_k(c) + rho^2, and
    # ||(W, b_c / rho)||_F <= B constrains the re-centred bias b_c = b + W c, not b itself.
    rho = sp.Symbol("rho", positive=True)
    lhs_rho = sum(sum((H[r, col] - cc[col]) ** 2 for col in range(dd)) + rho**2 for r in range(nn)) / nn
    checks.append(
        zero_check(
            "with the bias as a constant feature rho, the second moment of (h - c, rho) is "
            "||mu_k - c||^2 + s_k^2 + rho^2 (+1 for rho = 1, the same for every class)",
            lhs_rho - (sum((mean[col] - cc[col]) ** 2 for col in range(dd)) + var + rho**2),
            f"symbolic, explicit entries, n = {nn}, d = {dd}",
            simplify=False,
        )
    )
    # (3) The weighted sum Q(c) = sum_k v_k a_k(c) per coordinate (it separates), general K.
    v = sp.IndexedBase("v", positive=True)
    mu = sp.IndexedBase("mu", real=True)
    c = sp.Symbol("c", real=True)
    Q = sp.Sum(v[j] * (mu[j] - c) ** 2, (j, 1, K))
    dQ = sum_linear(sp.diff(Q, c))
    c_star = sp.solve(sp.Eq(dQ, 0), c)
    centroid = sp.Sum(v[j] * mu[j], (j, 1, K)) / sp.Sum(v[j], (j, 1, K))
    d2 = sum_linear(sp.diff(Q, c, 2))
    checks += [
        Check(
            "dQ/dc = 0 has one root, c* = sum_k v_k mu_k / sum_k v_k (per coordinate, general K)",
            len(c_star) == 1 and sp.simplify(c_star[0] - centroid) == 0,
            "symbolic, sympy.solve",
            f"c* = {c_star[0] if c_star else None}",
        ),
        truth_check(
            "d^2Q/dc^2 = 2 sum_k v_k > 0: the centroid is the unique minimum",
            d2.is_positive,
            "symbolic, general K",
            f"d^2Q/dc^2 = {d2}",
        ),
    ]
    # (4) Decomposition: sum v ||mu - c||^2 = sum v ||mu - mu_bar||^2 + (sum v) ||c - mu_bar||^2.
    KK, dd = BIAS_SIZES["decomposition"]
    vs = sp.symbols(f"v1:{KK + 1}", positive=True)
    M = sp.Matrix(KK, dd, lambda r, col: sp.Symbol(f"mu_{r}{col}", real=True))
    cvec = [sp.Symbol(f"c_{col}", real=True) for col in range(dd)]
    V = sum(vs)
    bar = [sum(vs[r] * M[r, col] for r in range(KK)) / V for col in range(dd)]
    full = sum(vs[r] * (M[r, col] - cvec[col]) ** 2 for r in range(KK) for col in range(dd))
    split = sum(vs[r] * (M[r, col] - bar[col]) ** 2 for r in range(KK) for col in range(dd)) + V * sum(
        (cvec[col] - bar[col]) ** 2 for col in range(dd)
    )
    checks.append(
        zero_check(
            "sum_k v_k ||mu_k - c||^2 = sum_k v_k ||mu_k - mu_bar||^2 + (sum_k v_k) ||c - mu_bar||^2",
            sp.cancel(sp.together(full - split)),
            f"symbolic, K = {KK}, d = {dd}",
            simplify=False,
        )
    )
    # (5) The minimum keeps the between-class part: for K = 2 it is v1 v2 / (v1 + v2) (mu_1 - mu_2)^2.
    v1, v2 = sp.symbols("v1 v2", positive=True)
    m1, m2 = sp.symbols("m1 m2", real=True)
    mbar = (v1 * m1 + v2 * m2) / (v1 + v2)
    between = sp.factor(v1 * (m1 - mbar) ** 2 + v2 * (m2 - mbar) ** 2)
    checks.append(
        zero_check(
            "K = 2: min_c sum_k v_k a_k(c) - sum_k v_k s_k^2 = v1 v2 (mu_1 - mu_2)^2 / (v1 + v2) > 0 unless "
            "the means coincide: the bound does not support s_k^2 alone",
            sp.cancel(between - v1 * v2 * (m1 - m2) ** 2 / (v1 + v2)),
            "symbolic, one coordinate",
        )
    )
    a_c = named("aₖ(c)", r"a_k(c)")
    cbar_sym = named("μ̄", r"\bar\mu")
    norm_mk = named("‖μₖ − c‖²", r"\|\mu_k - c\|^2", nonnegative=True)
    s2 = named("sₖ²", r"s_k^{2}", nonnegative=True)
    statements = (
        sp.Eq(named("Wh + b", r"W h + b"), named("W(h − c) + (b + Wc)", r"W (h - c) + (b + W c)")),
        sp.Eq(a_c, norm_mk + s2 + 1),
        sp.Eq(sp.Derivative(Q, c), dQ),
        sp.Eq(cbar_sym, centroid),
        sp.Eq(named("min_c", r"\min_c \sum_k v_k a_k(c) - \sum_k v_k s_k^2\ (K = 2)"), between),
    )
    explanation = (
        "A head with a bias computes $Wh + b = W(h - c) + b_c$ with $b_c = b + Wc$, for any fixed $c$. "
        "Redoing steps 2-3 on the features $(h - c, 1)$ (the bias as a constant feature, as in A2) "
        "gives the same bound with $a_k(c) = \\|\\mu_k - c\\|^2 + s_k^2 + 1$: the spread $s_k^2$ is "
        "unchanged, only the mean's term moves, and the constant feature carries a $+1$ ($+\\rho^2$ for "
        "a constant $\\rho$), the same for every class but not negligible in the margins' ratios when "
        "$a_k$ is of order 1. **Where the norm constraint sits decides the statistic:** the bound "
        "constrains $\\|(W, b_c)\\|_F \\le B$ with the re-centred bias $b_c = b + Wc$, so each "
        "centre $c$ is a different hypothesis class; a constraint on $(W, b)$ itself is the case "
        "$c = 0$, with $a_k = \\|\\mu_k\\|^2 + s_k^2 + 1$. The bound's term "
        "$\\sum_k w_k a_k(c)/\\gamma_k^2$ is a weighted sum $\\sum_k v_k a_k(c)$ with "
        "$v_k = w_k/\\gamma_k^2$, smallest at the weighted centroid $\\bar\\mu = \\sum_k v_k\\mu_k / "
        "\\sum_k v_k$; at uniform margins $v \\propto \\pi$ and $\\bar\\mu$ is the prior-weighted mean "
        "of the class means. So the bound supports the centred statistic "
        "$\\|\\mu_k - \\bar\\mu\\|^2 + s_k^2$, which removes a common offset (step 7's non-centred "
        "features) but keeps how far each class mean lies from the others; it does not support "
        "$s_k^2$ alone, which would need a *different* shift per class, i.e. a bias that depends on the "
        "unknown label. The centre must be fixed before the sample (or paid for with a union bound, as "
        "in A3). `theory.centred_spread` computes the statistic."
    )
    return Step(
        "bias",
        "Bias: centre the features at the weighted centroid, not at each class mean",
        (
            "A head $Wh + b$; the bound of step 3 applied to $(h - c, 1)$ for a fixed centre $c$.",
            "$v_k > 0$ (for the bound, $v_k = w_k / \\gamma_k^2$).",
        ),
        statements,
        explanation,
        tuple(checks),
        {"centroid": centroid, "centred_between": between},
    )
