"""The per-class statistic a_k that MR2's margin rule turns into margins, and its variants.

MR2 sets gamma_k proportional to a_k^(1/(p+1)) (``theory.optimal_margins``). Which a_k? The bound
(a linear head W on features h, Maurer's contraction; docs/theory.md) gives the second moment
a_k = E ||h||^2 over class k = ||mu_k||^2 + s_k^2. :class:`mr2.losses.MR2Loss` takes the statistic by
name (``statistic=``); every one is computed from the loss's per-class EMAs (``observations`` > 0
marks the classes seen), in the L_p norm of ``norm_p``:

* ``"second_moment"`` (the paper, default): a_k = EMA ||mu_k||_p^2 + EMA s_k^2.
* ``"centred"``: a_k = ||m_k - m_bar||_p^2 + EMA s_k^2, with m_k the EMA of the class-mean vector and
  m_bar the plain mean of the m_k over the classes seen. Supported by the bound when the head has a
  bias: W h + b = W (h - c) + (b + W c) for any c, so the bound holds with the features centred at
  any c, and sum_k pi_k (||mu_k - c||^2 + s_k^2) is smallest at the weighted centroid
  c = sum_k pi_k mu_k, which on balanced data is the plain mean of the class means.
* ``"spread"``: a_k = EMA s_k^2, the within-class spread alone.
* ``"separation"``: a_k = EMA s_k^2 / min_{j != k} ||m_k - m_j||_p^2, spread over the squared distance
  to the nearest other class mean. A **heuristic suggested by data** (on cross-entropy features of
  Fashion-MNIST it ranks the hard classes best), **not a consequence of the bound**. It costs
  O(K^2 d) per step (all pairs of class means).
* ``"shuffled"``: a placebo control. The second-moment statistic permuted across classes by a fixed
  derangement drawn once from a seed (:func:`derangement`), so the margins have the same spread of
  values as ``"second_moment"`` but no class keeps its own: they point at the wrong classes.

The second-moment statistic is computed exactly as before this module existed (same operations, same
dtype). The others are computed in float64 from the float32 EMAs, so that they cannot overflow; the
margin rule is scale invariant, so only their ratios matter.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mr2.losses.class_stats import sq_norm

__all__ = ["STATISTICS", "VECTOR_STATISTICS", "class_statistic", "derangement", "DISTANCE_FLOOR"]

STATISTICS = ("second_moment", "centred", "spread", "separation", "shuffled")
# the statistics that need the EMA of the class-mean vectors, a (K, d) buffer
VECTOR_STATISTICS = ("centred", "separation")
# ``separation``: nearest-mean distances are floored at DISTANCE_FLOOR * (the largest of them), so two
# classes whose means coincide get a large but finite statistic (the same guard as MR2's SPREAD_FLOOR).
DISTANCE_FLOOR = 1e-7


def derangement(n: int, seed: int) -> Tensor:
    """A permutation of 0..n-1 with no fixed point, drawn from ``seed`` (same seed, same permutation).

    Rejection sampling: a uniform permutation is a derangement with probability about 1/e, so about
    e draws are needed. Returns (n,) int64 on the CPU; n >= 2.
    """
    gen = torch.Generator().manual_seed(int(seed))
    ident = torch.arange(n)
    while True:
        perm = torch.randperm(n, generator=gen)
        if bool((perm != ident).all()):
            return perm


def _rescaled(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """(x / c, c) with c = max |x| over the rows marked in ``rows`` (1 when that is 0): keeps the p-th
    powers of float64 far from overflow whatever the feature units."""
    c = torch.where(rows[:, None], x.abs(), 0.0).max()
    c = torch.where(c > 0, c, torch.ones_like(c))
    return x / c, c


def class_statistic(
    statistic: str,
    *,
    mean_norm: Tensor,
    spread: Tensor,
    class_means: Tensor | None,
    seen: Tensor,
    norm_p: float,
) -> Tensor:
    """The statistic a_k of every class (K,), before the never-seen classes are filled in.

    Args:
        statistic: one of :data:`STATISTICS` (module docstring). ``"shuffled"`` returns the second
            moment: the caller permutes it after filling in the never-seen classes.
        mean_norm: (K,) EMA of ||mu_k||_p^2.
        spread: (K,) EMA of s_k^2.
        class_means: (K, d) EMA of the class-mean vectors m_k (needed by :data:`VECTOR_STATISTICS`).
        seen: (K,) bool, the classes observed at least once; the values at the others are finite
            but meaningless.
        norm_p: p of the L_p norm.

    Returns:
        (K,) in the EMAs' dtype for ``"second_moment"``, ``"shuffled"`` and ``"spread"``, float64 for
        ``"centred"`` and ``"separation"``.
    """
    if statistic in ("second_moment", "shuffled"):
        return mean_norm + spread
    if statistic == "spread":
        return spread
    if class_means is None:
        raise ValueError(f"statistic={statistic!r} needs the EMA of the class means (class_means)")
    m = class_means.double()
    s = spread.double()
    if statistic == "centred":
        n_seen = seen.sum().clamp_min(1)
        m_bar = torch.where(seen[:, None], m, 0.0).sum(dim=0) / n_seen
        dev, c = _rescaled(m - m_bar, seen)
        return sq_norm(dev, norm_p) * (c * c) + s
    if statistic == "separation":
        unit, c = _rescaled(m, seen)
        dist = torch.cdist(unit, unit, p=norm_p).square() * (c * c)  # (K, K)
        others = seen[None, :] & ~torch.eye(seen.shape[0], dtype=torch.bool, device=seen.device)
        nearest = torch.where(others, dist, torch.inf).amin(dim=1)
        valid = seen & torch.isfinite(nearest)  # a class alone among the seen has no nearest mean
        top = torch.where(valid, nearest, 0.0).max()
        # With fewer than two classes seen, or all class means equal, the ratio is undefined: the
        # denominator falls back to 1 and the statistic to the spread alone.
        nearest = torch.where(valid & (top > 0), nearest.clamp_min(DISTANCE_FLOOR * top), 1.0)
        return s / nearest
    raise ValueError(f"unknown statistic {statistic!r}; expected one of {', '.join(STATISTICS)}")
