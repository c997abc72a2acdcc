"""The Gaussian oracle: the error-optimal linear boundary for isotropic Gaussian classes (NumPy).

The simulations' population model: class k is N(mu_k, sigma_k^2 I) (per-coordinate SD sigma_k),
equal priors, a linear classifier. The *margin* of class k is the distance from its mean mu_k to the
boundary (a signed distance: negative when the boundary lies beyond the mean). Derived and checked
in SymPy as steps 13-15 of ``mr2 derive`` (``theory.oracle_derivation``); this module holds the
numeric rules that ``sims`` and the tests use. Everything here is the *population* optimum: how far a
finite-sample trained classifier departs from it is measured in ``sims``.

Two classes, means ``delta`` apart (exact). Every unit direction w projects N(mu_k, sigma_k^2 I) to a
normal with SD sigma_k, and the projected separation w.(mu_2 - mu_1) is largest along the mean
difference, so the optimal hyperplane is perpendicular to it and class k's error is Q(m_k / sigma_k)
with m_1 + m_2 = delta (Q the standard normal upper tail).

* ``criterion="worst"`` (the worse of the two class errors): m_k = delta sigma_k / (sigma_1 + sigma_2),
  i.e. margins proportional to sigma_k = (variance)^(1/2), at every delta.
* ``criterion="balanced"`` (the mean of the two class errors): the boundary sits where the two class
  densities cross, phi(m_1/s_1)/s_1 = phi(m_2/s_2)/s_2, the larger root of a quadratic:

      m_1 = s_1 (delta^2 + s_2^2 L) / (delta s_1 + s_2 R)
      m_2 = s_2 (delta^2 - s_1^2 L) / (delta s_2 + s_1 R)
      L = log(s_2^2 / s_1^2),   R = sqrt(delta^2 + (s_2^2 - s_1^2) L)

  (a form free of cancellation; R is real for every delta since (s_2^2 - s_1^2) L >= 0). This interior
  minimum exists for every delta > 0 and is the global one. The wider class (s_2 > s_1) gets the
  larger margin only when delta^2 > 4 v_1 v_2 log(v_2/v_1) / (v_2 - v_1) (v_k = s_k^2; delta > 2 sigma
  at equal variances), and a negative one (the boundary beyond its mean) when
  delta^2 < s_1^2 log(v_2/v_1). Near equal variances the margin's exponent on the variance is
  1/2 - 2 sigma^2 / delta^2, which tends to the worst-class 1/2 as delta grows.

K > 2 classes (an approximation, not exact): each class against its *nearest rival*, the class j
whose pairwise boundary lies closest to mu_k, m_k = min_j m_k(j) with m_k(j) the two-class margin of
class k against class j at distance D_kj. For the worst criterion m_k = min_j D_kj s_k / (s_k + s_j).
It ignores the other rivals (each adds error) and the fact that a K-class linear classifier cannot
place all K(K-1)/2 pairwise boundaries independently; :func:`linear_classifier_errors` measures what
that costs by Monte Carlo (docs/theory.md gives the numbers).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from mr2_core.checks import as_float_array, bad, check_in, check_int, check_positive
from mr2_core.seeding import as_generator

__all__ = [
    "CRITERIA",
    "oracle_share",
    "oracle_log_ratio",
    "pair_margins",
    "oracle_margins",
    "oracle_errors",
    "exponent_near_equal",
    "wider_gets_larger_threshold",
    "means_from_distances",
    "realised_biases",
    "linear_classifier_errors",
    "simplex_class_errors",
    "simplex_optimal_margins",
    "temperature_pressure",
    "temperature_crossover",
]

CRITERIA = ("worst", "balanced")
DISTANCE_RTOL = 1e-9  # a (K, K) distance matrix must be symmetric and Euclidean to this tolerance
SIMPLEX_NODES = 96  # Gauss-Hermite nodes for the exact simplex class errors


def _q(z: np.ndarray) -> np.ndarray:
    """The standard normal upper tail Q(z) = P(N(0, 1) > z)."""
    from scipy.special import ndtr

    return ndtr(-np.asarray(z, dtype=np.float64))


def _float_array(name: str, value: Any, expected: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise bad(name, value, expected) from None


def _positive_array(name: str, value: Any) -> np.ndarray:
    arr = _float_array(name, value, "finite numbers > 0")
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise bad(name, value, "finite numbers > 0")
    return arr


def oracle_share(s_k: Any, s_j: Any) -> np.ndarray:
    """Class k's worst-class share of the distance to class j: s_k / (s_k + s_j).

    Args:
        s_k, s_j: per-coordinate SDs (feature units), broadcastable arrays or scalars, > 0.

    Returns:
        m_k / D_kj for the two-class worst-class oracle (the same formula ``mr2`` applies in torch).
    """
    a = _positive_array("s_k", s_k)
    b = _positive_array("s_j", s_j)
    return a / (a + b)


def _balanced_pair(s1: np.ndarray, s2: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both balanced-error margins of a pair (broadcast), from the cancellation-free root."""
    L = 2.0 * (np.log(s2) - np.log(s1))
    R = np.sqrt(delta**2 + (s2**2 - s1**2) * L)
    m1 = s1 * (delta**2 + s2**2 * L) / (delta * s1 + s2 * R)
    m2 = s2 * (delta**2 - s1**2 * L) / (delta * s2 + s1 * R)
    return m1, m2


def pair_margins(s1: Any, s2: Any, delta: Any, criterion: str = "worst") -> tuple[np.ndarray, np.ndarray]:
    """The two-class oracle margins (m_1, m_2), broadcast over arrays; m_1 + m_2 = delta.

    Args:
        s1, s2: per-coordinate SDs of the two classes (> 0).
        delta: distance between the two means (> 0), same units.
        criterion: "worst" (minimise the larger class error) or "balanced" (their mean).

    Returns:
        (m_1, m_2): signed distances from each mean to the optimal boundary (a balanced-error margin
        can be negative when the classes overlap strongly: the boundary then passes beyond the wider
        class's mean).
    """
    check_in("criterion", criterion, CRITERIA)
    a, b = _positive_array("s1", s1), _positive_array("s2", s2)
    d = _positive_array("delta", delta)
    if criterion == "worst":
        return d * a / (a + b), d * b / (a + b)
    return _balanced_pair(a, b, d)


def oracle_log_ratio(
    variance_ratio: Any, criterion: str = "worst", delta_over_sigma: Any = None
) -> np.ndarray:
    """The oracle's log(m_2 / m_1) for a variance ratio v_2 / v_1 (two classes).

    Args:
        variance_ratio: v_2 / v_1 = (s_2 / s_1)^2, > 0 (array or scalar).
        criterion: "worst": 0.5 log(v_2 / v_1) at every distance; "balanced": depends on the distance.
        delta_over_sigma: the distance between the means in units of class 1's SD (needed, and only
            used, for "balanced").

    Raises:
        ValueError: for "balanced" when m_2 <= 0 (delta^2 <= s_1^2 log(v_2/v_1)), where the log is
            undefined.
    """
    check_in("criterion", criterion, CRITERIA)
    r = _positive_array("variance_ratio", variance_ratio)
    if criterion == "worst":
        return 0.5 * np.log(r)
    if delta_over_sigma is None:
        raise bad("delta_over_sigma", None, "a distance > 0 (in units of s_1) for criterion='balanced'")
    d = _positive_array("delta_over_sigma", delta_over_sigma)
    m1, m2 = _balanced_pair(np.ones_like(r), np.sqrt(r), d)
    if np.any(m1 <= 0) or np.any(m2 <= 0):
        raise bad(
            "delta_over_sigma",
            delta_over_sigma,
            "a distance at which both balanced-error margins are > 0 (delta^2 > s_min^2 log(v_max/v_min))",
        )
    return np.log(m2 / m1)


def exponent_near_equal(delta_over_sigma: Any) -> np.ndarray:
    """The balanced oracle's local exponent d log(m_2/m_1) / d log(v_2/v_1) at equal variances.

    Equal to 1/2 - 2 / (delta/sigma)^2 (step 14): negative below delta = 2 sigma (the wider class gets
    the smaller margin), 0 at 2 sigma, tending to the worst-class exponent 1/2 as delta grows.
    """
    d = _positive_array("delta_over_sigma", delta_over_sigma)
    return 0.5 - 2.0 / d**2


def wider_gets_larger_threshold(s1: Any, s2: Any) -> np.ndarray:
    """The distance above which the balanced oracle gives the wider class the larger margin.

    delta* = 2 sqrt(v_1 v_2 log(v_2/v_1) / (v_2 - v_1)) (2 sigma at equal variances; symmetric in the
    two classes); below it the narrower class gets the larger margin.
    """
    a, b = _positive_array("s1", s1), _positive_array("s2", s2)
    v1, v2 = np.broadcast_arrays(a**2, b**2)
    same = np.isclose(v1, v2, rtol=1e-12, atol=0)
    safe = np.where(same, 1.0, v2 - v1)
    logmean_inv = np.where(same, 1.0 / v1, (np.log(v2) - np.log(v1)) / safe)  # 1 / logarithmic mean
    return 2.0 * np.sqrt(v1 * v2 * logmean_inv)


def _sigmas(sigmas: Any) -> np.ndarray:
    s = as_float_array("sigmas", sigmas)
    if s.size < 2:
        raise bad("sigmas", sigmas, "at least 2 class SDs, shape (K,)")
    if np.any(s <= 0):
        raise bad("sigmas", sigmas, "SDs > 0")
    return s


def _distances(delta: Any, K: int) -> np.ndarray:
    """delta as a (K, K) matrix of distances between means (zero diagonal)."""
    arr = _float_array("delta", delta, f"a scalar > 0 or a ({K}, {K}) matrix of distances")
    if arr.ndim == 0:
        d = check_positive("delta", float(arr))
        D = np.full((K, K), d)
        np.fill_diagonal(D, 0.0)
        return D
    if arr.shape != (K, K):
        raise bad("delta", delta, f"a scalar > 0 or a ({K}, {K}) matrix of distances, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise bad("delta", delta, "finite distances (NaN or inf found)")
    off = ~np.eye(K, dtype=bool)
    if np.any(arr[off] <= 0) or np.any(np.diag(arr) != 0):
        raise bad("delta", delta, "distances > 0 off the diagonal and 0 on it")
    if not np.allclose(arr, arr.T, rtol=DISTANCE_RTOL, atol=0):
        raise bad("delta", delta, "a symmetric matrix")
    return arr


def oracle_margins(sigmas: Any, delta: Any, criterion: str = "worst") -> np.ndarray:
    """The error-optimal margins (distances from each class mean to its boundary), shape (K,).

    Args:
        sigmas: per-coordinate SD of each class, shape (K,), K >= 2, > 0.
        delta: K = 2: the distance between the two means (> 0). K > 2: a scalar (every pair of means
            that far apart, a regular simplex) or a (K, K) symmetric matrix of distances (zero
            diagonal).
        criterion: "worst" (the largest class error) or "balanced" (the mean class error).

    Returns:
        K = 2: the exact population optimum (m_1, m_2), summing to delta. K > 2: the nearest-rival
        approximation m_k = min_j m_k(j) (module docstring), where m_k(j) is the two-class oracle of
        the pair (k, j).
    """
    criterion = check_in("criterion", criterion, CRITERIA)
    s = _sigmas(sigmas)
    K = s.size
    if K == 2 and np.ndim(delta) == 0:
        d = check_positive("delta", delta)
        m1, m2 = pair_margins(s[0], s[1], d, criterion)
        return np.array([float(m1), float(m2)])
    D = _distances(delta, K)
    sk, sj = np.meshgrid(s, s, indexing="ij")
    off = ~np.eye(K, dtype=bool)
    pair = np.full((K, K), np.inf)
    mk, _ = pair_margins(sk[off], sj[off], D[off], criterion)
    pair[off] = mk
    return pair.min(axis=1)


def oracle_errors(sigmas: Any, delta: Any, criterion: str = "worst") -> np.ndarray:
    """Q(m_k / sigma_k) at the oracle margins, shape (K,): exact for K = 2, nearest rival for K > 2."""
    m = oracle_margins(sigmas, delta, criterion)
    return _q(m / _sigmas(sigmas))


# ------------------------------------------------------------------------------------------------
# K > 2: the linear classifier behind the approximation, measured by Monte Carlo


def means_from_distances(D: Any) -> np.ndarray:
    """Class means (K, K-1) with the given pairwise distances (classical MDS, centred at 0).

    Raises ValueError when D is not a Euclidean distance matrix.
    """
    D = np.asarray(D, dtype=np.float64)
    K = D.shape[0]
    J = np.eye(K) - 1.0 / K
    G = -0.5 * J @ (D**2) @ J
    vals, vecs = np.linalg.eigh(G)
    if vals.min() < -DISTANCE_RTOL * max(1.0, vals.max()):
        raise bad("delta", D, "a Euclidean distance matrix (its Gram matrix has a negative eigenvalue)")
    vals = np.clip(vals, 0.0, None)
    order = np.argsort(vals)[::-1][: K - 1]
    return vecs[:, order] * np.sqrt(vals[order])


def realised_biases(means: np.ndarray, margins_to: np.ndarray) -> np.ndarray:
    """Biases b (K,) of f_k(x) = mu_k.x + b_k whose pairwise boundaries best match ``margins_to``.

    f_k - f_j vanishes on the hyperplane perpendicular to mu_k - mu_j at distance
    t_kj = (||mu_k||^2 - mu_k.mu_j + b_k - b_j) / D_kj from mu_k. ``margins_to[k, j]`` is the wanted
    t_kj; the K - 1 free biases are fitted to the K(K-1)/2 conditions by least squares (sum b = 0).
    """
    K = means.shape[0]
    rows, rhs = [], []
    for k in range(K):
        for j in range(k + 1, K):
            Dkj = np.linalg.norm(means[k] - means[j])
            row = np.zeros(K)
            row[k], row[j] = 1.0, -1.0
            rows.append(row)
            rhs.append(margins_to[k, j] * Dkj - means[k] @ means[k] + means[k] @ means[j])
    rows.append(np.ones(K))
    rhs.append(0.0)
    b, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return b


def linear_classifier_errors(
    means: np.ndarray, sigmas: Any, biases: np.ndarray, n_samples: int, rng: int | np.random.Generator
) -> np.ndarray:
    """Monte Carlo per-class error of argmax_k (mu_k.x + b_k), x ~ N(mu_k, sigma_k^2 I), shape (K,).

    Args:
        means: (K, p) class means; sigmas: (K,) SDs; biases: (K,); n_samples: draws per class.
        rng: a seed or a Generator (the same seed gives the same estimate).
    """
    s = _sigmas(sigmas)
    n = check_int("n_samples", n_samples, 1)
    gen = as_generator(rng)
    K, p = means.shape
    out = np.empty(K)
    for k in range(K):
        x = means[k] + s[k] * gen.standard_normal((n, p))
        scores = x @ means.T + biases
        out[k] = np.mean(np.argmax(scores, axis=1) != k)
    return out


@functools.cache
def _hermite_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for E f(Z), Z ~ N(0, 1) (an eigenvalue problem: computed once)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(SIMPLEX_NODES)
    return nodes, weights / np.sqrt(2 * np.pi)


def _simplex_t(d: float, b: np.ndarray) -> np.ndarray:
    """t_kj = d/2 + (b_k - b_j)/d: the distance from mu_k to the k-j boundary on a regular simplex."""
    t = d / 2 + (b[:, None] - b[None, :]) / d
    np.fill_diagonal(t, np.inf)
    return t


def simplex_class_errors(sigmas: Any, delta: float, biases: Any) -> np.ndarray:
    """Exact per-class error of argmax_k (mu_k.x + b_k) on a regular simplex (all means delta apart).

    For x ~ N(mu_k, s_k^2 I) the K - 1 standardised projections u_j = (mu_j - mu_k).z / delta are
    equicorrelated with rho = 1/2, so u_j = sqrt(1/2) (z_0 + w_j) with independent normals and
    err_k = 1 - int phi(z_0) prod_j Phi(sqrt(2) t_kj / s_k - z_0) dz_0 (Gauss-Hermite, 96 nodes).

    Returns:
        shape (K,), the class errors in [0, 1].
    """
    from scipy.special import ndtr

    s = _sigmas(sigmas)
    d = check_positive("delta", delta)
    b = as_float_array("biases", biases)
    if b.shape != s.shape:
        raise bad("biases", biases, f"shape {s.shape} like sigmas")
    nodes, weights = _hermite_nodes()
    t = _simplex_t(d, b)  # diagonal inf: Phi(inf) = 1 leaves the product unchanged
    inside = np.prod(ndtr(np.sqrt(2.0) * (t / s[:, None])[:, :, None] - nodes[None, None, :]), axis=1)
    return 1.0 - inside @ weights


def simplex_optimal_margins(
    sigmas: Any, delta: float, criterion: str = "worst"
) -> tuple[np.ndarray, np.ndarray]:
    """The numeric K-class oracle on a regular simplex, among classifiers argmax_k (mu_k.x + b_k).

    Every pairwise boundary of this family is perpendicular to the mean difference (the two-class
    optimal direction); the K - 1 free biases are optimised on the exact errors of
    :func:`simplex_class_errors` (worst: the class errors equalised by a root finder, which is the
    minimax point because each error falls in its own bias; balanced: BFGS on their mean).

    Returns:
        (margins, errors): margins t_k = min_j t_kj, the distance from mu_k to its nearest boundary,
        and the class errors there, both shape (K,).
    """
    from scipy.optimize import minimize, root

    criterion = check_in("criterion", criterion, CRITERIA)
    s = _sigmas(sigmas)
    d = check_positive("delta", delta)
    K = s.size
    # Start from the nearest-rival approximation's biases (least squares on the pair margins).
    sk, sj = np.meshgrid(s, s, indexing="ij")
    pair, _ = pair_margins(sk + np.eye(K), sj + np.eye(K), np.full((K, K), d), criterion)
    start = d * (pair - d / 2)  # b_k - b_j wanted on the simplex
    b0 = np.mean(start - np.diag(np.diag(start)), axis=1) * K / (K - 1) / 2
    b0 -= b0.mean()

    def full(free: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], free])

    if criterion == "worst":

        def gaps(free: np.ndarray) -> np.ndarray:
            e = simplex_class_errors(s, d, full(free))
            return e[1:] - e[0]

        sol = root(gaps, (b0 - b0[0])[1:], method="hybr", options={"xtol": 1e-12})
        free = sol.x
    else:
        sol = minimize(
            lambda f: float(np.mean(simplex_class_errors(s, d, full(f)))),
            (b0 - b0[0])[1:],
            method="BFGS",
            options={"gtol": 1e-10},
        )
        free = sol.x
    b = full(free)
    return _simplex_t(d, b).min(axis=1), simplex_class_errors(s, d, b)


# ------------------------------------------------------------------------------------------------
# temperature: CE(z / gamma, y) with a logit gap over K - 1 equal rivals


def temperature_pressure(v: Any, K: int) -> np.ndarray:
    """The target-logit gradient of CE(z/gamma, y) times Delta: v (K-1) / (e^v + K - 1), v = Delta/gamma.

    (1 - p_y) / gamma with p_y = 1 / (1 + (K-1) e^{-v}); the full gradient's norm is this times
    sqrt(K / (K-1)), so both fall or rise together. Rising in v exactly while e^v (v - 1) < K - 1.
    """
    K = check_int("K", K, 2)
    v = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise bad("v", v, "finite numbers > 0 (v = logit gap / temperature)")
    return v * (K - 1) / (np.exp(v) + K - 1)


def temperature_crossover(K: int) -> float:
    """v* solving e^v (v - 1) = K - 1: a larger temperature lowers the gradient pressure iff v < v*.

    v = Delta / gamma, Delta the logit gap to K - 1 equal rivals (step 15).
    """
    from scipy.optimize import brentq

    K = check_int("K", K, 2)
    return float(brentq(lambda v: np.exp(v) * (v - 1) - (K - 1), 1.0, 1.0 + np.log(K) + 1.0, xtol=1e-14))
