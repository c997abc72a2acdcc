"""MR2's representation margin, computed from the same-class pairs only (no loop over classes).

Definition (the official code's, ``MRFLoss.forward`` in github.com/BeierZhu/MR2): for every
class k with n_k samples in the batch,

    R_k = (1/n_k) sum_{i in k} log(1 + sum_{j in k, j != i} exp((||h_i - h_j||_2^2 - target) / T))

and the term is ``scale * sum_k R_k``, with target = 2 sbar, T = 10 d and scale = d / (10 K) in the
official code. A class with one sample has an empty inner sum, so it adds log(1) = 0: the sum may run
over every class, which is what makes the computation below exact for single-sample classes.

Cost. At K classes and batch B only about B^2 / (2K) unordered pairs share a class (about 33 at
B = 256, K = 1000). Sorting by label makes every class a contiguous run, and ``repeat_interleave``
over those runs enumerates exactly those pairs (``layout.same_class_pairs``), so the work follows
the pairs, not B^2: no dense B x B Gram matrix and no loop over classes.

When the pairs are many (few classes: P > B^2 / 32, e.g. K = 10 at B = 256), gathering a (P, d)
difference tensor costs more memory traffic than one B x B matrix product, so the squared distances are
then read off the Gram matrix, ||h_i||^2 + ||h_j||^2 - 2 <h_i, h_j> (clamped at 0 against rounding).
Both routes give the same pairs and the same value.

Stability. log(1 + sum_j exp(x_ij)) is a log-sum-exp over {0} and the x_ij; it is evaluated with the
per-anchor maximum m_i = max(0, max_j x_ij) (``scatter_reduce`` amax) as
m_i + log(exp(-m_i) + sum_j exp(x_ij - m_i)), so large distances cannot overflow. m_i is detached: the
value does not depend on it, and so neither does the gradient.

Fixed shapes (``representation_margin_masked``). Sorting, ``unique_consecutive`` and
``repeat_interleave`` give tensors whose sizes depend on the labels, and on a GPU every such size is
read back by the host, a synchronisation per step. The masked route keeps every shape fixed: the
distances of all B x B pairs from the Gram matrix, a (B, B) same-class mask (diagonal excluded), and a
masked log-sum-exp per row. It computes the same value (summed in another order) with no read-back;
n_k comes from the mask's row sums.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mr2.losses.layout import BatchLayout, batch_layout, same_class_pairs

__all__ = [
    "representation_margin",
    "representation_margin_masked",
    "representation_dtype",
    "check_representation_value",
    "DENSE_PAIR_FRACTION",
]

# Use the dense Gram route when the unordered pairs exceed this fraction of B^2 (measured crossover on
# CPU at B = 256, d = 512: about B^2 / 28; the gathered route's cost grows with P * d memory traffic).
DENSE_PAIR_FRACTION = 1.0 / 32.0


def representation_dtype(feature_absmax: float | None, d: int, dtype: torch.dtype) -> torch.dtype:
    """The dtype to compute the term in: ``dtype``, or float64 when its squared distances could
    overflow ``dtype``.

    A distance D_ij = ||h_i||^2 + ||h_j||^2 - 2 <h_i, h_j> and its partial sums are at most
    4 d max|h|^2; past the dtype's largest number they become inf, and inf - inf = NaN (from about
    max|h| = 2e18 at d = 16 in float32). ``feature_absmax`` None (the values are not checked at this
    call, so their size is unknown without a device sync): ``dtype``.
    """
    if feature_absmax is None or dtype == torch.float64:
        return dtype
    return dtype if 4.0 * d * feature_absmax**2 < torch.finfo(dtype).max else torch.float64


def check_representation_value(value: Tensor, feature_absmax: float, dtype: torch.dtype) -> None:
    """Refuse a term computed in float64 (``representation_dtype``) that ``dtype`` cannot hold: for
    huge features the value itself is beyond ``dtype``, and no finite answer would be right."""
    if not bool(torch.isfinite(value.to(dtype))):
        raise ValueError(
            f"features: max |h| = {feature_absmax:.3g} is too large for MR2's representation term in "
            f"{dtype} (its value {float(value):.3g} is beyond {torch.finfo(dtype).max:.3g}); normalise or "
            "rescale the features, set lambda_rep=0 (mr2-logit), or compute the loss in float64 "
            "(loss.double())"
        )


class _RepresentationMargin(torch.autograd.Function):
    """scale * sum_a R_a / n_a with an analytic backward.

    With x_ab = (D_ab - target) / T and the softmax weight w_ab = exp(x_ab) / (1 + sum_c exp(x_ac)),
    d out / d D_p = (scale / T) (w_ab / n_a + w_ba / n_b) =: c_p for the pair p = {a, b}, and
    d D_p / d h_a = 2 (h_a - h_b) = -d D_p / d h_b. Writing the backward by hand replaces a dozen
    small autograd nodes (each index's backward zero-fills a (B, d) buffer) by two ``index_add``.
    """

    @staticmethod
    def forward(ctx, features, first, second, n, target, temperature, scale, dense):  # noqa: ANN001
        B = features.shape[0]
        P = first.shape[0]
        if dense:
            sq = (features * features).sum(dim=1)
            gram = features @ features.t()
            dist = (
                sq.index_select(0, first) + sq.index_select(0, second) - 2.0 * gram[first, second]
            ).clamp_min(0.0)
            diff = None
        else:
            # two (P, d) temporaries, not four: every large allocation costs page faults (docs/losses.md)
            diff = features.index_select(0, first).sub_(features.index_select(0, second))
            dist = torch.linalg.vector_norm(diff, dim=1).square()
        x = (dist - target) / temperature
        anchors = torch.cat([first, second])
        xx = torch.cat([x, x])
        zero = features.new_zeros(B)
        # include_self with zeros: the "1 +" inside the log is exp(0), so the max starts at 0.
        m = zero.scatter_reduce(0, anchors, xx, reduce="amax", include_self=True)
        e = torch.exp(xx - m.index_select(0, anchors))
        s = torch.exp(-m) + zero.index_add(0, anchors, e)
        out = scale * ((m + torch.log(s)) / n).sum()  # log(1 + sum exp x) per anchor, / n_k
        wn = e / (s * n).index_select(0, anchors)
        coef = (scale / temperature) * (wn[:P] + wn[P:])  # d out / d D_p
        ctx.dense = dense
        ctx.save_for_backward(features, first, second, coef, diff if diff is not None else coef)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001
        features, first, second, coef, diff = ctx.saved_tensors
        c2 = 2.0 * grad_out * coef
        if ctx.dense:
            B = features.shape[0]
            w = features.new_zeros(B, B)
            w[first, second] = c2
            w[second, first] = c2
            grad = w.sum(dim=1, keepdim=True) * features - w @ features
        else:
            v = c2.unsqueeze(1) * diff
            grad = torch.zeros_like(features).index_add_(0, first, v).index_add_(0, second, v, alpha=-1.0)
        return grad, None, None, None, None, None, None, None


def representation_margin(
    features: Tensor,
    targets: Tensor,
    num_classes: int,
    *,
    target: Tensor | float,
    temperature: float,
    scale: float,
    dense: bool | None = None,
    layout: BatchLayout | None = None,
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
        dense: True reads the pair distances off the B x B Gram matrix, False gathers the (P, d)
            differences; None picks by the pair count (``DENSE_PAIR_FRACTION``).
        layout: ``batch_layout(targets)`` when the caller already has it.

    Returns:
        A 0-dim tensor in ``features``' dtype (first-order differentiable: no double backward).
    """
    B = features.shape[0]
    layout = batch_layout(targets) if layout is None else layout
    first, second = same_class_pairs(layout)
    n = layout.counts.index_select(0, layout.compact).to(features.dtype)
    if dense is None:
        dense = first.shape[0] > DENSE_PAIR_FRACTION * B * B
    if torch.is_tensor(target):
        target = target.detach()
    return _RepresentationMargin.apply(
        features, first, second, n, target, float(temperature), float(scale), bool(dense)
    )


class _MaskedRepresentationMargin(torch.autograd.Function):
    """scale * sum_i (1/n_i) log(1 + sum_j M_ij exp(x_ij)) over a (B, B) same-class mask M (diagonal
    excluded), with x_ij = (||h_i - h_j||^2 - target) / T; the analytic backward of
    ``_RepresentationMargin`` written for the full matrix: with W_ij = M_ij exp(x_ij - m_i) / (s_i n_i),
    C = (scale / T) (W + W^T) is d out / d D_ij for the unordered pair, and the gradient is
    2 (rowsum(C) h - C h).

    The "1 +" inside the log is the diagonal: row i holds x_ij at its same-class columns, 0 = log 1 at
    column i and -inf elsewhere, so one row-wise log-sum-exp gives log(1 + sum_j exp(x_ij)), with a
    row maximum m_i >= 0 that is finite even for a sample alone in its class."""

    @staticmethod
    def forward(ctx, features, targets, target, temperature, scale):  # noqa: ANN001
        other = targets.unsqueeze(1) != targets.unsqueeze(0)  # (B, B): a pair of different classes
        n = other.shape[1] - other.sum(dim=1, dtype=features.dtype)  # n_k of each sample's class
        sq = (features * features).sum(dim=1)
        # D_ij = ||h_i||^2 + ||h_j||^2 - 2 <h_i, h_j> in one addmm; then in place: one (B, B)
        # temporary holds D, x, the masked x and its exponentials
        x = torch.addmm(sq.unsqueeze(1) + sq.unsqueeze(0), features, features.t(), beta=1.0, alpha=-2.0)
        x = x.clamp_min_(0.0).sub_(target).div_(temperature).masked_fill_(other, -torch.inf)
        x.diagonal().zero_()
        m = x.amax(dim=1)
        e = x.sub_(m.unsqueeze(1)).exp_()
        s = e.sum(dim=1)
        out = scale * ((m + torch.log(s)) / n).sum()
        if ctx.needs_input_grad[0]:
            w = e.div_((s * n).unsqueeze(1))
            w.diagonal().zero_()  # the constant "1" has no gradient
            ctx.save_for_backward(features, (w + w.t()).mul_(scale / temperature))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001
        features, coef = ctx.saved_tensors
        c2 = coef * (2.0 * grad_out)
        grad = c2.sum(dim=1, keepdim=True) * features - c2 @ features
        return grad, None, None, None, None


def representation_margin_masked(
    features: Tensor, targets: Tensor, *, target: Tensor | float, temperature: float, scale: float
) -> Tensor:
    """``scale * sum_k R_k`` (module docstring) with fixed shapes: no sort, no pair list, no read-back.

    Args and units as in :func:`representation_margin` (``num_classes`` is not needed: only the
    labels' equalities matter). Costs O(B^2 d) time and O(B^2) memory whatever the number of
    classes, which is what a GPU wants; on a CPU with many classes the pair route is cheaper.

    Returns:
        A 0-dim tensor in ``features``' dtype (first-order differentiable: no double backward).
    """
    if torch.is_tensor(target):
        target = target.detach()
    return _MaskedRepresentationMargin.apply(features, targets, target, float(temperature), float(scale))
