"""MR2's representation margin, computed from the same-class pairs only (no loop over classes).

Definition (the official code's, ``MRFLoss.forward``; METHOD.md, "Representation term"): for every
class k with n_k samples in the batch,

    R_k = (1/n_k) sum_{i in k} log(1 + sum_{j in k, j != i} exp((||h_i - h_j||_2^2 - target) / T))

and the term is ``scale * sum_k R_k``, with target = 2 sbar, T = 10 d and scale = d / (10 K) in the
official code. A class with one sample has an empty inner sum, so it adds log(1) = 0: the sum may run
over every class, which is what makes the computation below exact for single-sample classes.

Cost. At K classes and batch B only about B^2 / (2K) unordered pairs share a class (about 33 at
B = 256, K = 1000). Sorting by label makes every class a contiguous run, and ``repeat_interleave``
over those runs enumerates exactly those pairs, so the work follows the pairs, not B^2: no dense
B x B Gram matrix and no loop over classes.

Stability. log(1 + sum_j exp(x_ij)) is a log-sum-exp over {0} and the x_ij; it is evaluated with the
per-anchor maximum m_i = max(0, max_j x_ij) (``scatter_reduce`` amax) as
m_i + log(exp(-m_i) + sum_j exp(x_ij - m_i)), so large distances cannot overflow. m_i is detached: the
value does not depend on it, and so neither does the gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["same_class_pairs", "representation_margin"]


def same_class_pairs(targets: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every unordered pair {i, j}, i != j, of batch positions that share a label.

    Args:
        targets: (B,) int64 labels in [0, K).
        num_classes: K.

    Returns:
        ``(first, second, counts)``: ``first`` and ``second`` are (P,) int64 batch indices with
        P = sum_k n_k (n_k - 1) / 2; ``counts`` is (K,) int64, n_k, the class sizes in the batch.
    """
    device = targets.device
    B = targets.shape[0]
    order = torch.argsort(targets, stable=True)
    counts = torch.bincount(targets, minlength=num_classes)
    sorted_y = targets[order]
    starts = torch.cumsum(counts, 0) - counts  # first sorted position of each class
    pos = torch.arange(B, device=device)
    size = counts[sorted_y]
    rank = pos - starts[sorted_y]  # rank of each sorted sample within its class
    n_later = size - 1 - rank  # partners that come after it in its class: pair each once
    first = torch.repeat_interleave(pos, n_later)
    run_start = torch.cumsum(n_later, 0) - n_later
    offset = torch.arange(first.shape[0], device=device) - torch.repeat_interleave(run_start, n_later)
    second = first + 1 + offset
    return order[first], order[second], counts


def representation_margin(
    features: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    target: Tensor | float,
    temperature: float,
    scale: float,
) -> Tensor:
    """``scale * sum_k R_k`` (module docstring), differentiable in ``features``.

    Args:
        features: (B, d) features h (penultimate layer); the distances are squared L2 (units of h^2).
        targets: (B,) int64 labels in [0, K).
        num_classes: K.
        target: the distance subtracted inside the exponent, 2 sbar (units of h^2); a 0-dim tensor
            or a float, not differentiated.
        temperature: T > 0 (units of h^2), 10 d in the official code.
        scale: the outer factor, d / (10 K) in the official code.

    Returns:
        A 0-dim tensor in ``features``' dtype.
    """
    B = features.shape[0]
    i, j, counts = same_class_pairs(targets, num_classes)
    diff = features[i] - features[j]
    dist = (diff * diff).sum(dim=1)  # squared L2, computed from differences: no cancellation
    x = (dist - target) / temperature
    anchors = torch.cat([i, j])  # each unordered pair serves both of its members as anchors
    xx = torch.cat([x, x])
    zero = features.new_zeros(B)
    # include_self with zeros: the "1 +" inside the log is exp(0), so the max starts at 0.
    m = zero.scatter_reduce(0, anchors, xx.detach(), reduce="amax", include_self=True)
    s = torch.exp(-m) + zero.index_add(0, anchors, torch.exp(xx - m[anchors]))
    per_anchor = m + torch.log(s)  # log(1 + sum_j exp(x_ij)); exactly 0 for an anchor without partners
    n = counts[targets].to(features.dtype)
    return scale * (per_anchor / n).sum()
