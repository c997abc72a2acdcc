"""mr2.losses: MR2 and its baselines behind one small interface (``docs/CONTRACTS.md``).

Every loss is an ``nn.Module`` called as ``loss(logits (B, K), features (B, d), targets (B,))`` that
returns a scalar, has ``on_epoch_start(epoch)`` (a no-op unless it has a schedule) and keeps the last
step's components in ``loss.last``. :func:`make_loss` builds one by name; see ``docs/losses.md``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from common.checks import bad
from common.contracts import LOSSES
from mr2.losses._common import LossBase
from mr2.losses.cdb import CDBLoss
from mr2.losses.ce import CrossEntropyLoss
from mr2.losses.focal import FocalLoss
from mr2.losses.ldam import LDAMLoss, NormedLinear
from mr2.losses.mr2_loss import MR2Loss

__all__ = [
    "LOSS_NAMES",
    "make_loss",
    "LossBase",
    "MR2Loss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LDAMLoss",
    "NormedLinear",
    "CDBLoss",
]

LOSS_NAMES = LOSSES

# name -> (class, options fixed by the name)
_REGISTRY: dict[str, tuple[type[LossBase], dict[str, Any]]] = {
    "ce": (CrossEntropyLoss, {}),
    "focal": (FocalLoss, {}),
    "ldam": (LDAMLoss, {}),
    "cdb": (CDBLoss, {}),
    "mr2": (MR2Loss, {}),
    "mr2-logit": (MR2Loss, {"lambda_rep": 0.0}),  # ablation: logit margins only
    "mr2-rep": (MR2Loss, {"logit_margins": False}),  # ablation: representation margin only
}


def make_loss(name: str, num_classes: int, *, class_counts: Any = None, **options: Any) -> nn.Module:
    """Build the loss called ``name`` (one of :data:`LOSS_NAMES`) for ``num_classes`` classes.

    Args:
        name: ``"ce"``, ``"focal"``, ``"ldam"``, ``"cdb"``, ``"mr2"``, ``"mr2-logit"`` or ``"mr2-rep"``.
        num_classes: K >= 2.
        class_counts: (K,) training examples per class; used by LDAM (margins, DRW weights) and
            ignored by the others.
        **options: keyword arguments of that loss's class (e.g. ``lambda_rep``, ``norm_p`` for MR2,
            ``label_smoothing`` for CE); an option the loss does not take raises ValueError.
    """
    if name not in _REGISTRY:
        raise bad("name", name, f"one of {', '.join(LOSS_NAMES)}")
    cls, fixed = _REGISTRY[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_classes")]
    for key in options:
        if key not in accepted or key in fixed:
            valid = [p for p in accepted if p not in fixed and p != "class_counts"]
            raise bad(key, options[key], f"an option of loss {name!r}: one of {', '.join(valid)}")
    kwargs = {**options, **fixed}
    if "class_counts" in accepted:
        kwargs["class_counts"] = class_counts
    return cls(num_classes, **kwargs)
