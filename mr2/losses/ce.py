"""Cross-entropy, with optional label smoothing (the reference every other loss is compared to)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mr2.losses._common import LossBase, check_real

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(LossBase):
    """Mean cross-entropy over the batch; features are accepted (shared interface) and ignored.

    Args:
        num_classes: K >= 2.
        label_smoothing: epsilon in [0, 1): the target distribution is (1 - eps) e_y + eps / K
            (Szegedy et al. 2016), as in ``torch.nn.functional.cross_entropy``.
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step).
    """

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0, check_values: bool = True) -> None:
        super().__init__(num_classes, check_values=check_values)
        self.label_smoothing = check_real(
            "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True
        )

    def _loss(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        self.last = {"loss": loss.detach(), "ce": loss.detach()}
        return loss

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, label_smoothing={self.label_smoothing}"
