"""NumPy functions lambdified from the derivation's SymPy results, for ``tests/theory``.

:func:`numeric` covers steps 3-6 (:class:`NumericRules`) and :func:`numeric_limits` steps 8-12
(:class:`NumericLimits`); the tests compare them with the numeric rules of ``theory.margins`` and
``theory.tradeoff``. A reference, not a hot path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import sympy as sp

from theory.allocation_derivation import allocation, special_cases
from theory.bound_derivation import bound
from theory.centring import bias
from theory.gain_derivation import gain
from theory.limits import budget, per_class, worst_class
from theory.symbolic import lambdify_numpy, pad_from_one, replace_indexed, symbols
from theory.tradeoff_derivation import tradeoff

__all__ = ["NumericRules", "numeric", "NumericLimits", "numeric_limits"]


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
    f_g = lambdify_numpy((s.x, k, K, cbar, p), gstar)
    f_l = lambdify_numpy((s.x, K, cbar, p), lstar)
    f_J = lambdify_numpy((s.x, s.g, K, p), J)
    f_gain = lambdify_numpy((s.x, K, p), gain_expr)
    f_term = lambdify_numpy((s.w, s.a, s.g, K), term)
    f_mr2 = lambdify_numpy((s.a, k, K, cbar), mr2)
    f_ldam = lambdify_numpy((s.count, k, K, cbar), ldam)

    def idx(v: Any) -> np.ndarray:
        return np.arange(1, len(v) + 1)

    return NumericRules(
        margins=lambda x, cbar, p: np.asarray(
            f_g(pad_from_one(x), idx(x), len(x), cbar, p), dtype=np.float64
        ),
        multiplier=lambda x, cbar, p: float(f_l(pad_from_one(x), len(x), cbar, p)),
        objective=lambda x, gamma, p: float(f_J(pad_from_one(x), pad_from_one(gamma), len(x), p)),
        gain=lambda x, p: float(f_gain(pad_from_one(x), len(x), p)),
        margin_term=lambda w, a, gamma: float(
            f_term(pad_from_one(w), pad_from_one(a), pad_from_one(gamma), len(a))
        ),
        mr2=lambda a, cbar: np.asarray(f_mr2(pad_from_one(a), idx(a), len(a), cbar), dtype=np.float64),
        ldam=lambda counts, cbar: np.asarray(
            f_ldam(pad_from_one(counts), idx(counts), len(counts), cbar), dtype=np.float64
        ),
    )


class NumericLimits(SimpleNamespace):
    """NumPy functions lambdified from steps 8-12 (reference for the tests, not a hot path).

    Attributes (1-D float arrays of length K unless said otherwise):
        geometric(x, cbar, p): step 9's geometric-budget margins.
        minimax(x, cbar, p): step 9's minimax margins.
        worst(a, n, cbar): step 10's worst-class margins, x = a / n, p = 2.
        per_class(a, n, cbar): step 11's margins, (a / n)^(1/4).
        class_term(a, n, gamma, B): step 10's T_k for every k (shape (K,)).
        joint_term(a, n, gamma, B): Theorem 1's complexity term with w = pihat = n_k / n, c = 1.
        ramp_risk(gamma, m, s), window_mean(gamma, m, s), boundary_density(m, s): step 8 (scalars
            or broadcastable arrays).
        centroid(v, mu): step 12's c* for one coordinate.
    """


@functools.cache
def numeric_limits() -> NumericLimits:
    """Lambdify the results of steps 8-12 (see :class:`NumericLimits`)."""
    s = symbols()
    K, k, p, cbar, B, a, nk, g, x, n = s.K, s.k, s.p, s.cbar, s.B, s.a, s.nk, s.g, s.x, s.n
    step8 = tradeoff().results
    m_, s_, gam = step8["gaussian_symbols"]
    f = {
        "geometric": lambdify_numpy((x, k, K, cbar, p), budget().results["gamma_geometric"]),
        "minimax": lambdify_numpy((x, k, K, cbar, p), budget().results["gamma_minimax"]),
        "worst": lambdify_numpy((a, nk, k, K, cbar), worst_class().results["gamma_worst"]),
        "per_class": lambdify_numpy((a, nk, k, K, cbar), per_class().results["gamma_per_class"]),
        "class_term": lambdify_numpy((a, nk, g, k, K, B), worst_class().results["class_term"]),
        "joint": lambdify_numpy(
            (a, s.pihat, g, K, n, B),
            replace_indexed(worst_class().results["joint_term"], s.w, lambda idx: s.pihat[idx]),
        ),
        "ramp": lambdify_numpy((gam, m_, s_), step8["ramp_risk"]),
        "window": lambdify_numpy((gam, m_, s_), step8["window_mean"]),
        "density": lambdify_numpy((m_, s_), step8["boundary_density"]),
        "centroid": lambdify_numpy(
            (sp.IndexedBase("v", positive=True), sp.IndexedBase("mu", real=True), K),
            bias().results["centroid"],
        ),
    }

    def idx(v: Any) -> np.ndarray:
        return np.arange(1, len(v) + 1)

    def arr(fn: Callable[..., Any]) -> Callable[..., np.ndarray]:
        return lambda *args: np.asarray(fn(*args), dtype=np.float64)

    def pad_n(counts: Any) -> np.ndarray:
        return pad_from_one(counts)

    return NumericLimits(
        geometric=arr(lambda x_, cbar_, p_: f["geometric"](pad_from_one(x_), idx(x_), len(x_), cbar_, p_)),
        minimax=arr(lambda x_, cbar_, p_: f["minimax"](pad_from_one(x_), idx(x_), len(x_), cbar_, p_)),
        worst=arr(lambda a_, n_, cbar_: f["worst"](pad_from_one(a_), pad_n(n_), idx(a_), len(a_), cbar_)),
        per_class=arr(
            lambda a_, n_, cbar_: f["per_class"](pad_from_one(a_), pad_n(n_), idx(a_), len(a_), cbar_)
        ),
        class_term=arr(
            lambda a_, n_, g_, B_: f["class_term"](
                pad_from_one(a_), pad_n(n_), pad_from_one(g_), idx(a_), len(a_), B_
            )
        ),
        joint_term=lambda a_, n_, g_, B_: float(
            f["joint"](
                pad_from_one(a_),
                pad_from_one(np.asarray(n_, float) / np.sum(n_)),
                pad_from_one(g_),
                len(a_),
                float(np.sum(n_)),
                B_,
            )
        ),
        ramp_risk=arr(f["ramp"]),
        window_mean=arr(f["window"]),
        boundary_density=arr(f["density"]),
        centroid=lambda v_, mu_: float(f["centroid"](pad_from_one(v_), pad_from_one(mu_), len(v_))),
    )
