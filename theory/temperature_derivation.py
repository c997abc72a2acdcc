"""Step 16 of the derivation: CE(z/gamma, y), when a larger gamma lowers the gradient pressure.

MR2's official code divides every logit of a sample by its class's gamma. With the target logit Delta
above K - 1 equal rivals and v = Delta/gamma, a larger gamma lowers the gradient only while
e^v (v - 1) < K - 1 (``theory.oracle.temperature_crossover``).
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from theory.steps import Check, Step
from theory.symbolic import zero_check

__all__ = ["temperature", "TEMPERATURE_K"]

TEMPERATURE_K = {2: 1.28, 10: 2.10, 100: 3.63}  # the crossovers v* quoted in the project's issue
TEMPERATURE_ATOL = 0.005  # two decimals
FD_RTOL = 1e-6  # SymPy derivative against central differences


# ------------------------------------------------------------------------------------------------
# 16. temperature


@functools.cache
def temperature() -> Step:
    """Step 16: CE(z/gamma, y): when a larger gamma lowers the gradient pressure."""
    from theory.oracle import temperature_crossover, temperature_pressure

    gam, Delta, v = sp.symbols("gamma Delta v", positive=True)
    K = sp.Symbol("K", integer=True, positive=True)
    z = sp.symbols("z1:4", real=True)
    # CE(z/gamma, y = 1) with three explicit logits: its gradient is (softmax(z/gamma) - e_y)/gamma.
    ce = -sp.log(sp.exp(z[0] / gam) / sum(sp.exp(zi / gam) for zi in z))
    soft = [sp.exp(zi / gam) / sum(sp.exp(zj / gam) for zj in z) for zi in z]
    grad_res = sum(
        sp.simplify(sp.diff(ce, z[i]) - (soft[i] - (1 if i == 0 else 0)) / gam) ** 2 for i in range(3)
    )
    # K - 1 equal rivals at gap Delta: 1 - p_y = (K-1)/(e^v + K - 1)
    p_y = 1 / (1 + (K - 1) * sp.exp(-Delta / gam))
    pressure = (1 - p_y) / gam
    closed = (K - 1) / (gam * (sp.exp(Delta / gam) + K - 1))
    dg = sp.diff(closed, gam)
    factor = (
        -(K - 1)
        * (sp.exp(Delta / gam) * (1 - Delta / gam) + K - 1)
        / (gam**2 * (sp.exp(Delta / gam) + K - 1) ** 2)
    )
    q = (1 - p_y) / (K - 1)
    norm2 = (1 - p_y) ** 2 + (K - 1) * q**2
    checks = [
        zero_check(
            "dCE(z/gamma, y)/dz = (softmax(z/gamma) - e_y)/gamma", grad_res, "symbolic, K = 3 explicit logits"
        ),
        zero_check(
            "K - 1 equal rivals: (1 - p_y)/gamma = (K-1)/(gamma (e^v + K - 1))", pressure - closed, "symbolic"
        ),
        zero_check(
            "d/dgamma of it = -(K-1)(e^v (1 - v) + K - 1)/(gamma^2 (e^v + K - 1)^2): "
            "negative iff e^v (v-1) < K-1",
            dg - factor,
            "symbolic",
        ),
        zero_check(
            "the full gradient's squared norm is K/(K-1) times (1 - p_y)^2: same monotonicity",
            norm2 - K / (K - 1) * (1 - p_y) ** 2,
            "symbolic",
        ),
    ]
    f = sp.lambdify((gam, Delta, K), closed, modules="numpy")
    fd = sp.lambdify((gam, Delta, K), dg, modules="numpy")
    worst = 0.0
    for g0, D0, K0 in ((0.5, 1.0, 2), (1.0, 3.0, 10), (2.0, 1.0, 100), (0.3, 2.0, 5)):
        h = 1e-6 * g0
        num = (f(g0 + h, D0, K0) - f(g0 - h, D0, K0)) / (2 * h)
        worst = max(worst, abs(num - fd(g0, D0, K0)) / abs(fd(g0, D0, K0)))
    checks.append(
        Check(
            "SymPy d/dgamma against central differences",
            worst < FD_RTOL,
            "numeric, 4 points",
            f"max rel. err {worst:.1e}",
        )
    )
    got = {KK: temperature_crossover(KK) for KK in TEMPERATURE_K}
    nsolved = {KK: float(sp.nsolve(sp.exp(v) * (v - 1) - (KK - 1), v, 2.0)) for KK in TEMPERATURE_K}
    ok = all(
        abs(got[KK] - want) < TEMPERATURE_ATOL and abs(got[KK] - nsolved[KK]) < 1e-10
        for KK, want in TEMPERATURE_K.items()
    )
    checks.append(
        Check(
            "v* = 1.28 / 2.10 / 3.63 at K = 2 / 10 / 100 (theory.temperature_crossover = sympy.nsolve)",
            ok,
            "numeric, Brent and Newton root finding",
            ", ".join(f"K = {KK}: {got[KK]:.4f}" for KK in TEMPERATURE_K),
        )
    )
    pv = temperature_pressure(np.array([0.9, 1.1]) * got[10], 10)
    checks.append(
        Check(
            "the pressure v (K-1)/(e^v + K - 1) peaks at v*",
            bool(pv[0] < temperature_pressure(got[10], 10) > pv[1]),
            "numeric, K = 10",
        )
    )
    vstar = sp.Symbol("v_*", positive=True)
    zz, y, py = sp.Symbol("z"), sp.Symbol("y"), sp.Symbol("p_y")
    statements = (
        sp.Eq(
            sp.Derivative(sp.Function("CE")(zz / gam, y), zz),
            (sp.Function("softmax")(zz / gam) - sp.Symbol("e_y")) / gam,
        ),
        sp.Eq((1 - py) / gam, closed),
        sp.Eq(sp.Derivative((1 - sp.Function("p_y")(gam)) / gam, gam), factor),
        sp.Eq(sp.exp(vstar) * (vstar - 1), K - 1),
    )
    explanation = (
        "MR²'s official code divides every logit by the class's $\\gamma$. With the target logit "
        "$\\Delta$ above $K - 1$ equal rivals and $v = \\Delta/\\gamma$, the gradient's size is "
        "$(K-1)/(\\gamma(e^v + K - 1))$ (times $\\sqrt{K/(K-1)}$ for the whole vector). A larger "
        "$\\gamma$ lowers it only while $e^v(v - 1) < K - 1$, i.e. $v < v^*$ with $v^* = 1.28$, 2.10, 3.63 "
        "at $K = 2$, 10, 100; for well-fitted samples ($v > v^*$) a larger temperature *raises* the "
        "pressure. So a larger $\\gamma_k$ acts as a larger margin only in the second regime."
    )
    return Step(
        "temperature",
        "Temperature: when a larger gamma lowers the cross-entropy's gradient",
        ("Cross-entropy of $z/\\gamma$; the target logit $\\Delta > 0$ above $K - 1$ equal rivals.",),
        statements,
        explanation,
        tuple(checks),
        {"temperature_crossover_condition": sp.exp(v) * (v - 1) - (K - 1)},
    )
