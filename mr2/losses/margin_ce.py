"""Cross-entropy with per-sample logit margins, with a fused backward.

loss = (1/B) sum_i CE(s_i, y_i) with s_i = r_i z_i - m_i e_{y_i}: ``r`` is a per-sample logit scale
(MR2's temperature form uses r_i = 1 / gamma_{y_i}) and ``m`` a per-sample target-logit shift (the
additive / LDAM form uses m_i = gamma_{y_i}). The scales and shifts are constants for autograd.

``F.cross_entropy(z / t, y)`` runs the division, log-softmax and NLL forward and four B x K kernels
backward (NLL's zero-filled gradient, the log-softmax backward, the division's backward and its
allocation). Here the forward keeps exp(s - max) (computed in place) and the row sums, and the
gradient is written in closed form, d loss / d z_ij = r_i (softmax(s_i)_j - [j = y_i]) / B: one
multiply and one scatter. At K = 1000 this costs what plain ``F.cross_entropy`` costs, where the
division route costs about 40% more.

With few classes the B x K tensors are small, every operation costs its fixed overhead, and PyTorch's
fused ``cross_entropy`` on the scaled and shifted logits (three operations forward, three backward)
beats the ten of the hand-written forward: on a CPU up to ``FUSED_MAX_CLASSES_CPU`` classes (measured,
CPU time, one thread: 93 against 137 us at K = 10, 121 against 224 us at K = 100, B = 128; at K = 1000,
B = 256, 1211 against 754 us), and always on a GPU, where fewer kernels is what counts. Both routes
give the same loss and gradient up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["margin_cross_entropy", "FUSED_MAX_CLASSES_CPU"]

FUSED_MAX_CLASSES_CPU = 128  # the fused route up to this K on a CPU (module docstring)


class _MarginCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, scale, shift):  # noqa: ANN001
        y = targets.unsqueeze(1)
        s = logits * scale.unsqueeze(1) if scale is not None else logits.clone()
        if shift is not None:
            s.scatter_add_(1, y, -shift.unsqueeze(1))
        s_y = s.gather(1, y).squeeze(1)
        top = s.amax(dim=1, keepdim=True)
        e = s.sub_(top).exp_()  # in place: s is a temporary; e_ij = exp(s_ij - max_j s_ij) <= 1
        sum_e = e.sum(dim=1)
        # CE_i = log sum_j exp(s_ij) - s_iy = log(sum_e_i) - (s_iy - max_i): no overflow, no cancellation
        loss = (torch.log(sum_e) - (s_y - top.squeeze(1))).mean()
        ctx.save_for_backward(e, sum_e, targets, scale if scale is not None else sum_e.new_ones(()))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001
        e, sum_e, targets, scale = ctx.saved_tensors
        f = (grad_out / e.shape[0]) * scale.expand_as(sum_e)  # (B,): r_i g / B
        # softmax * f - onehot * f, written into a fresh tensor (e stays valid for a second backward
        # only through retain_graph, which once_differentiable does not promise anyway)
        grad = e * (f / sum_e).unsqueeze(1)
        grad.scatter_add_(1, targets.unsqueeze(1), -f.unsqueeze(1))
        return grad, None, None, None


def margin_cross_entropy(
    logits: Tensor, targets: Tensor, *, scale: Tensor | None = None, shift: Tensor | None = None
) -> Tensor:
    """Mean CE of s_i = scale_i * z_i - shift_i * e_{y_i} (module docstring).

    Args:
        logits: (B, K) z, floating.
        targets: (B,) int64 labels.
        scale: (B,) per-sample logit scale r_i, or None for 1 (not differentiated).
        shift: (B,) per-sample target-logit shift m_i, or None for 0 (not differentiated).

    Returns:
        0-dim tensor, first-order differentiable in ``logits``.
    """
    scale = None if scale is None else scale.detach().to(logits.dtype)
    shift = None if shift is None else shift.detach().to(logits.dtype)
    if logits.device.type != "cpu" or logits.shape[1] <= FUSED_MAX_CLASSES_CPU:
        s = logits if scale is None else logits * scale.unsqueeze(1)
        if shift is not None:
            s = s.scatter_add(1, targets.unsqueeze(1), -shift.unsqueeze(1))
        return F.cross_entropy(s, targets)
    return _MarginCE.apply(logits, targets, scale, shift)
