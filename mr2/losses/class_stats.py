"""Per-class feature statistics of one batch, vectorised and distributed-correct.

For every class k with n_k > 0 samples in the (global) batch:

* mu_k = (1/n_k) sum_{i in k} h_i, the class mean;
* ``mean_norm[k]`` = ||mu_k||_p^2;
* ``spread[k]`` = (1/n_k) sum_{i in k} ||h_i - mu_k||_p^2, the mean squared deviation s_k^2.

With p = 2, ``mean_norm + spread`` is a_k = ||mu_k||^2 + s_k^2 = (1/n_k) sum ||h_i||^2, the spread in
the MR2 bound (METHOD.md); the official code uses p = 5 (``self.l1norm = 5``).

Classes are reduced with ``bincount`` / ``index_add``, never a loop. Under ``torch.distributed`` the
per-class sums and counts are all-reduced before the means are taken, and the deviation sums after,
so every rank gets the statistics of the concatenated global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mr2.losses._common import all_reduce_sum

__all__ = ["BatchClassStats", "batch_class_statistics"]


@dataclass(frozen=True)
class BatchClassStats:
    """Statistics of one batch; every field has shape (K,) and the features' dtype."""

    counts: Tensor  # n_k, samples of class k in the (global) batch
    mean_norm: Tensor  # ||mu_k||_p^2, 0 for an absent class
    spread: Tensor  # mean_i ||h_i - mu_k||_p^2, 0 for an absent class


def _sq_norm(x: Tensor, p: float) -> Tensor:
    if p == 2.0:
        return (x * x).sum(dim=-1)  # the common case, without the generic norm's pow/abs
    return torch.linalg.vector_norm(x, ord=p, dim=-1).square()


def batch_class_statistics(
    features: Tensor, targets: Tensor, num_classes: int, *, norm_p: float = 2.0, sync: bool = True
) -> BatchClassStats:
    """Per-class ||mu_k||_p^2 and mean ||h_i - mu_k||_p^2 of a batch (module docstring).

    Args:
        features: (B, d) features, already detached and in the dtype wanted for the statistics.
        targets: (B,) int64 labels in [0, K).
        num_classes: K.
        norm_p: p of the L_p norm (2 in the paper, 5 in the official code).
        sync: all-reduce over the default process group when torch.distributed is initialised.
    """
    K = num_classes
    B, d = features.shape
    dtype = features.dtype
    # Sums and counts travel in one buffer: one all-reduce instead of two.
    packed = features.new_zeros(K, d + 1)
    packed[:, :d].index_add_(0, targets, features)
    packed[:, d].index_add_(0, targets, features.new_ones(B))
    if sync:
        all_reduce_sum(packed)
    sums, counts = packed[:, :d], packed[:, d]
    safe = counts.clamp_min(1.0)
    mu = sums / safe[:, None]
    mean_norm = _sq_norm(mu, norm_p)
    deviation = _sq_norm(features - mu[targets], norm_p)
    dev_sum = features.new_zeros(K).index_add_(0, targets, deviation)
    if sync:
        all_reduce_sum(dev_sum)
    spread = dev_sum / safe
    return BatchClassStats(counts=counts.to(dtype), mean_norm=mean_norm, spread=spread)
