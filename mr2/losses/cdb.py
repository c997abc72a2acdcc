"""Class-wise difficulty-balanced cross-entropy (CDB-CE; Sinha, Ohashi and Nakamura, ACCV 2020).

Each sample's CE is weighted by its class's difficulty: w_k proportional to d_k^tau with
d_k = 1 - acc_k, normalised so that sum_k w_k = K, and the loss is the plain batch mean
(1/B) sum_i w_{y_i} CE_i, as in the authors' code (``CDB_loss`` with ``reduction='none'`` followed by
``torch.mean``). ``tau="dynamic"`` is their rule tau = sigmoid((1 - min d) / (1 - max d + 0.01)).

Running per-class accuracy. In training mode every batch adds its per-class hits and counts
(``bincount``) to epoch counters; ``on_epoch_start`` turns the previous epoch's counters into
accuracies (classes without samples keep their old value; under torch.distributed the counters are
summed over ranks first) and recomputes the weights, which then stay fixed for the epoch. Before any
accuracy is known every class has d = 1, i.e. uniform weights. The CDB authors measure accuracy on a
held-out split: pass such accuracies with :meth:`CDBLoss.set_class_accuracy` instead.

Difficulties are floored at ``min_difficulty`` (default 1e-3) before the power, so a class at 100%
training accuracy keeps a small weight and an all-perfect epoch gives uniform weights instead of 0/0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mr2.losses._common import LossBase, all_reduce_sum, check_real
from mr2_core.checks import bad

__all__ = ["CDBLoss", "cdb_weights", "MIN_DIFFICULTY"]

MIN_DIFFICULTY = 1e-3


def cdb_weights(
    accuracy: Tensor, tau: float | str = "dynamic", min_difficulty: float = MIN_DIFFICULTY
) -> Tensor:
    """w_k = d_k^tau / sum_j d_j^tau * K with d_k = max(1 - acc_k, min_difficulty); shape (K,).

    ``tau="dynamic"``: tau = sigmoid((1 - min_k d_k) / (1 - max_k d_k + 0.01)) on the raw d_k.
    """
    d_raw = 1.0 - accuracy.to(torch.float64)
    if tau == "dynamic":
        bias = (1.0 - d_raw.min()) / (1.0 - d_raw.max() + 0.01)
        tau = float(torch.sigmoid(bias))
    w = d_raw.clamp_min(min_difficulty).pow(float(tau))
    return w / w.sum() * accuracy.shape[0]


class CDBLoss(LossBase):
    """CDB-CE with running per-class accuracy (module docstring); features are accepted and ignored.

    Args:
        num_classes: K >= 2.
        tau: exponent >= 0, or ``"dynamic"`` (the authors' default).
        min_difficulty: floor on 1 - acc_k, in (0, 1].
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step).
        check_every: check on every N-th call only (None: every call; ``mr2.losses._common``).

    Buffers: ``class_accuracy`` (K,), ``class_weights`` (K,), ``epoch_hits`` (K,), ``epoch_counts`` (K,).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        tau: float | str = "dynamic",
        min_difficulty: float = MIN_DIFFICULTY,
        check_values: bool = True,
        check_every: int | None = None,
    ) -> None:
        super().__init__(num_classes, check_values=check_values, check_every=check_every)
        if tau != "dynamic":
            tau = check_real("tau", tau, low=0.0)
        self.tau = tau
        self.min_difficulty = check_real("min_difficulty", min_difficulty, low=0.0, high=1.0, low_open=True)
        K = self.num_classes
        # float64: K numbers each (exact counts), cast to the logits' dtype per step
        self.register_buffer("class_accuracy", torch.zeros(K, dtype=torch.float64))
        self.register_buffer("class_weights", torch.ones(K, dtype=torch.float64))
        self.register_buffer("epoch_hits", torch.zeros(K, dtype=torch.float64))
        self.register_buffer("epoch_counts", torch.zeros(K, dtype=torch.float64))

    def set_class_accuracy(self, accuracy: Any) -> None:
        """Set acc_k (K,) in [0, 1] directly (e.g. from a validation split) and recompute the weights."""
        acc = torch.as_tensor(accuracy, dtype=torch.float64).detach().cpu()
        if acc.shape != (self.num_classes,) or not bool(torch.isfinite(acc).all()):
            raise bad("accuracy", accuracy, f"{self.num_classes} finite per-class accuracies")
        if bool((acc < 0).any()) or bool((acc > 1).any()):
            raise bad("accuracy", accuracy, "fractions in [0, 1]")
        self.class_accuracy.copy_(acc.to(self.class_accuracy))
        self._refresh_weights()

    def _refresh_weights(self) -> None:
        w = cdb_weights(self.class_accuracy, self.tau, self.min_difficulty)
        self.class_weights.copy_(w.to(self.class_weights))

    def on_epoch_start(self, epoch: int) -> None:
        """Fold the last epoch's training hits into per-class accuracy and refresh the weights."""
        all_reduce_sum(self.epoch_hits)
        all_reduce_sum(self.epoch_counts)
        seen = self.epoch_counts > 0
        acc = self.epoch_hits / self.epoch_counts.clamp_min(1.0)
        self.class_accuracy.copy_(torch.where(seen, acc, self.class_accuracy))
        self.epoch_hits.zero_()
        self.epoch_counts.zero_()
        self._refresh_weights()

    def _loss(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                hit = (logits.argmax(dim=1) == targets).to(self.epoch_hits.dtype)
                self.epoch_hits.index_add_(0, targets, hit)
                self.epoch_counts.index_add_(0, targets, torch.ones_like(hit))
        ce = F.cross_entropy(logits, targets, reduction="none")
        loss = (self.class_weights.to(ce.dtype)[targets] * ce).mean()
        self.last = {
            "loss": loss.detach(),
            "ce": ce.detach().mean(),
            "class_weights": self.class_weights.clone(),
        }
        return loss

    def extra_repr(self) -> str:
        tau = self.tau if isinstance(self.tau, str) else f"{self.tau:g}"
        return f"num_classes={self.num_classes}, tau={tau}, min_difficulty={self.min_difficulty:g}"
