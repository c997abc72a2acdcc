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
* ``"oracle"``: the worst-class-optimal share of the gap for two isotropic Gaussian classes
  (theory/, helper T's derivation): the boundary that minimises the worse of the two class errors
  sits at distance d s_k / (s_k + s_j) from class k's mean, d the distance between the means and
  s_k, s_j the SDs of the two classes along the line joining them. So a_k = :func:`oracle_share`
  (s_k, s_j) = s_k / (s_k + s_j), with j class k's nearest rival (nearest EMA class mean, Euclidean)
  and u = (m_j - m_k) / ||m_j - m_k||; used with exponent 1 (gamma_k = K cbar a_k / sum_j a_j). For
  K > 2 it is an approximation (each class against its nearest rival only). The projected variances
  need direction-dependent moments: :class:`mr2.losses.MR2Loss` keeps a (K, K) EMA V[k, j] of the
  variance of class k's batch members, centred at their batch mean, projected on the unit direction
  from the EMA class mean m_k to m_j (:func:`projected_class_variances`, directions taken from the
  class-mean EMA after this batch's update, all pairs every step, O(B K d)); then s_k^2 = V[k, j],
  s_j^2 = V[j, k]. Distributed-correct: the per-class sums and counts are all-reduced before the
  division, as for the other statistics. A pair never observed, or two zero SDs, gives share 1/2.
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

__all__ = [
    "STATISTICS",
    "VECTOR_STATISTICS",
    "class_statistic",
    "derangement",
    "DISTANCE_FLOOR",
    "oracle_share",
    "oracle_statistic",
    "projected_class_variances",
]

STATISTICS = ("second_moment", "centred", "spread", "separation", "oracle", "shuffled")
# the statistics that need the EMA of the class-mean vectors, a (K, d) buffer
VECTOR_STATISTICS = ("centred", "separation", "oracle")
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
    projected_var: Tensor | None = None,
    pair_seen: Tensor | None = None,
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
        norm_p: p of the L_p norm (not used by ``"oracle"``, which is Euclidean).
        projected_var: ``"oracle"`` only: (K, K) V[k, j], the (EMA'd) variance of class k's features
            projected on the direction from m_k to m_j.
        pair_seen: ``"oracle"`` only: (K, K) bool, the entries of ``projected_var`` observed at least
            once (None: all).

    Returns:
        (K,) in the EMAs' dtype for ``"second_moment"``, ``"shuffled"`` and ``"spread"``, float64 for
        ``"centred"``, ``"separation"`` and ``"oracle"``.
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
    if statistic == "oracle":
        if projected_var is None:
            raise ValueError("statistic='oracle' needs the projected class variances (projected_var)")
        return oracle_statistic(class_means, projected_var, seen, pair_seen)
    raise ValueError(f"unknown statistic {statistic!r}; expected one of {', '.join(STATISTICS)}")


def oracle_share(s_k: Tensor, s_j: Tensor) -> Tensor:
    """Class k's worst-class-optimal share of the gap to class j: s_k / (s_k + s_j) (SDs >= 0).

    Two isotropic Gaussian classes with SDs s_k, s_j along the line joining their means, at distance
    d: the boundary that minimises the larger of the two error rates is at d s_k / (s_k + s_j) from
    mean k (both errors are then Phi(-d / (s_k + s_j))). Two zero SDs give 1/2. Elementwise.
    """
    total = s_k + s_j
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, s_k / safe, torch.full_like(total, 0.5))


def _nearest_rivals(means: Tensor, seen: Tensor) -> tuple[Tensor, Tensor]:
    """(j, ok): each class's nearest other seen class mean (Euclidean) and whether it has one."""
    K = means.shape[0]
    unit, _ = _rescaled(means, seen)
    dist = torch.cdist(unit, unit, p=2.0)
    others = seen[None, :] & ~torch.eye(K, dtype=torch.bool, device=seen.device)
    dist = torch.where(others, dist, torch.inf)
    j = dist.argmin(dim=1)
    return j, seen & torch.isfinite(dist.min(dim=1).values)


def oracle_statistic(
    class_means: Tensor, projected_var: Tensor, seen: Tensor, pair_seen: Tensor | None = None
) -> Tensor:
    """The ``"oracle"`` statistic (K,), float64: oracle_share(s_k, s_j) against the nearest rival j.

    Args:
        class_means: (K, d) class means m_k (the loss's EMA).
        projected_var: (K, K) V[k, j], the variance of class k projected on the line from m_k to m_j.
        seen: (K,) bool, the classes with a mean.
        pair_seen: (K, K) bool, the observed entries of V (None: all).

    s_k = sqrt(V[k, j]), s_j = sqrt(V[j, k]) on the same line. A class without a rival, or whose pair
    has not been observed both ways, gets 1/2 (the symmetric share).
    """
    K = class_means.shape[0]
    j, ok = _nearest_rivals(class_means.double(), seen)
    v = projected_var.double().clamp_min(0.0)
    rows = torch.arange(K, device=v.device)
    s_k, s_j = v[rows, j].sqrt(), v[j, rows].sqrt()
    if pair_seen is not None:
        ok = ok & pair_seen[rows, j] & pair_seen[j, rows]
    return torch.where(ok, oracle_share(s_k, s_j), torch.full_like(s_k, 0.5))


def projected_class_variances(
    features: Tensor, targets: Tensor, directions_from: Tensor, *, sync: bool = False
) -> tuple[Tensor, Tensor]:
    """One batch's (K, K) V[k, j]: the variance of class k's members, centred at their batch mean,
    projected on the unit direction from m_k to m_j (``directions_from``: the (K, d) class means
    that define the directions, e.g. the EMA), and the (K,) member counts. Float64.

    c_i . (m_j - m_k) = c_i . m_j - c_i . m_k for each sample's centred feature c_i, so all K
    directions of a sample cost one (B, d) x (d, K) product: O(B K d), no (K, K, d) tensor.
    Entries with m_j = m_k (or j = k) are 0. ``sync``: the per-class sums and counts are all-reduced
    (every rank must call it), so V is that of the global batch. Rows of absent classes are 0.
    """
    from mr2.losses._common import all_reduce_sum

    h = features.detach().double()
    y = targets.long()
    K, d = directions_from.shape
    packed = h.new_zeros(K, d + 1)
    packed[:, :d].index_add_(0, y, h)
    packed[:, d].index_add_(0, y, h.new_ones(h.shape[0]))
    if sync:
        all_reduce_sum(packed)
    counts = packed[:, d]
    mu = packed[:, :d] / counts.clamp_min(1.0)[:, None]
    m = directions_from.double()
    unit, c = _rescaled(m, counts >= 0)
    dist = torch.cdist(unit, unit, p=2.0) * c  # (K, K) ||m_k - m_j||
    centred = h - mu.index_select(0, y)
    g = centred @ m.T  # (B, K): c_i . m_j
    proj = (g - g.gather(1, y[:, None])) / torch.where(dist > 0, dist, torch.inf).index_select(0, y)
    sq = h.new_zeros(K, K).index_add_(0, y, proj.square())
    if sync:
        all_reduce_sum(sq)
    return sq / counts.clamp_min(1.0)[:, None], counts
