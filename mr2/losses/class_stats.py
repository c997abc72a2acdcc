"""Per-class feature statistics of one batch, vectorised and distributed-correct.

For every class k present in the (global) batch, with n_k > 0 samples:

* mu_k = (1/n_k) sum_{i in k} h_i, the class mean;
* ``mean_norm`` = ||mu_k||_p^2;
* ``spread`` = (1/n_k) sum_{i in k} ||h_i - mu_k||_p^2, the mean squared deviation s_k^2.

With p = 2, ``mean_norm + spread`` is a_k = ||mu_k||^2 + s_k^2 = (1/n_k) sum ||h_i||^2, the spread in
the MR2 bound (docs/theory.md; docs/method.md, MR²'s margins); the official code uses p = 5.

Classes are reduced with a sort by label (``layout``) and ``index_add``, never a loop, and only
the C <= B classes present are touched, so the cost does not grow with K. Finding the present classes
gives tensors whose size depends on the labels, which a GPU must report to the host (a
synchronisation per step); :func:`dense_class_statistics` computes the same numbers over all K
classes with fixed shapes and a mask of the present ones instead, with no read-back. Under
``torch.distributed`` the per-class sums and counts (dense, (K, d + 1): every rank must reduce the same
shape) are all-reduced before the means are taken, and the deviation sums of the globally present
classes after, so every rank gets the statistics of the concatenated global batch.

Overflow. ||x||_p^2 sums |x_i|^p, which overflows float32 long before the features do (p = 2 from
|h| ~ 1e19, p = 5 from |h| ~ 1e7 at d = 512). The statistics are therefore computed on features scaled
by an exact power of two, 2^-s, chosen from max |h| so that no intermediate can overflow
(:func:`overflow_shift`), and the results are multiplied back by 2^s twice. A power of two
changes no mantissa, so below the threshold (s = 0, every realistic feature scale) the numbers are
bit for bit those of the unscaled computation, and the caller can skip the scaling altogether. Above
it, a statistic that is itself beyond the dtype's range comes back as inf: the caller must not fold it
into an EMA (``MR2Loss`` skips it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mr2.losses._common import all_reduce_max, all_reduce_sum
from mr2.losses.layout import BatchLayout, batch_layout

__all__ = [
    "BatchClassStats",
    "DenseClassStats",
    "batch_class_statistics",
    "dense_class_statistics",
    "sq_norm",
    "overflow_shift",
    "overflow_scale",
    "overflow_scale_tensor",
]

# Bound on log2(d) (and on log2 of the batch size) used by the overflow threshold: d <= 2^24.
_LOG2_MAX_DIM = 24


@dataclass(frozen=True)
class BatchClassStats:
    """Statistics of the classes present in one batch; every field has shape (C,)."""

    classes: Tensor  # int64 class indices, increasing
    counts: Tensor  # n_k, samples of each class in the (global) batch (features' dtype)
    mean_norm: Tensor  # ||mu_k||_p^2
    spread: Tensor  # mean_i ||h_i - mu_k||_p^2
    means: Tensor | None = None  # (C, d) mu_k, when asked for (``with_means``)


@dataclass(frozen=True)
class DenseClassStats:
    """Statistics of every class k < K in one batch; (K,) fields, zeros where ``present`` is False."""

    present: Tensor  # bool, n_k > 0 in the (global) batch
    counts: Tensor  # n_k (features' dtype)
    mean_norm: Tensor  # ||mu_k||_p^2
    spread: Tensor  # mean_i ||h_i - mu_k||_p^2
    means: Tensor | None = None  # (K, d) mu_k, when asked for (``with_means``)


def overflow_shift(norm_p: float, dtype: torch.dtype) -> int:
    """The largest T such that features with max |h| < 2^T give finite statistics in ``dtype``.

    Deviations are at most 2 max |h| < 2^(T+1), so sum_i |x_i|^p < d 2^(p (T+1)) with d <= 2^24.
    Both that sum and the statistic (sum)^(2/p) must stay below half the dtype's largest number
    (2^(L-1), L = log2 max; half, so that a sum of two statistics is finite too):
    T + 1 <= min((L - 25) / p, (L - 1) / 2 - 24 / p). float32: T = 50 at p = 2, 19 at p = 5.
    """
    L = math.log2(torch.finfo(dtype).max)
    t = math.floor(min((L - 1 - _LOG2_MAX_DIM) / norm_p, (L - 1) / 2 - _LOG2_MAX_DIM / norm_p)) - 1
    return max(t, 0)


def overflow_scale(absmax: float, norm_p: float, dtype: torch.dtype) -> float | None:
    """The power of two 2^-s that brings max |h| = ``absmax`` (a host float) below 2^T, or None when
    no scaling is needed (s = 0), which is the case for every realistic feature scale."""
    shift = math.frexp(absmax)[1] - overflow_shift(norm_p, dtype)  # absmax < 2^frexp exponent
    return None if shift <= 0 else math.ldexp(1.0, -shift)


def overflow_scale_tensor(features: Tensor, norm_p: float, *, sync: bool = False) -> Tensor:
    """:func:`overflow_scale` on the device (no host read-back): a 0-dim power of two in the features'
    dtype, exactly 1 when no scaling is needed. With ``sync`` the maximum is taken over every process,
    so every rank scales alike."""
    low, high = torch.aminmax(features)
    top = torch.maximum(-low, high)
    if sync:
        all_reduce_max(top)
    shift = (torch.frexp(top).exponent - overflow_shift(norm_p, features.dtype)).clamp_min(0)
    return torch.ldexp(torch.ones((), dtype=features.dtype, device=features.device), -shift)


def _unscale(stat: Tensor, scale: float | Tensor | None) -> Tensor:
    """``stat`` / scale^2, as (stat * 2^s) * 2^s: each product is exact (a power of two) and the first
    can only overflow where the result does, so float32 and float64 need no wider type; 2^(2s) itself
    may exceed the dtype and is never formed. Narrower dtypes go through float64."""
    if scale is None:
        return stat
    inv = 1.0 / scale  # exact: a power of two
    if stat.dtype in (torch.float32, torch.float64):
        return stat * inv * inv
    return (stat.double() * inv * inv).to(stat.dtype)


def sq_norm(x: Tensor, p: float, *, inplace: bool = False, scale: float | Tensor | None = None) -> Tensor:
    """||scale * x||_p^2 along the last axis (``scale`` None means 1).

    Small integer p uses products (square-and-multiply), several times faster on CPU than the generic
    ``vector_norm``, which calls pow for every element; squarings happen in place where nothing else
    holds the tensor, so p = 5 needs one temporary. ``inplace`` lets it overwrite ``x`` itself. The
    scale is applied to that temporary before any power (the overflow guard, module docstring).
    """
    if scale is not None:
        if p == 2.0:
            y = x.mul_(scale) if inplace else x * scale
            return y.square_().sum(dim=-1)
        if not (float(p).is_integer() and 1 <= p <= 8):
            return torch.linalg.vector_norm(x * scale, ord=p, dim=-1).square()
    if p == 2.0:
        return (x * x).sum(dim=-1)
    if float(p).is_integer() and 1 <= p <= 8:
        base = x.abs_() if inplace else x.abs()  # a temporary from here on
        if scale is not None:
            base.mul_(scale)
        e, out = int(p), None
        while True:
            if e & 1:
                if out is None:
                    out = base
                else:
                    out.mul_(base)
            e >>= 1
            if not e:
                break
            base = base * base if base is out else base.square_()
        return out.sum(dim=-1).pow(2.0 / p)
    return torch.linalg.vector_norm(x, ord=p, dim=-1).square()


def batch_class_statistics(
    features: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    norm_p: float = 2.0,
    sync: bool = False,
    layout: BatchLayout | None = None,
    scale: float | Tensor | None = None,
    with_means: bool = False,
) -> BatchClassStats:
    """Per-class ||mu_k||_p^2 and mean ||h_i - mu_k||_p^2 of the classes in a batch (module docstring).

    Args:
        features: (B, d) features, already detached and in the dtype wanted for the statistics.
        targets: (B,) int64 labels in [0, K).
        num_classes: K.
        norm_p: p of the L_p norm (2 in the paper, 5 in the official code).
        sync: all-reduce over the default process group (call it on every rank).
        layout: ``batch_layout(targets)`` when the caller already has it (unused with ``sync``).
        scale: an exact power of two applied to the features before the norms, from
            :func:`overflow_scale` (host float) or :func:`overflow_scale_tensor` (0-dim tensor; it
            must be the same on every rank); None: no scaling. The statistics are returned unscaled.
        with_means: also return the class means mu_k (C, d) (unscaled).
    """
    B, d = features.shape
    if sync:
        packed = features.new_zeros(num_classes, d + 1)
        packed[:, :d].index_add_(0, targets, features)
        packed[:, d].index_add_(0, targets, features.new_ones(B))
        all_reduce_sum(packed)
        classes = torch.nonzero(packed[:, d] > 0).squeeze(1)
        sums, counts = packed.index_select(0, classes).split([d, 1], dim=1)
        counts = counts.squeeze(1)
        slot = torch.full((num_classes,), -1, dtype=torch.long, device=features.device)
        slot[classes] = torch.arange(classes.shape[0], device=features.device)
        compact = slot.index_select(0, targets)
    else:
        layout = batch_layout(targets) if layout is None else layout
        classes, compact, counts = layout.classes, layout.compact, layout.counts.to(features.dtype)
        sums = features.new_zeros(classes.shape[0], d).index_add_(0, compact, features)
    mu = sums / counts[:, None]
    mean_norm = _unscale(sq_norm(mu, norm_p, scale=scale), scale)
    # A class with one sample has mu = h and no deviation: centre only the samples of larger classes
    # (at K = 1000, B = 256 about 80% of the samples are alone in their class).
    rows = torch.nonzero(counts.index_select(0, compact) > 1).squeeze(1)
    slots = compact.index_select(0, rows)
    centred = mu.index_select(0, slots).sub_(features.index_select(0, rows))  # sign: irrelevant
    dev_sum = features.new_zeros(classes.shape[0]).index_add_(
        0, slots, sq_norm(centred, norm_p, inplace=True, scale=scale)
    )
    if sync:
        all_reduce_sum(dev_sum)  # same present classes on every rank, so the shapes agree
    return BatchClassStats(
        classes=classes,
        counts=counts,
        mean_norm=mean_norm,
        spread=_unscale(dev_sum / counts, scale),
        means=mu if with_means else None,
    )


def dense_class_statistics(
    features: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    norm_p: float = 2.0,
    sync: bool = False,
    scale: float | Tensor | None = None,
    with_means: bool = False,
) -> DenseClassStats:
    """:func:`batch_class_statistics` over all K classes with fixed shapes: no sort, no compaction,
    no read-back (a GPU step stays asynchronous). Arguments as there.

    The present classes get the same numbers, bit for bit on CPU: the per-class sums and the
    deviation sums accumulate in batch order either way, and a sample alone in its class adds an exact
    0 (mu_k = h_i). Absent classes get zeros and ``present`` False. Costs O(K d) beside the O(B d) of
    the batch, which is nothing on a GPU; on a CPU at large K the compact route is cheaper.
    """
    B, d = features.shape
    if sync:
        packed = features.new_zeros(num_classes, d + 1)
        packed[:, :d].index_add_(0, targets, features)
        packed[:, d].index_add_(0, targets, features.new_ones(B))
        all_reduce_sum(packed)
        sums, counts = packed[:, :d], packed[:, d]
    else:
        sums = features.new_zeros(num_classes, d).index_add_(0, targets, features)
        counts = features.new_zeros(num_classes).index_add_(0, targets, features.new_ones(B))
    present = counts > 0
    n = counts.clamp_min(1.0)  # absent classes: 0 / 1 = 0, no NaN
    mu = sums / n[:, None]
    mean_norm = _unscale(sq_norm(mu, norm_p, scale=scale), scale)
    centred = mu.index_select(0, targets).sub_(features)  # sign: irrelevant
    dev_sum = features.new_zeros(num_classes).index_add_(
        0, targets, sq_norm(centred, norm_p, inplace=True, scale=scale)
    )
    if sync:
        all_reduce_sum(dev_sum)
    return DenseClassStats(
        present=present,
        counts=counts,
        mean_norm=mean_norm,
        spread=_unscale(dev_sum / n, scale),
        means=mu if with_means else None,
    )
