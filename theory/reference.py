"""A numeric reference for the optimal margins: SciPy solves the constrained problem, knowing nothing
of the closed form.

Problem (``theory.derivation.allocation``): minimise J(gamma) = sum_k x_k / gamma_k^p subject to
sum_k gamma_k = K cbar, gamma > 0, with x_k = w_k a_k.

Two solvers, both generic:

* ``method="softmax"`` (any K): the feasible set is exactly {K cbar softmax(u)}, so the constraint
  holds by construction. log J(u) = p logsumexp(u) + logsumexp(log x - p u) + const is convex in u
  (sums of log-sum-exp of affine maps); fixing u_1 = 0 removes its one flat direction. SciPy's
  ``trust-exact`` minimises it with the exact gradient and Hessian; a few Newton steps on the
  gradient (``scipy.linalg.solve``) then polish it, because near the optimum the trust-region test
  is limited by rounding in log J (relative errors up to ~1e-7 without them).
* ``method="slsqp"`` (small K): SciPy's SLSQP on gamma itself with the linear equality constraint
  and positivity bounds. Its accuracy is limited by its stopping rule (~1e-8 relative) and its cost
  grows as K^3, so it is for K up to about 100.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from mr2_core.checks import as_float_array, bad, check_positive

__all__ = ["scipy_optimal_margins"]

SLSQP_MAX_K = 200  # beyond this SLSQP takes minutes on one core
POLISH_STEPS = 3  # Newton steps after trust-exact; quadratic convergence needs no more


def _x(spread: Any, weights: Any | None) -> np.ndarray:
    a = as_float_array("spread", spread, nonnegative=True)
    if np.any(a <= 0):
        raise bad("spread", spread, "strictly positive spreads (the reference works in log space)")
    if weights is None:
        w = np.full(a.shape, 1.0 / a.size)
    else:
        w = as_float_array("weights", weights)
        if w.shape != a.shape or np.any(w <= 0):
            raise bad("weights", weights, f"{a.size} strictly positive weights")
    x = w * a
    return x / x.max()  # the optimum is scale invariant in x; this keeps log J near O(1)


def _softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - u.max())
    return e / e.sum()


def _solve_softmax(x: np.ndarray, power: float) -> np.ndarray:
    from scipy.linalg import solve
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    p, lx, K = power, np.log(x), x.size

    def full(v: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], v])

    def f(v: np.ndarray) -> float:
        u = full(v)
        return float(p * logsumexp(u) + logsumexp(lx - p * u))

    def grad(v: np.ndarray) -> np.ndarray:
        u = full(v)
        return (p * _softmax(u) - p * _softmax(lx - p * u))[1:]

    def hess(v: np.ndarray) -> np.ndarray:
        u = full(v)
        s, r = _softmax(u), _softmax(lx - p * u)
        h = p * (np.diag(s) - np.outer(s, s)) + p * p * (np.diag(r) - np.outer(r, r))
        return h[1:, 1:]

    if K == 1:
        return np.ones(1)
    res = minimize(f, np.zeros(K - 1), jac=grad, hess=hess, method="trust-exact", options={"gtol": 1e-13})
    # Polish: Newton steps on the gradient (the Hessian is positive definite), kept while they help.
    v, gnorm = res.x, np.abs(grad(res.x)).max()
    for _ in range(POLISH_STEPS):
        cand = v - solve(hess(v), grad(v), assume_a="pos")
        cnorm = np.abs(grad(cand)).max()
        if not cnorm < gnorm:
            break
        v, gnorm = cand, cnorm
    return K * _softmax(full(v))


def _solve_slsqp(x: np.ndarray, power: float) -> np.ndarray:
    from scipy.optimize import Bounds, LinearConstraint, minimize

    K, p = x.size, power
    res = minimize(
        lambda g: float(np.sum(x * g**-p)),
        np.ones(K),
        jac=lambda g: -p * x * g ** (-p - 1),
        method="SLSQP",
        constraints=[LinearConstraint(np.ones((1, K)), K, K)],
        bounds=Bounds(np.full(K, 1e-12), np.inf),
        options={"ftol": 1e-16, "maxiter": 2000},
    )
    return res.x


def scipy_optimal_margins(
    spread: Any,
    *,
    mean_margin: float = 1.0,
    weights: Any | None = None,
    power: float = 2.0,
    method: str = "softmax",
) -> np.ndarray:
    """Margins minimising sum_k w_k a_k / gamma_k^p with mean(gamma) = ``mean_margin``, by SciPy.

    Args:
        spread: shape (K,), a_k > 0.
        mean_margin: cbar > 0.
        weights: shape (K,), w_k > 0; uniform when None.
        power: p > 0.
        method: ``"softmax"`` (any K) or ``"slsqp"`` (K <= ``SLSQP_MAX_K``); see the module docstring.

    Returns:
        shape (K,) float64 margins (NumPy).
    """
    cbar = check_positive("mean_margin", mean_margin)
    p = check_positive("power", power)
    x = _x(spread, weights)
    if method not in ("softmax", "slsqp"):
        raise bad("method", method, "'softmax' or 'slsqp'")
    if method == "slsqp" and x.size > SLSQP_MAX_K:
        raise bad("spread", spread, f"at most {SLSQP_MAX_K} classes for method='slsqp' (got {x.size})")
    with _one_blas_thread():
        g = _solve_softmax(x, p) if method == "softmax" else _solve_slsqp(x, p)
    return cbar * g


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread: these matrices are small, and on a shared 2-core machine several
    BLAS threads per process made the K = 1000 solve 20x slower (measured: 28 s vs 1.4 s)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional (ships with scikit-learn); without it BLAS keeps its default
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
