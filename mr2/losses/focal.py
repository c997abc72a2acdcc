"""Focal loss (Lin et al., ICCV 2017), NaN-safe: FL = (1 - p_y)^g * CE with p_y = exp(-CE).

The LDAM/MR2 research code computes ``p = exp(-ce); (1 - p) ** gamma * ce`` on the per-sample CE.
CE can come out of log-softmax slightly negative (about -1e-7 in float32), so 1 - p < 0 and a
non-integer power gives NaN; with gamma < 1 the backward also hits 0 ** (gamma - 1) = inf at p = 1.
Here CE is clamped at 0, 1 - p is taken as -expm1(-CE) (accurate near 0) and floored at the smallest
normal number, so value and gradient stay finite and equal the formula wherever it is defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mr2.losses._common import LossBase, check_real

__all__ = ["FocalLoss", "focal_from_ce"]


def focal_from_ce(ce: Tensor, gamma: float) -> Tensor:
    """Per-sample focal loss (1 - p)^gamma * ce from per-sample CE (any shape), p = exp(-ce)."""
    ce = ce.clamp_min(0.0)
    if gamma == 0.0:
        return ce
    one_minus_p = (-torch.expm1(-ce)).clamp_min(torch.finfo(ce.dtype).tiny)
    return one_minus_p.pow(gamma) * ce


class FocalLoss(LossBase):
    """Mean over the batch of the per-sample focal loss; features are accepted and ignored.

    Args:
        num_classes: K >= 2.
        gamma: focusing parameter >= 0 (2 in Lin et al.; 0 is cross-entropy).
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step).
        check_every: check on every N-th call only (None: every call; ``mr2.losses._common``).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        gamma: float = 2.0,
        check_values: bool = True,
        check_every: int | None = None,
    ) -> None:
        super().__init__(num_classes, check_values=check_values, check_every=check_every)
        self.gamma = check_real("gamma", gamma, low=0.0)

    def _loss(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, targets, reduction="none")
        loss = focal_from_ce(ce, self.gamma).mean()  # per sample first, reduce afterwards
        self.last = {"loss": loss.detach(), "ce": ce.detach().mean()}
        return loss

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, gamma={self.gamma}"
