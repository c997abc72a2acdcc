"""Batched Newton training of many linear margin classifiers at once.

A model is a linear softmax classifier z = W x + b (W: (K, d), b: (K,)) trained on one of S training
sets with one of A margin allocations gamma (K,). All S x A models are solved in one tensor program:
the gradients and Hessians of every model are formed with batched matrix products and the Newton
systems, shape (S*A, D, D) with D = K (d + 1), are solved by one ``torch.linalg.solve``.

Objective (:class:`sims.config.LearnerConfig`), convex in (W, b) for fixed margins::

    F(W, b) = (1/N) sum_i CE(u_i, y_i) + (l2 / 2) ||W||_F^2
    additive:     u_i = z_i - gamma_{y_i} e_{y_i}    (LDAM, Cao et al. 2019, with s = 1)
    temperature:  u_i = z_i / gamma_{y_i}            (MR2 official code: cross_entropy(logits / gamma[y]))

Both are compositions of the convex CE(., y) with a map affine in (W, b), hence convex; the L2 term
makes them strictly convex in W. The softmax is unchanged when every bias moves by the same amount,
so the bias has one flat direction (the "gauge" 1_K). Its gradient component is exactly zero, and we
solve (H + v v^T) step = -g with v = 1_K / sqrt(K) on the bias block: this is the minimum-norm
Newton step, so the bias keeps sum_k b_k = 0 from the zero start.

Each model stops when max |grad F| < ``tol``; the step length comes from a batched Armijo
backtracking search (halving), so every model takes its own step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mr2_core.checks import bad
from sims.config import LearnerConfig

__all__ = ["FitResult", "fit", "objective", "per_sample_loss", "ARMIJO_C", "MAX_HALVINGS"]

ARMIJO_C = 1e-4  # sufficient-decrease constant of the line search
MAX_HALVINGS = 30  # a step of 2^-30 is a failed line search: the model keeps its parameters
ROUNDING_SLACK = 100  # slack of the sufficient-decrease test, in units of the dtype's epsilon x |F|
COARSE_TOL = 1e-4  # max |grad F| at which the float32 phase hands over to float64
# Seeds are processed in chunks whose largest intermediate has at most this many entries (8 MB in
# float64), so that a Newton iteration's per-sample tensors stay in cache. Measured with 1 thread on
# the 2-core AMD EPYC VM (1,000 models, 25 seeds x 40 allocations): dropping this from 25M to 1M took
# K=5 d=4 n=100 from 0.44-0.54 s to 0.25-0.34 s and K=5 d=20 n=100 from 1.48 s to 0.99 s; smaller
# settings (K=2, n=10) are unchanged, since one seed is the smallest chunk.
CHUNK_ELEMENTS = 1_000_000
HESSIAN_DTYPE = torch.float32  # precision of the Hessian products (see _newton)


@dataclass
class FitResult:
    """Trained parameters and solver diagnostics of S x A models.

    Attributes:
        W: shape (S, A, K, d), float64.
        b: shape (S, A, K), float64, each row summing to 0 (gauge).
        objective: shape (S, A), F at the solution.
        grad_norm: shape (S, A), max |grad F| at the solution.
        n_iter: shape (S, A), Newton iterations taken.
        converged: shape (S, A), grad_norm < tol.
    """

    W: np.ndarray
    b: np.ndarray
    objective: np.ndarray
    grad_norm: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray


def per_sample_loss(z: torch.Tensor, y: torch.Tensor, margins: torch.Tensor, loss: str) -> torch.Tensor:
    """CE of the margin-adjusted logits, shape z.shape[:-1].

    Args:
        z: logits, shape (..., N, A, K).
        y: labels, shape (N,), int64.
        margins: gamma, broadcastable to (..., A, K), > 0.
        loss: "additive" or "temperature".
    """
    g_y = _gather_margin(margins, y, z.shape)
    u = _adjust(z, y, g_y, loss)
    return torch.logsumexp(u, dim=-1) - _take(u, y)


def _gather_margin(margins: torch.Tensor, y: torch.Tensor, zshape: torch.Size) -> torch.Tensor:
    """gamma_{y_i} for every (sample, model), shape (..., N, A, 1)."""
    m = margins.expand(*zshape[:-3], *margins.shape[-2:])  # (..., A, K)
    return m[..., y].movedim(-1, -2).unsqueeze(-1)  # (..., A, N) -> (..., N, A, 1)


def _take(u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """u[..., i, a, y_i], shape (..., N, A)."""
    idx = y.view(*([1] * (u.dim() - 3)), -1, 1, 1).expand(*u.shape[:-1], 1)
    return torch.gather(u, -1, idx).squeeze(-1)


def _onehot(y: torch.Tensor, K: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, K).to(dtype)  # (N, K)


def _adjust(z: torch.Tensor, y: torch.Tensor, g_y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "additive":
        return z - g_y * _onehot(y, z.shape[-1], z.dtype)[:, None, :]
    return z / g_y


def objective(
    W: torch.Tensor,
    b: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    margins: torch.Tensor,
    cfg: LearnerConfig,
) -> torch.Tensor:
    """F(W, b) for every model, shape (S, A).

    Args:
        W: (S, A, K, d); b: (S, A, K); X: (S, N, d); y: (N,); margins: (S, A, K) or (A, K).
    """
    z = torch.einsum("snd,sakd->snak", X, W) + b[:, None]
    ce = per_sample_loss(z, y, margins, cfg.loss).mean(dim=1)
    return ce + 0.5 * cfg.l2 * (W**2).sum(dim=(-1, -2))


def fit(
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    margins: np.ndarray | torch.Tensor,
    cfg: LearnerConfig,
    *,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitResult:
    """Train S x A models by batched Newton's method to max |grad F| < ``cfg.tol``.

    Args:
        X: training inputs, shape (S, N, d) (S training sets; feature units).
        y: labels, shape (N,), int64 in [0, K), shared by the S sets; every class present.
        margins: gamma, shape (A, K) (the same allocations for every set) or (S, A, K); > 0 for the
            temperature form, >= 0 for the additive form (all zeros: plain cross-entropy).
        cfg: loss form, L2 strength and tolerance.
        init: optional warm start (W (S, A, K, d), b (S, A, K)); zeros otherwise.

    Returns:
        :class:`FitResult` with arrays of leading shape (S, A).
    """
    Xt = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, dtype=torch.float64)
    yt = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, dtype=torch.int64)
    g = torch.as_tensor(np.asarray(margins) if not torch.is_tensor(margins) else margins, dtype=torch.float64)
    if Xt.dim() != 3:
        raise bad("X", tuple(Xt.shape), "shape (S, N, d): a batch of training sets")
    S, N, d = Xt.shape
    if yt.shape != (N,):
        raise bad("y", tuple(yt.shape), f"shape ({N},), one label per training point")
    if g.dim() == 2:
        g = g.expand(S, *g.shape)
    if g.dim() != 3 or g.shape[0] != S:
        raise bad("margins", tuple(g.shape), f"shape (A, K) or ({S}, A, K)")
    A, K = g.shape[1], g.shape[2]
    if yt.min() < 0 or yt.max() >= K or torch.unique(yt).numel() != K:
        raise bad("y", yt.unique().tolist(), f"labels covering every class 0..{K - 1}")
    low_ok = (g >= 0) if cfg.loss == "additive" else (g > 0)
    if not torch.all(torch.isfinite(g)) or not torch.all(low_ok):
        need = ">= 0 (additive form; 0 is plain CE)" if cfg.loss == "additive" else "> 0 (temperatures)"
        raise bad("margins", g, f"finite margins {need}")
    p = d + 1
    Xa = torch.cat([Xt, torch.ones(S, N, 1, dtype=torch.float64)], dim=-1)  # (S, N, p)
    theta = torch.zeros(S, A, K, p, dtype=torch.float64)
    if init is not None:
        theta[..., :d] = torch.as_tensor(init[0], dtype=torch.float64)
        theta[..., d] = torch.as_tensor(init[1], dtype=torch.float64)
    out_f = torch.empty(S, A, dtype=torch.float64)
    out_g = torch.empty(S, A, dtype=torch.float64)
    out_it = torch.zeros(S, A, dtype=torch.int64)
    per_seed = N * max(A * K * K, p * (p + 1) // 2, A * K * 4)
    step = max(1, CHUNK_ELEMENTS // per_seed)
    for lo in range(0, S, step):
        sl = slice(lo, min(S, lo + step))
        th, it0 = theta[sl], 0
        if cfg.tol < COARSE_TOL:
            # Coarse phase in float32 (half the memory traffic of the per-sample tensors), then
            # polish in float64: Newton's quadratic convergence needs one to three float64 steps
            # from there, and the float64 phase alone decides convergence and the final tolerance.
            th32, _, _, it0 = _newton(Xa[sl].float(), yt, g[sl].float(), th.float(), cfg, tol=COARSE_TOL)
            th = th32.double()
        th, f, gn, it = _newton(Xa[sl], yt, g[sl], th, cfg, tol=cfg.tol)
        theta[sl], out_f[sl], out_g[sl], out_it[sl] = th, f, gn, it + it0
    return FitResult(
        W=theta[..., :d].numpy(),
        b=theta[..., d].numpy(),
        objective=out_f.numpy(),
        grad_norm=out_g.numpy(),
        n_iter=out_it.numpy(),
        converged=(out_g < cfg.tol).numpy(),
    )


def _spd_solve(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Solve H x = g for a batch of symmetric positive definite H (..., D, D), g (..., D).

    Cholesky is several times faster than LU for many small systems; a matrix that rounding has
    left not quite positive definite (a nearly flat direction) falls back to LU.
    """
    L, info = torch.linalg.cholesky_ex(H)
    x = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
    bad_ = info != 0
    if bool(bad_.any()):
        x[bad_] = torch.linalg.solve(H[bad_], g[bad_].unsqueeze(-1)).squeeze(-1)
    return x


def _newton(
    Xa: torch.Tensor, y: torch.Tensor, g: torch.Tensor, theta: torch.Tensor, cfg: LearnerConfig, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton's method on one chunk of seeds; Xa (S, N, p), g (S, A, K), theta (S, A, K, p).

    It works in the sum-to-zero coordinates phi = theta[:, :, :K-1] with theta_{K-1} = -sum phi:
    the CE is unchanged when every row of theta moves by the same vector, and the L2 term makes
    sum_k W_k = 0 at the optimum, so nothing is lost, the bias gauge disappears, and the Newton
    system shrinks from K p to (K-1) p unknowns. Only the distinct blocks of the Hessian (pairs
    k <= l of classes, pairs a <= b of input coordinates) are formed, then scattered.

    Per-sample tensors are laid out (S, K, N, A): classes outside, models inside, so that every
    reduction or selection over classes moves whole contiguous (N, A) slabs (with K as the last,
    tiny axis, softmax and indexing are several times slower on CPU).
    """
    S, N, p = Xa.shape
    A, K = g.shape[1], g.shape[2]
    J = K - 1
    D = J * p
    dt = Xa.dtype
    slack = ROUNDING_SLACK * torch.finfo(dt).eps
    Y = _onehot(y, K, dt).T[None, :, :, None]  # (1, K, N, 1)
    yidx = y.view(1, 1, N, 1).expand(S, 1, N, A)  # gather index over classes, no copy
    g_y = g.transpose(1, 2)[:, y].unsqueeze(1)  # gamma_{y_i} per model, (S, 1, N, A)
    additive = cfg.loss == "additive"
    c = None if additive else 1.0 / g_y  # d u / d z: 1 (additive) or 1 / gamma_y (temperature)
    iu_a, iu_b = torch.triu_indices(p, p)
    T = iu_a.numel()
    XXuT = (Xa[..., iu_a] * Xa[..., iu_b]).transpose(1, 2).to(HESSIAN_DTYPE)  # (S, T, N): entries of x x^T
    ik, il = torch.triu_indices(J, J)
    P = ik.numel()
    # full (k, a, l, b) -> (class pair, coordinate pair) in the compact Hessian
    pair = torch.zeros(J, J, dtype=torch.int64)
    pair[ik, il] = torch.arange(P)
    pair[il, ik] = torch.arange(P)
    tri = torch.zeros(p, p, dtype=torch.int64)
    tri[iu_a, iu_b] = torch.arange(T)
    tri[iu_b, iu_a] = torch.arange(T)
    scatter = (pair[:, None, :, None] * T + tri[None, :, None, :]).reshape(-1)  # (D*D,)
    diag_pairs = (ik == il).nonzero().squeeze(1)  # pair index of (k, k), in class order
    wmask = torch.ones(p, dtype=dt)
    wmask[-1] = 0.0  # the bias is not penalised
    # L2 in phi coordinates: l2 ||W||^2 with W_{K-1} = -sum_k phi_k gives l2 (I + 1 1^T) (x) diag(wmask)
    reg = cfg.l2 * torch.kron(torch.eye(J, dtype=dt) + 1.0, torch.diag(wmask))
    th = theta.transpose(1, 2).contiguous()  # (S, K, A, p)
    th = th - th.mean(dim=1, keepdim=True)  # project a warm start onto sum_k theta_k = 0
    Xb = Xa.unsqueeze(1)  # (S, 1, N, p)

    def logits(t: torch.Tensor) -> torch.Tensor:  # (S, K, A, p) -> (S, K, N, A)
        return torch.matmul(Xb, t.transpose(-1, -2))

    def adjust(z: torch.Tensor) -> torch.Tensor:
        return z - g_y * Y if additive else z * c

    def value(u: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F (S, A), logsumexp (S, 1, N, A)) from adjusted logits u."""
        lse = torch.logsumexp(u, 1, keepdim=True)
        ce = (lse - torch.gather(u, 1, yidx)).mean(2).view(S, A)
        return ce + 0.5 * cfg.l2 * ((t * wmask) ** 2).sum((1, 3)), lse

    u = adjust(logits(th))
    f, lse = value(u, th)
    n_iter = torch.zeros(S, A, dtype=torch.int64)
    gnorm = torch.full((S, A), float("inf"), dtype=dt)
    for _ in range(cfg.max_iter + 1):
        prob = torch.exp(u - lse)  # softmax of the adjusted logits, (S, K, N, A)
        q = prob if additive else prob * c  # c p
        r = q - Y if additive else q - c * Y  # dCE_i/dz = c (p - e_y)
        grad = torch.matmul(r.transpose(-1, -2), Xb) / N  # (S, K, A, p)
        grad = grad + cfg.l2 * wmask * th  # gradient in (W, b)
        gnorm = grad.abs().amax((1, 3))
        active = gnorm >= tol
        if not bool(active.any()) or int(n_iter.max()) >= cfg.max_iter:
            break
        gphi = (grad[:, :J] - grad[:, J:]).transpose(1, 2).reshape(S, A, D)  # chain rule
        # Hessian of the mean CE in phi: (1/N) sum_i C'_i (x) x_i x_i^T with
        # C' = P^T c^2 (diag p - p p^T) P = diag(c q_<) + c q_{K-1} 1 1^T - w w^T, w = q_< - q_{K-1}
        # The Hessian is formed in float32 (HESSIAN_DTYPE): it only steers the step, while the
        # gradient, the line search and the stopping test stay in float64, so the solution and its
        # tolerance are unchanged; an inexact Hessian at most costs an extra iteration.
        # C' is built directly in the (S, N, pairs, A) layout of the GEMM below: only the small
        # per-class tensors are transposed, never the larger per-pair one.
        qh = q.to(HESSIAN_DTYPE).transpose(1, 2)  # (S, N, K, A)
        w = (qh[:, :, :J] - qh[:, :, J:]).contiguous()  # (S, N, J, A)
        cq = qh if additive else qh * c.to(HESSIAN_DTYPE).transpose(1, 2)
        # index_select, not advanced indexing: the same gather through a kernel several times faster
        Cu = cq[:, :, J:] - w.index_select(2, ik) * w.index_select(2, il)  # (S, N, P, A)
        Cu.index_add_(2, diag_pairs, cq[:, :, :J])
        # one batched GEMM per seed, (T, N) @ (N, P*A); broadcasting XXuT over P in matmul would
        # materialise P copies of it
        Hu = torch.bmm(XXuT, Cu.view(S, N, P * A)) / N  # (S, T, P*A)
        Hu = Hu.view(S, T, P, A).permute(0, 3, 2, 1).reshape(S, A, P * T)
        H = Hu.index_select(-1, scatter).view(S, A, D, D).to(dt) + reg
        step = -_spd_solve(H, gphi)  # (S, A, D)
        step = step * active[..., None]
        slope = (gphi * step).sum(-1)  # directional derivative, < 0 for active models
        sphi = step.view(S, A, J, p).transpose(1, 2)  # (S, J, A, p)
        dth = torch.cat([sphi, -sphi.sum(1, keepdim=True)], dim=1)  # (S, K, A, p)
        dz = logits(dth)
        du = dz if additive else dz * c  # the adjustment is affine: u(z + t dz) = u + t du
        t = torch.ones(S, A, dtype=dt)
        todo = active.clone()
        full_step = None
        for halving in range(MAX_HALVINGS):
            u_try = u + t[:, None, None, :] * du
            th_try = th + t[:, None, :, None] * dth
            cand, lse_try = value(u_try, th_try)
            # the slack of a few ulps lets a converging model accept a step that rounding makes
            # look like no decrease
            ok = cand <= f + ARMIJO_C * t * slope + slack * f.abs()
            todo = todo & ~ok
            if not bool(todo.any()):
                if halving == 0:  # every model took the full step (converged ones have step 0)
                    full_step = (u_try, th_try, cand, lse_try)
                break
            t = torch.where(todo, 0.5 * t, t)
        if full_step is not None:  # the usual case: reuse the evaluation at the new point
            u, th, f, lse = full_step
        else:
            t = torch.where(todo, torch.zeros_like(t), t) * active  # failed search: stay put
            th = th + t[:, None, :, None] * dth
            u = u + t[:, None, None, :] * du
            f, lse = value(u, th)
        n_iter = n_iter + active.to(torch.int64)
    return th.transpose(1, 2), f, gnorm, n_iter
