"""LDAM with optional deferred re-weighting (Cao et al., "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019).

Loss: CE(s * (z - m_y e_y), y) with m_k proportional to n_k^(-1/4), max_k m_k = ``max_m``
(``theory.ldam_margins``: the p = 1 case of the project's margin rule). On balanced data every margin
equals ``max_m``.

Normalised features and weights. LDAM is meant for cosine logits z_k = <h/||h||, w_k/||w_k||> scaled
by s = 30; the head's weights belong to the model, not to the loss. Two ways to get them:

1. Give the model a :class:`NormedLinear` head (the LDAM code's way); its logits are already cosines,
   and the loss needs nothing else (``normalize=False``).
2. Keep an ordinary head and pass it here: ``LDAMLoss(K, normalize=True, head=model.fc)``. The loss
   then recomputes the cosine logits from ``features`` and the head's current weight (the bias is
   ignored), so the head's weight still receives its gradient through the loss. The loss only keeps a
   reference: the head is not registered, not in the loss's ``state_dict`` and not moved by
   ``loss.to()``. The ``logits`` argument is then only shape-checked; accuracy computed from the raw
   logits is not the accuracy of the cosine classifier that is trained, so prefer way 1.

DRW: from epoch ``drw_epoch`` on (``on_epoch_start``), samples are weighted by the class-balanced
weights w_k = (1 - beta) / (1 - beta^{n_k}) normalised to sum K (Cui et al. 2019; beta = 0.9999),
through ``cross_entropy(weight=...)``, i.e. a weighted mean sum_i w_{y_i} l_i / sum_i w_{y_i}.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mr2.losses._common import LossBase, check_class_counts, check_real
from mr2_core.checks import bad
from theory import ldam_margins

__all__ = ["LDAMLoss", "NormedLinear", "class_balanced_weights"]

LDAM_SCALE = 30.0  # s of the LDAM code, for cosine logits


def drw_schedule(loss: nn.Module, epoch: int) -> None:
    """Deferred re-weighting (Cao et al. 2019): from ``loss.drw_epoch`` on, ``loss.class_weights``
    become the class-balanced weights of ``loss.class_counts`` with ``loss.beta``; before it, ones.

    Shared by LDAM-DRW and CE-DRW; the loss holds buffers ``class_counts`` (K,), ``class_weights`` (K,)
    and ``drw_active`` () and attributes ``drw_epoch`` (None: never) and ``beta``.
    """
    active = loss.drw_epoch is not None and epoch >= loss.drw_epoch
    loss.drw_active.fill_(active)
    if active:
        w = class_balanced_weights(loss.class_counts, loss.beta)
    else:
        w = torch.ones(loss.class_counts.shape[0], dtype=torch.float64)
    loss.class_weights.copy_(w.to(loss.class_weights))


def check_drw_epoch(drw_epoch: Any) -> int | None:
    """``drw_epoch`` as None or an int >= 0, or a ValueError."""
    if drw_epoch is not None and (
        isinstance(drw_epoch, bool) or not isinstance(drw_epoch, int) or drw_epoch < 0
    ):
        raise bad("drw_epoch", drw_epoch, "None or an integer epoch >= 0")
    return drw_epoch


def class_balanced_weights(class_counts: Tensor, beta: float) -> Tensor:
    """w_k = (1 - beta) / (1 - beta^n_k), normalised so that sum_k w_k = K (Cui et al., CVPR 2019).

    Args:
        class_counts: (K,) n_k > 0.
        beta: in [0, 1); 0 gives uniform weights.
    """
    n = class_counts.to(torch.float64)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return w / w.sum() * n.shape[0]


class NormedLinear(nn.Module):
    """Cosine-similarity head: logits z_k = <h / ||h||, w_k / ||w_k||>, no bias (LDAM's head).

    Args:
        in_features: d.
        out_features: K.
    Shapes: (B, d) -> (B, K); the weight has nn.Linear's layout (K, d).

    Initialised as the LDAM authors' ``NormedLinear``: entries uniform in [-1, 1], then every class
    weight w_k rescaled to norm 1. (nn.Linear's Kaiming init starts at norms ~0.58 and, without a
    warm-up, let the head norm blow up in our runs.)
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            self.weight.div_(self.weight.norm(dim=1, keepdim=True))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


def _head_weight(head: Any) -> Tensor:
    weight = getattr(head, "weight", head)
    if not isinstance(weight, Tensor):
        raise bad("head", head, "an nn.Linear-like module with .weight (K, d), or that weight tensor")
    return weight


class LDAMLoss(LossBase):
    """LDAM(-DRW).

    The per-class margins m_k (K,) float64 are the buffer ``margins``; after each call ``last`` holds
    the loss and the margins (``margins``, ``margin_min``, ``margin_max``), as ``MR2Loss`` reports its own.

    Args:
        num_classes: K >= 2.
        class_counts: (K,) training examples per class; None means balanced (all margins = max_m, the
            LDAM authors' behaviour on balanced data), with a warning: on imbalanced data pass the counts.
        max_m: the largest margin (0.5 in LDAM).
        s: logit scale; None means 30 (LDAM's value for cosine logits) when ``normalize=True`` and
            1 otherwise. With a :class:`NormedLinear` head and ``normalize=False``, pass ``s=30``.
        normalize: compute cosine logits from ``features`` and ``head`` (module docstring).
        head: the model's linear head (module with ``.weight`` of shape (K, d)) or that weight.
        drw_epoch: first epoch (0-based) of deferred re-weighting; None disables DRW.
        beta: class-balanced weighting's beta in [0, 1) (0.9999 in LDAM-DRW).
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step).
        check_every: check on every N-th call only (None: every call; ``mr2.losses._common``).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: Any = None,
        max_m: float = 0.5,
        s: float | None = None,
        normalize: bool = False,
        head: Any = None,
        drw_epoch: int | None = None,
        beta: float = 0.9999,
        check_values: bool = True,
        check_every: int | None = None,
    ) -> None:
        super().__init__(num_classes, check_values=check_values, check_every=check_every)
        K = self.num_classes
        if class_counts is None:  # legitimate on balanced data, a silent mistake on imbalanced data
            warnings.warn(
                f"LDAMLoss: class_counts=None gives all {K} classes the same margin max_m={max_m} (LDAM on "
                "balanced data); pass class_counts, the (K,) training examples per class, for LDAM's "
                "n_k^(-1/4) margins",
                UserWarning,
                stacklevel=2,
            )
        counts = (
            torch.ones(K, dtype=torch.float64)
            if class_counts is None
            else check_class_counts(class_counts, K)
        )
        self.max_m = check_real("max_m", max_m, low=0.0, low_open=True)
        self.normalize = bool(normalize)
        if s is None:
            s = LDAM_SCALE if self.normalize else 1.0
        self.s = check_real("s", s, low=0.0, low_open=True)
        if self.normalize:
            if head is None:
                raise bad("head", head, "the model's linear head (or its weight) when normalize=True")
            w = _head_weight(head)
            if w.ndim != 2 or w.shape[0] != K:
                raise bad("head", head, f"a weight of shape ({K}, d), got {tuple(w.shape)}")
        elif head is not None:
            raise bad("head", head, "None unless normalize=True (the head is only used to normalise)")
        self._head = (head,)  # a tuple: keep a reference without registering the head's parameters
        self.drw_epoch = check_drw_epoch(drw_epoch)
        self.beta = check_real("beta", beta, low=0.0, high=1.0, high_open=True)
        self.uses_features = self.normalize
        # float64: K numbers, cast to the logits' dtype per step; exact whatever the inputs' precision
        self.register_buffer("class_counts", counts)
        # NumPy in, float64 out: theory.ldam_margins casts torch input to the default dtype (float32)
        margins = torch.as_tensor(ldam_margins(counts.numpy(), max_margin=self.max_m), dtype=torch.float64)
        self.register_buffer("margins", margins)
        self.register_buffer("class_weights", torch.ones(K, dtype=torch.float64))
        self.register_buffer("drw_active", torch.zeros((), dtype=torch.bool))

    def on_epoch_start(self, epoch: int) -> None:
        """Switch the class-balanced weights on at ``drw_epoch`` (LDAM-DRW's schedule)."""
        drw_schedule(self, epoch)

    def _loss(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        if self.normalize:
            w = _head_weight(self._head[0])
            if w.shape[1] != features.shape[1]:
                raise bad(
                    "features", features, f"d = {w.shape[1]} to match the head's weight {tuple(w.shape)}"
                )
            z = F.normalize(features, dim=1) @ F.normalize(w.to(features.dtype), dim=1).t()
        else:
            z = logits
        m = self.margins.to(z.dtype)[targets].unsqueeze(1)
        z = z.scatter_add(1, targets.unsqueeze(1), -m)
        # All-ones weights before DRW give the plain mean; always passing them avoids reading the
        # drw_active flag back from the device every step.
        loss = F.cross_entropy(self.s * z, targets, weight=self.class_weights.to(z.dtype))
        # the margins, as MR2Loss reports its own: the training log records their range
        m = self.margins
        self.last = {"loss": loss.detach(), "margins": m, "margin_min": m.min(), "margin_max": m.max()}
        return loss

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, max_m={self.max_m}, s={self.s}, normalize={self.normalize}, "
            f"drw_epoch={self.drw_epoch}, beta={self.beta}"
        )
