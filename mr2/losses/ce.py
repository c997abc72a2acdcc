"""Cross-entropy, with optional label smoothing and deferred re-weighting (the reference every other
loss is compared to; CE-DRW is LDAM-DRW's re-weighting without its margins)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mr2.losses._common import LossBase, check_class_counts, check_real
from mr2.losses.ldam import check_drw_epoch, drw_schedule

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(LossBase):
    """Mean cross-entropy over the batch; features are accepted (shared interface) and ignored.

    Args:
        num_classes: K >= 2.
        label_smoothing: epsilon in [0, 1): the target distribution is (1 - eps) e_y + eps / K
            (Szegedy et al. 2016), as in ``torch.nn.functional.cross_entropy``.
        class_counts: (K,) training examples per class, for DRW; None means balanced.
        drw_epoch: first epoch (0-based) of deferred re-weighting with class-balanced weights
            (Cao et al. 2019, "CE-DRW"); None (default) disables it.
        beta: class-balanced weighting's beta in [0, 1) (0.9999, as in LDAM-DRW).
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step).
        check_every: check on every N-th call only (None: every call; ``mr2.losses._common``).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        label_smoothing: float = 0.0,
        class_counts: Any = None,
        drw_epoch: int | None = None,
        beta: float = 0.9999,
        check_values: bool = True,
        check_every: int | None = None,
    ) -> None:
        super().__init__(num_classes, check_values=check_values, check_every=check_every)
        self.label_smoothing = check_real(
            "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True
        )
        self.drw_epoch = check_drw_epoch(drw_epoch)
        self.beta = check_real("beta", beta, low=0.0, high=1.0, high_open=True)
        if self.drw_epoch is not None:  # buffers only when re-weighting: plain CE keeps its state_dict
            k = self.num_classes
            counts = (
                torch.ones(k, dtype=torch.float64)
                if class_counts is None
                else check_class_counts(class_counts, k)
            )
            self.register_buffer("class_counts", counts)
            self.register_buffer("class_weights", torch.ones(k, dtype=torch.float64))
            self.register_buffer("drw_active", torch.zeros((), dtype=torch.bool))

    def on_epoch_start(self, epoch: int) -> None:
        if self.drw_epoch is not None:
            drw_schedule(self, epoch)

    def _loss(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        weight = self.class_weights.to(logits.dtype) if self.drw_epoch is not None else None
        loss = F.cross_entropy(logits, targets, weight=weight, label_smoothing=self.label_smoothing)
        self.last = {"loss": loss.detach(), "ce": loss.detach()}
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, label_smoothing={self.label_smoothing}, "
            f"drw_epoch={self.drw_epoch}, beta={self.beta}"
        )
