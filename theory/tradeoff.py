"""Margins that minimise the bound with its empirical ramp risk kept, for Gaussian class margins.

The allocation of Theorem 2 minimises only the complexity term C sqrt(sum_k w_k a_k / gamma_k^2)
(C = 4 B sqrt(K/n)); the empirical ramp risk, which grows with every gamma_k, is left out. This
module keeps it. The model (``theory.tradeoff_derivation.tradeoff`` derives everything used here in SymPy):

* a fixed linear head; the multi-class margin of a class-k example is Gaussian, M ~ N(m_k, s_k^2),
  in logit units. This is exact for K = 2 and Gaussian class features (the margin is linear in h);
  :func:`two_gaussians` builds the 1-D two-class instance;
* the empirical ramp risk of class k is replaced by its expectation (large n_k),
  R_k(gamma) = E[ramp_gamma(M)] = (G(gamma) - G(0)) / gamma with G(c) = E(c - M)_+
  = (c - m) Phi((c - m)/s) + s phi((c - m)/s);
* the objective is F(gamma) = sum_k w_k R_k(gamma_k) + C sqrt(sum_k w_k a_k / gamma_k^2), over
  gamma > 0 with no budget: the ramp risk, not a budget, now fixes the scale.

The search uses the derivation's structure, not a generic optimiser. R_k'(gamma) = D_k(gamma) /
gamma^2 with D_k(gamma) = E[M; 0 < M < gamma], so dF/dgamma_k = 0 reads
psi_k(gamma_k) = gamma_k D_k(gamma_k) = tau a_k with tau = C / sqrt(sum_j w_j a_j / gamma_j^2) common
to all classes. psi_k increases strictly from 0 to infinity, so every stationary point lies on the
curve gamma(tau) = (psi_k^{-1}(tau a_k))_k, and along the curve dF/dtau has the sign of
tau - C / sqrt(sum_j w_j a_j / gamma_j(tau)^2). The local minima are the sign changes of that
function from - to +; each is refined by regula falsi (Illinois) and the smallest F wins.

Not searched: optima that give a class up entirely (gamma_k -> infinity: its ramp risk tends to 1
and it leaves the complexity term). ``Tradeoff.trivial`` (= sum_k w_k, every class given up) says
when the bound is vacuous.

NumPy and SciPy only (no torch): this is an analysis tool, not a training rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mr2_core.checks import as_float_array, bad, check_positive

__all__ = ["Tradeoff", "gaussian_ramp_risk", "tradeoff_margins", "two_gaussians"]

# Below gamma / s = SMALL_WINDOW the closed forms of P(0 < M < gamma) and E[M; 0 < M < gamma] lose
# digits to cancellation (both are O(gamma) and O(gamma^2) differences of O(1) numbers); there the
# window is integrated by Gauss-Legendre, which is exact to rounding for so smooth an integrand.
SMALL_WINDOW = 0.05
GL_NODES = 16
NEWTON_STEPS = 200  # safeguarded Newton steps on log gamma (bisection alone would need about 60)
NEWTON_TOL = 1e-14  # on log gamma: relative precision of the margins
GRID = 256  # tau values scanned for sign changes of dF/dtau
ROOT_STEPS = 100  # Illinois steps on log tau inside a grid cell (about 10 are needed)
ROOT_TOL = 1e-15  # on log tau
SPAN = 1e4  # gamma runs up to SPAN x max_k (|m_k| + 10 s_k): far past every class's margin mass


@dataclasses.dataclass(frozen=True)
class Tradeoff:
    """The optimum of F(gamma) = sum_k w_k R_k(gamma_k) + C sqrt(sum_k w_k a_k / gamma_k^2).

    Attributes:
        margins: shape (K,), gamma_k > 0 (logit units).
        ramp_risk: shape (K,), R_k(gamma_k), the expected ramp risk of class k.
        complexity: C sqrt(sum_k w_k a_k / gamma_k^2) at the optimum.
        objective: F at the optimum, sum_k w_k R_k + complexity.
        trivial: sum_k w_k, the limit of F as every margin grows without bound.
        tau: the common value of gamma_k E[M_k; 0 < M_k < gamma_k] / a_k.
    """

    margins: np.ndarray
    ramp_risk: np.ndarray
    complexity: float
    objective: float
    trivial: float
    tau: float

    @property
    def vacuous(self) -> bool:
        """True when the optimum is no better than giving every class up (F >= sum_k w_k)."""
        return bool(self.objective >= self.trivial)


def _ndtr(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


def _pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


def _delta_cdf(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Phi(hi) - Phi(lo) for lo <= hi, taken in the tail where it does not cancel."""
    upper = lo > 0
    return np.where(upper, _ndtr(-lo) - _ndtr(-hi), _ndtr(hi) - _ndtr(lo))


def _window(gamma: np.ndarray, m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(0 < M < gamma), E[M; 0 < M < gamma]) for M ~ N(m, s^2), broadcast over the arguments."""
    gamma, m, s = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (gamma, m, s)))
    shape = gamma.shape
    gamma, m, s = gamma.ravel(), m.ravel(), s.ravel()  # 1-D copies: the small windows are assigned
    a0, b = -m / s, (gamma - m) / s
    P = _delta_cdf(a0, b)
    D = m * P + s * (_pdf(a0) - _pdf(b))
    small = gamma < SMALL_WINDOW * s
    if np.any(small):
        x, wts = np.polynomial.legendre.leggauss(GL_NODES)
        g, mm, ss = gamma[small][:, None], m[small][:, None], s[small][:, None]
        t = 0.5 * g * (x + 1.0)  # nodes on [0, gamma]
        dens = _pdf((t - mm) / ss) / ss
        half = 0.5 * g[:, 0]
        P[small] = half * (dens @ wts)
        D[small] = half * ((t * dens) @ wts)
    return P.reshape(shape), np.maximum(D, 0.0).reshape(shape)


def gaussian_ramp_risk(margins: Any, margin_mean: Any, margin_sd: Any) -> np.ndarray:
    """E[ramp_gamma(M)] for M ~ N(m, s^2): the expected ramp loss at margin gamma.

    ramp_gamma(M) is 1 for M <= 0, 1 - M/gamma on (0, gamma) and 0 beyond (``theory.derivation``
    step 1). Closed form (``theory.tradeoff_derivation.tradeoff``): Phi(-m/s) + P(0 < M < gamma)
    - E[M; 0 < M < gamma] / gamma, equal to (G(gamma) - G(0)) / gamma with
    G(c) = (c - m) Phi((c - m)/s) + s phi((c - m)/s).

    Args:
        margins: gamma > 0, any shape (logit units).
        margin_mean: m, the mean margin of the class (logit units), broadcastable with ``margins``.
        margin_sd: s > 0, its standard deviation, broadcastable.

    Returns:
        the broadcast shape, values in [0, 1].
    """
    g = np.asarray(margins, dtype=np.float64)
    m = np.asarray(margin_mean, dtype=np.float64)
    s = np.asarray(margin_sd, dtype=np.float64)
    for name, v, positive in (("margins", g, True), ("margin_mean", m, False), ("margin_sd", s, True)):
        if not np.all(np.isfinite(v)):
            raise bad(name, v, "finite numbers")
        if positive and np.any(v <= 0):
            raise bad(name, v, "strictly positive numbers")
    P, D = _window(g, m, s)
    return _ndtr(-m / s) + P - D / g


def _vector(name: str, value: Any, K: int, *, positive: bool) -> np.ndarray:
    v = as_float_array(name, value)
    if v.shape != (K,):
        raise bad(name, value, f"one value per class, shape ({K},), got shape {v.shape}")
    if positive and np.any(v <= 0):
        raise bad(name, value, "strictly positive values")
    return v


def _invert_psi(target: np.ndarray, m: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """gamma with psi(gamma) = gamma E[M; 0 < M < gamma] = target, psi strictly increasing.

    Newton's method on log psi against u = log gamma (nearly linear: slope 3 for small gamma, 1 for
    large), d log psi / du = 1 + gamma^2 f(gamma) / D(gamma), kept inside a bracket [lo, hi] that every
    iterate shrinks; a step that leaves the bracket (or meets an underflowed psi) is a bisection.
    """
    shape = np.broadcast_shapes(target.shape, m.shape, s.shape, lo.shape, hi.shape)
    la, lb = np.log(np.broadcast_to(lo, shape)).copy(), np.log(np.broadcast_to(hi, shape)).copy()
    m, s, lt = (np.broadcast_to(v, shape) for v in (m, s, np.log(target)))
    u = 0.5 * (la + lb)
    for _ in range(NEWTON_STEPS):
        g = np.exp(u)
        D = _window(g, m, s)[1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            f = np.log(g * D) - lt
            below = f < 0
            la, lb = np.where(below, u, la), np.where(below, lb, u)
            slope = 1.0 + g * g * (_pdf((g - m) / s) / s) / D
            new = u - f / slope
        wild = ~np.isfinite(new) | (new <= la) | (new >= lb)
        new = np.where(wild, 0.5 * (la + lb), new)
        done = np.all(np.abs(new - u) <= NEWTON_TOL) or np.all(lb - la <= NEWTON_TOL)
        u = new
        if done:
            break
    return np.exp(u)


def tradeoff_margins(
    spread: Any,
    margin_mean: Any,
    margin_sd: Any,
    *,
    complexity: float,
    weights: Any | None = None,
) -> Tradeoff:
    """Minimise the bound with the empirical ramp risk kept: sum_k w_k R_k(gamma_k) + C M(gamma).

    M(gamma) = sqrt(sum_k w_k a_k / gamma_k^2) is Theorem 1's margin term, R_k the expected ramp risk
    of class k under a fixed head whose class-k margins are N(m_k, s_k^2) (:func:`gaussian_ramp_risk`).
    There is no budget: the ramp risk rises with gamma_k and fixes the scale. Compare the result's
    ratios gamma_k / gamma_l with the complexity-only rule (a_k / a_l)^(1/3)
    (:func:`theory.optimal_margins`): for small margins the optimum follows
    (a_k / f_k(0))^(1/3), with f_k(0) the density of class k's margin at the decision boundary.

    Args:
        spread: shape (K,), a_k > 0 (squared feature units, as in the bound).
        margin_mean: shape (K,), m_k, the mean margin of class k under the fixed head (logit units).
        margin_sd: shape (K,), s_k > 0, its standard deviation.
        complexity: C > 0, the constant in front of the margin term: 4 B sqrt(K/n) for Theorem 1.
        weights: shape (K,), w_k > 0 (pi_k for the risk); uniform 1/K when None.

    Returns:
        a :class:`Tradeoff`; check ``.vacuous`` before reading anything into the margins.

    Raises:
        ValueError: bad shapes or values (named); a class whose margins are all negative to
            machine precision (its ramp risk is 1 whatever gamma); no interior minimum in the
            searched range (the bound only falls as the margins grow without limit).
    """
    a = as_float_array("spread", spread, nonnegative=True)
    K = a.size
    if np.any(a <= 0):
        raise bad("spread", spread, "strictly positive spreads a_k (a class with a_k = 0 leaves the term)")
    m = _vector("margin_mean", margin_mean, K, positive=False)
    s = _vector("margin_sd", margin_sd, K, positive=True)
    C = check_positive("complexity", complexity)
    w = np.full(K, 1.0 / K) if weights is None else _vector("weights", weights, K, positive=True)
    trivial = float(w.sum())

    # Below gamma_k = C sqrt(w_k a_k) / sum(w) class k alone puts F above the trivial value sum(w).
    lo = 1e-3 * C * np.sqrt(w * a) / trivial
    hi = np.full(K, SPAN * max(float(np.max(np.abs(m) + 10 * s)), float(lo.max())))
    psi_hi = hi * _window(hi, m, s)[1]
    if np.any(psi_hi <= 0):
        k = int(np.flatnonzero(psi_hi <= 0)[0])
        raise bad("margin_mean", margin_mean, f"class {k} to have some positive margins (its ramp risk is 1)")
    tau_lo = float(np.max(lo * _window(lo, m, s)[1] / a))
    tau_hi = float(np.min(psi_hi / a))
    if not tau_lo < tau_hi:
        raise bad(
            "complexity",
            C,
            "a smaller constant: no margin vector in the searched range beats giving every class up "
            "(or some class has almost no positive margins)",
        )

    def curve(log_tau: np.ndarray) -> np.ndarray:  # (T,) -> (T, K)
        target = np.exp(log_tau)[:, None] * a[None]
        return _invert_psi(target, m[None], s[None], lo[None], hi[None])

    def stationarity(log_tau: np.ndarray, g: np.ndarray) -> np.ndarray:  # sign of dF/dtau on the curve
        return np.exp(log_tau) - C / np.sqrt(np.sum(w * a / g**2, axis=1))

    def objective(g: np.ndarray) -> tuple[np.ndarray, float, float]:
        R = gaussian_ramp_risk(g, m, s)
        comp = float(C * np.sqrt(np.sum(w * a / g**2)))
        return R, comp, float(np.sum(w * R) + comp)

    grid = np.linspace(np.log(tau_lo), np.log(tau_hi), GRID)
    G = curve(grid)
    h = stationarity(grid, G)
    # every bracket where dF/dtau turns from - to + holds one local minimum; refine them together by
    # regula falsi with the Illinois modification (superlinear, and it never leaves the bracket)
    starts = np.flatnonzero((h[:-1] < 0) & (h[1:] >= 0))
    xa, xb, fa, fb = grid[starts], grid[starts + 1], h[starts], h[starts + 1]
    side = np.zeros(starts.size)
    for _ in range(ROOT_STEPS):
        width = xb - xa
        xc = np.where(fb > fa, xb - fb * width / np.where(fb > fa, fb - fa, 1.0), 0.5 * (xa + xb))
        xc = np.clip(xc, xa, xb)
        fc = stationarity(xc, curve(xc))
        neg = fc < 0
        # Illinois: halve the value kept at the end that did not move twice in a row
        fa = np.where(neg, fc, np.where(side < 0, 0.5 * fa, fa))
        fb = np.where(neg, np.where(side > 0, 0.5 * fb, fb), fc)
        xa, xb = np.where(neg, xc, xa), np.where(neg, xb, xc)
        side = np.where(neg, 1.0, -1.0)
        if np.all((xb - xa) <= ROOT_TOL * np.maximum(1.0, np.abs(xa))) or np.all(fc == 0):
            break
    best: Tradeoff | None = None
    for root in np.where(np.abs(fa) < np.abs(fb), xa, xb):
        g = curve(np.array([root]))[0]
        R, comp, F = objective(g)
        if best is None or F < best.objective:
            best = Tradeoff(g, R, comp, F, trivial, float(np.exp(root)))
    if best is None or (h[-1] < 0 and objective(G[-1])[2] < best.objective):
        raise bad(
            "complexity",
            C,
            "a smaller constant: the bound keeps falling as the margins grow, so no finite margins "
            "minimise it",
        )
    return best


def two_gaussians(
    mean: float, sigmas: Any, *, weight_norm: float = 1.0, n: float
) -> dict[str, np.ndarray | float]:
    """The 1-D two-class instance: class 0 ~ N(+mean, sigma_0^2), class 1 ~ N(-mean, sigma_1^2).

    The head W = (B / sqrt 2) (1, -1)^T has ||W||_F = B and puts the boundary at h = 0, so class k's
    margin is sqrt(2) B |h| signed towards its own side: N(sqrt(2) B mean, 2 B^2 sigma_k^2). The
    features are centred at the midpoint of the means, so a_k = mean^2 + sigma_k^2, and Theorem 1's
    constant is C = 4 B sqrt(2 / n).

    Args:
        mean: half the distance between the class means, > 0 (feature units).
        sigmas: shape (2,), sigma_k > 0 (feature units).
        weight_norm: B > 0.
        n: the sample size, > 0.

    Returns:
        keyword arguments for :func:`tradeoff_margins`: ``spread``, ``margin_mean``, ``margin_sd``
        (shape (2,)) and ``complexity``.
    """
    mu = check_positive("mean", mean)
    B = check_positive("weight_norm", weight_norm)
    n = check_positive("n", n)
    sig = _vector("sigmas", sigmas, 2, positive=True)
    beta = np.sqrt(2.0) * B
    return {
        "spread": mu**2 + sig**2,
        "margin_mean": np.full(2, beta * mu),
        "margin_sd": beta * sig,
        "complexity": 4.0 * B * np.sqrt(2.0 / n),
    }
