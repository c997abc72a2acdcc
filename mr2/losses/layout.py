"""Where each class sits in a batch: one stable sort by label, shared by the statistics and the pairs.

After sorting, every class present is a contiguous run. The C <= B present classes get compact indices
0..C-1, so per-class work costs O(C), not O(K): at K = 1000 and B = 256 only about 225 classes are
present, and nothing of size K is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BatchLayout", "batch_layout", "same_class_pairs"]


@dataclass(frozen=True)
class BatchLayout:
    """The class structure of a batch of B labels with C distinct classes."""

    order: Tensor  # (B,) int64, stable permutation that sorts the batch by label
    classes: Tensor  # (C,) int64, the classes present, increasing
    counts: Tensor  # (C,) int64, n_k: samples of each present class
    compact: Tensor  # (B,) int64, each sample's class as an index into ``classes``
    sorted_compact: Tensor  # (B,) int64, ``compact[order]``: non-decreasing runs


def batch_layout(targets: Tensor) -> BatchLayout:
    """The :class:`BatchLayout` of ``targets`` ((B,) int64)."""
    sorted_y, order = torch.sort(targets, stable=True)
    classes, sorted_compact, counts = torch.unique_consecutive(
        sorted_y, return_inverse=True, return_counts=True
    )
    compact = torch.empty_like(sorted_compact).scatter_(0, order, sorted_compact)
    return BatchLayout(
        order=order, classes=classes, counts=counts, compact=compact, sorted_compact=sorted_compact
    )


def same_class_pairs(layout: BatchLayout) -> tuple[Tensor, Tensor]:
    """Every unordered pair {i, j}, i != j, of batch positions that share a label, each once.

    Within the sorted batch, the sample of rank r in a run of n pairs with the n - 1 - r samples after
    it; ``repeat_interleave`` over those counts lists all P = sum_k n_k (n_k - 1) / 2 pairs with no
    loop over classes and no B x B intermediate.

    Returns:
        ``(first, second)``: (P,) int64 batch indices (original order).
    """
    B = layout.order.shape[0]
    device = layout.order.device
    starts = torch.cumsum(layout.counts, 0) - layout.counts  # first sorted position of each run
    pos = torch.arange(B, device=device)
    run = layout.sorted_compact
    n_later = layout.counts.index_select(0, run) - 1 - (pos - starts.index_select(0, run))
    first = torch.repeat_interleave(pos, n_later)
    run_start = torch.cumsum(n_later, 0) - n_later
    second = (
        first + 1 + torch.arange(first.shape[0], device=device) - torch.repeat_interleave(run_start, n_later)
    )
    return layout.order.index_select(0, first), layout.order.index_select(0, second)
