"""Per-class test error of linear rules on the Gaussian mixture: exact for K = 2, Monte Carlo else.

A linear rule predicts argmax_j z_j with z = W x + b. Given y = k, x ~ N(mu_k, Sigma_k), so the logits
are exactly Gaussian: z | y=k ~ N(W mu_k + b, W Sigma_k W^T). Hence

* K = 2 (exact): with s = z_0 - z_1 = w.x + beta, w = W_0 - W_1, beta = b_0 - b_1,
  err_0 = Phi(-(w.mu_0 + beta) / sqrt(w^T Sigma_0 w)) and err_1 = Phi((w.mu_1 + beta) / sqrt(w^T Sigma_1 w));
* K > 2 (Monte Carlo): the error P(argmax z != k | y=k) is a Gaussian orthant probability with no
  closed form, so we draw ``mc_per_class`` (>= 1e5) logit vectors per class *in logit space*,
  z = m_k + L_k u with L_k L_k^T = W Sigma_k W^T and u ~ N(0, I_K). This is the same distribution as
  pushing input-space test points through the rule, at cost K instead of d per point, and the same
  u serve every model of a setting (common random numbers: differences between margin allocations
  carry much less noise than the errors themselves). ``mc_errors_input_space`` is the brute-force
  check used by the tests.

Criteria (docs/method.md, Simulations): balanced error = mean_k err_k, worst-class error = max_k err_k.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ndtr

from mr2_core.checks import bad
from mr2_core.seeding import as_generator
from sims.config import MixtureConfig
from sims.data import sample

__all__ = [
    "CRITERIA",
    "criterion",
    "logit_moments",
    "exact_two_class_errors",
    "mc_errors",
    "mc_errors_input_space",
    "class_errors",
    "train_errors",
    "ramp_risk",
    "logit_margins",
]

CRITERIA = ("balanced", "worst_class")
MC_CHUNK_ELEMENTS = 20_000_000  # float32 logits held at once by the Monte Carlo (about 80 MB)


def criterion(errors: np.ndarray, name: str) -> np.ndarray:
    """Balanced (mean over classes) or worst-class (max) error; ``errors`` shape (..., K)."""
    if name == "balanced":
        return errors.mean(axis=-1)
    if name == "worst_class":
        return errors.max(axis=-1)
    raise bad("criterion", name, f"one of {CRITERIA}")


def logit_moments(W: np.ndarray, b: np.ndarray, mixture: MixtureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the logits given each class.

    Args:
        W: (..., K, d); b: (..., K).

    Returns:
        m: (..., K_true, K) with m[..., k, :] = W mu_k + b;
        C: (..., K_true, K, K) with C[..., k] = W Sigma_k W^T (Sigma_k diagonal).
    """
    mu = mixture.mean_vectors()  # (K, d)
    cov = mixture.cov_diagonals()  # (K, d)
    m = np.einsum("...jd,kd->...kj", W, mu) + b[..., None, :]
    C = np.einsum("...id,kd,...jd->...kij", W, cov, W)
    return m, C


def exact_two_class_errors(W: np.ndarray, b: np.ndarray, mixture: MixtureConfig) -> np.ndarray:
    """Exact per-class error of K = 2 linear rules, shape (..., 2) (fractions).

    Ties (s = 0, probability zero unless w = 0) go to class 0, as ``argmax`` does.
    """
    if mixture.K != 2 or W.shape[-2] != 2:
        raise bad("mixture.K", mixture.K, "2 classes for the exact formula")
    m, C = logit_moments(W, b, mixture)
    s_mean = m[..., 0] - m[..., 1]  # (..., 2): mean of z_0 - z_1 given class k
    s_var = C[..., 0, 0] + C[..., 1, 1] - 2 * C[..., 0, 1]
    s_sd = np.sqrt(np.maximum(s_var, 0.0))
    sign = np.array([-1.0, 1.0])  # class 0 errs when s <= 0, class 1 when s > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        err = ndtr(sign * s_mean / s_sd)
    degenerate = s_sd == 0  # w = 0: the rule is a constant
    const = np.where(np.arange(2) == 0, s_mean <= 0, s_mean > 0).astype(np.float64)
    return np.where(degenerate, const, err)


def mc_errors(
    W: np.ndarray,
    b: np.ndarray,
    mixture: MixtureConfig,
    n_per_class: int,
    rng: int | np.random.Generator,
) -> np.ndarray:
    """Monte Carlo per-class error in logit space, shape (..., K) (fractions).

    The same ``n_per_class`` standard-normal vectors per class are used for every model.
    """
    gen = as_generator(rng)
    K = mixture.K
    m, C = logit_moments(W, b, mixture)
    lead = m.shape[:-2]
    m = m.reshape(-1, K, K)
    C = C.reshape(-1, K, K, K)
    # L with L L^T = C from the symmetric eigendecomposition: exact for rank-deficient C (d < K)
    evals, evecs = np.linalg.eigh(C)
    L = evecs * np.sqrt(np.clip(evals, 0.0, None))[..., None, :]
    # u laid out (class, logit axis, point): the points are the contiguous axis, so the max over
    # the K logits reduces whole slabs (a tiny last axis makes argmax slow on CPU)
    U = torch.from_numpy(gen.standard_normal((K, K, n_per_class)).astype(np.float32))
    # Differences to the true logit, D_j = z_j - z_k for j != k: class k errs when max_j D_j >= 0.
    others = np.array([[j for j in range(K) if j != k] for k in range(K)])  # (K, K-1)
    k_col = np.arange(K)[:, None]
    dm = m[:, k_col, others] - m[:, k_col, k_col]  # (M, K, K-1)
    dL = L[:, k_col, others, :] - L[:, k_col, k_col, :]  # (M, K, K-1, K)
    dmt = torch.from_numpy(dm.astype(np.float32))
    dLt = torch.from_numpy(dL.astype(np.float32))
    M = dmt.shape[0]
    out = torch.empty(M, K, dtype=torch.float64)
    step = max(1, MC_CHUNK_ELEMENTS // (K * n_per_class * (K - 1)))
    for lo in range(0, M, step):
        sl = slice(lo, min(M, lo + step))
        D = torch.matmul(dLt[sl], U)  # (models, class, K-1, point)
        wrong = (D + dmt[sl][..., None]).amax(2) >= 0
        out[sl] = wrong.float().mean(-1).double()
    return out.numpy().reshape(*lead, K)


def mc_errors_input_space(
    W: np.ndarray, b: np.ndarray, mixture: MixtureConfig, n_per_class: int, rng: int | np.random.Generator
) -> np.ndarray:
    """Brute-force Monte Carlo in input space (for tests), shape (..., K); W (..., K, d), b (..., K)."""
    X, y = sample(mixture, rng, (n_per_class,) * mixture.K)
    z = np.einsum("nd,...kd->...nk", X, W) + b[..., None, :]
    wrong = z.argmax(-1) != y
    return wrong.reshape(*wrong.shape[:-1], mixture.K, n_per_class).mean(-1)


def class_errors(
    W: np.ndarray,
    b: np.ndarray,
    mixture: MixtureConfig,
    *,
    exact_two_class: bool,
    mc_per_class: int,
    rng: int | np.random.Generator,
) -> np.ndarray:
    """Per-class test error, shape (..., K): exact when K = 2 and allowed, Monte Carlo otherwise."""
    if mixture.K == 2 and exact_two_class:
        return exact_two_class_errors(W, b, mixture)
    return mc_errors(W, b, mixture, mc_per_class, rng)


def logit_margins(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rho_i = z_{y_i} - max_{j != y_i} z_j on training points, shape (S, ..., N).

    Args:
        W: (S, ..., K, d); b: (S, ..., K); X: (S, N, d); y: (N,).
    """
    S = X.shape[0]
    lead = W.shape[1:-2]
    Wf = W.reshape(S, -1, *W.shape[-2:])
    bf = b.reshape(S, -1, b.shape[-1])
    z = np.einsum("snd,sakd->sank", X, Wf) + bf[:, :, None, :]
    zy = np.take_along_axis(z, np.broadcast_to(y[None, None, :, None], (*z.shape[:-1], 1)), -1)[..., 0]
    z_other = np.where(np.arange(z.shape[-1]) == y[:, None], -np.inf, z)
    return (zy - z_other.max(-1)).reshape(S, *lead, -1)


def _per_class_mean(values: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    """Mean of values (..., N) over the points of each class, shape (..., K)."""
    onehot = np.eye(K)[y]  # (N, K)
    return values @ onehot / onehot.sum(0)


def train_errors(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-class 0-1 training error, shape (S, ..., K) (a tie counts as an error)."""
    rho = logit_margins(W, b, X, y)
    return _per_class_mean((rho <= 0).astype(np.float64), y, W.shape[-2])


def ramp_risk(W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Per-class empirical ramp risk at margins gamma, shape (S, ..., K).

    The ramp loss of the bound: 1 if rho <= 0, 1 - rho / gamma_y on (0, gamma_y), 0 beyond; it is
    1/gamma_y-Lipschitz in rho and upper-bounds the 0-1 loss. ``margins``: (..., K) or (K,), > 0.
    """
    rho = logit_margins(W, b, X, y)  # (S, ..., N)
    g = np.asarray(margins, dtype=np.float64)[..., y]  # (..., N)
    ramp = np.clip(1.0 - rho / g, 0.0, 1.0)
    return _per_class_mean(ramp, y, W.shape[-2])
