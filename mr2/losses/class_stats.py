"""Per-class feature statistics of one batch, vectorised and distributed-correct.

For every class k present in the (global) batch, with n_k > 0 samples:

* mu_k = (1/n_k) sum_{i in k} h_i, the class mean;
* ``mean_norm`` = ||mu_k||_p^2;
* ``spread`` = (1/n_k) sum_{i in k} ||h_i - mu_k||_p^2, the mean squared deviation s_k^2.

With p = 2, ``mean_norm + spread`` is a_k = ||mu_k||^2 + s_k^2 = (1/n_k) sum ||h_i||^2, the spread in
the MR2 bound (docs/method.md, MR²'s margins); the official code uses p = 5.

Classes are reduced with a sort by label (``layout``) and ``index_add``, never a loop, and only
the C <= B classes present are touched, so the cost does not grow with K. Under ``torch.distributed``
the per-class sums and counts (dense, (K, d + 1): every rank must reduce the same shape) are
all-reduced before the means are taken, and the deviation sums of the globally present classes after,
so every rank gets the statistics of the concatenated global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mr2.losses._common import all_reduce_sum
from mr2.losses.layout import BatchLayout, batch_layout

__all__ = ["BatchClassStats", "batch_class_statistics", "sq_norm"]


@dataclass(frozen=True)
class BatchClassStats:
    """Statistics of the classes present in one batch; every field has shape (C,)."""

    classes: Tensor  # int64 class indices, increasing
    counts: Tensor  # n_k, samples of each class in the (global) batch (features' dtype)
    mean_norm: Tensor  # ||mu_k||_p^2
    spread: Tensor  # mean_i ||h_i - mu_k||_p^2


def sq_norm(x: Tensor, p: float, *, inplace: bool = False) -> Tensor:
    """||x||_p^2 along the last axis.

    Small integer p uses products (square-and-multiply), several times faster on CPU than the generic
    ``vector_norm``, which calls pow for every element; squarings happen in place where nothing else
    holds the tensor, so p = 5 needs one temporary. ``inplace`` lets it overwrite ``x`` itself.
    """
    if p == 2.0:
        return (x * x).sum(dim=-1)
    if float(p).is_integer() and 1 <= p <= 8:
        base = x.abs_() if inplace else x.abs()  # a temporary from here on
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
) -> BatchClassStats:
    """Per-class ||mu_k||_p^2 and mean ||h_i - mu_k||_p^2 of the classes in a batch (module docstring).

    Args:
        features: (B, d) features, already detached and in the dtype wanted for the statistics.
        targets: (B,) int64 labels in [0, K).
        num_classes: K.
        norm_p: p of the L_p norm (2 in the paper, 5 in the official code).
        sync: all-reduce over the default process group (call it on every rank).
        layout: ``batch_layout(targets)`` when the caller already has it (unused with ``sync``).
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
    mean_norm = sq_norm(mu, norm_p)
    # A class with one sample has mu = h and no deviation: centre only the samples of larger classes
    # (at K = 1000, B = 256 about 80% of the samples are alone in their class).
    rows = torch.nonzero(counts.index_select(0, compact) > 1).squeeze(1)
    slots = compact.index_select(0, rows)
    centred = mu.index_select(0, slots).sub_(features.index_select(0, rows))  # sign: irrelevant
    dev_sum = features.new_zeros(classes.shape[0]).index_add_(
        0, slots, sq_norm(centred, norm_p, inplace=True)
    )
    if sync:
        all_reduce_sum(dev_sum)  # same present classes on every rank, so the shapes agree
    return BatchClassStats(classes=classes, counts=counts, mean_norm=mean_norm, spread=dev_sum / counts)
