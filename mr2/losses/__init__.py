"""mr2.losses: MR2 and its baselines behind one small interface (``docs/CONTRACTS.md``).

Every loss is an ``nn.Module`` called as ``loss(logits (B, K), features (B, d), targets (B,))`` that
returns a scalar, has ``on_epoch_start(epoch)`` (a no-op unless it has a schedule) and keeps the last
step's components in ``loss.last``. :func:`make_loss` builds one by name; see ``docs/losses.md``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from mr2.losses._common import LossBase
from mr2.losses.cdb import CDBLoss
from mr2.losses.ce import CrossEntropyLoss
from mr2.losses.focal import FocalLoss
from mr2.losses.ldam import LDAMLoss, NormedLinear
from mr2.losses.mr2_loss import MR2Loss
from mr2_core.checks import bad
from mr2_core.contracts import LOSSES, METHODS

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
    "OFFICIAL_FIXED",
    "OFFICIAL_DEFAULTS",
    "loss_option_types",
]

LOSS_NAMES = LOSSES

# What the released code (github.com/BeierZhu/MR2, MRF-Imagenet/src/mrf_loss.py and the fine-tuning
# script that builds it as ``MRFLoss()``) fixes: L5 statistics, the cube-root rule with mean 1 applied
# as a per-sample temperature, and the paper's statistic.
OFFICIAL_FIXED: dict[str, Any] = {
    "norm_p": 5.0,
    "margin_form": "temperature",
    "mean_margin": 1.0,
    "statistic": "second_moment",
    "exponent": 1.0 / 3.0,
    "logit_margins": True,
}
# ... and what its ImageNet script family uses, which may be changed: 1000 statistic slots whatever K
# is, EMA decay 0.999, representation target 2 sbar, lambda 0.1. The CIFAR script family is
# ``stat_slots=K, ema_decay=0.9, rep_target="zero"`` (docs/losses.md).
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "stat_slots": 1000,
    "ema_decay": 0.999,
    "rep_target": "mean",
    "lambda_rep": 0.1,
}

# name -> (class, options fixed by the name, defaults the caller may override)
_REGISTRY: dict[str, tuple[type[LossBase], dict[str, Any], dict[str, Any]]] = {
    "ce": (CrossEntropyLoss, {}, {}),
    "focal": (FocalLoss, {}, {}),
    "ldam": (LDAMLoss, {}, {}),
    "cdb": (CDBLoss, {}, {}),
    "mr2": (MR2Loss, {}, {}),
    "mr2-logit": (MR2Loss, {"lambda_rep": 0.0}, {}),  # ablation: logit margins only
    "mr2-rep": (MR2Loss, {"logit_margins": False}, {}),  # ablation: representation margin only
    "mr2-official": (MR2Loss, OFFICIAL_FIXED, OFFICIAL_DEFAULTS),  # what the released code does
}


def make_loss(name: str, num_classes: int, *, class_counts: Any = None, **options: Any) -> nn.Module:
    """Build the loss called ``name`` (one of :data:`LOSS_NAMES`, or a method of the registry
    ``mr2_core.contracts.METHODS``) for ``num_classes`` classes.

    A method name builds its loss with the method's ``loss.<option>`` overrides (``options`` override
    them in turn); its config-level overrides (head, model, learning rate, ...) belong to the training
    run and are not applied here. E.g. ``make_loss("mr2-oracle-additive", 10)`` is
    ``make_loss("mr2", 10, statistic="oracle", margin_form="additive", exponent=1.0)``.

    Args:
        name: ``"ce"``, ``"focal"``, ``"ldam"``, ``"cdb"``, ``"mr2"``, ``"mr2-logit"``, ``"mr2-rep"`` or
            ``"mr2-official"`` (the released code's configuration: :data:`OFFICIAL_FIXED`, and
            :data:`OFFICIAL_DEFAULTS`, which ``options`` may override; docs/losses.md).
        num_classes: K >= 2.
        class_counts: (K,) training examples per class; used by LDAM (margins, DRW weights) and
            by CE (DRW weights), ignored by the others.
        **options: keyword arguments of that loss's class (e.g. ``lambda_rep``, ``norm_p``,
            ``statistic`` for MR2, ``label_smoothing`` for CE); an option the loss does not take, or
            one the name fixes, raises ValueError.
    """
    if name not in _REGISTRY and name in METHODS:
        m = METHODS[name]
        from_method = {k[len("loss.") :]: v for k, v in m.options.items() if k.startswith("loss.")}
        return make_loss(m.loss, num_classes, class_counts=class_counts, **{**from_method, **options})
    if name not in _REGISTRY:
        raise bad("name", name, f"one of {', '.join(LOSS_NAMES)} or a method of {', '.join(METHODS)}")
    cls, fixed, defaults = _REGISTRY[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_classes")]
    for key in options:
        if key not in accepted or key in fixed:
            valid = [p for p in accepted if p not in fixed and p != "class_counts"]
            raise bad(key, options[key], f"an option of loss {name!r}: one of {', '.join(valid)}")
    kwargs = {**defaults, **options, **fixed}
    if "class_counts" in accepted:
        kwargs["class_counts"] = class_counts
    return cls(num_classes, **kwargs)


def loss_option_types(name: str) -> dict[str, str]:
    """The options ``make_loss(name, ...)`` takes, each with its declared type as written in the
    loss's signature (e.g. ``{"lambda_rep": "float", "drw_epoch": "int | None"}``): what
    ``--set loss.<option>=VALUE`` parses its text into (``mr2.train.config.parse_text``). Options the
    name fixes (``mr2-official``'s) and ``class_counts`` (given by the training loop) are left out."""
    if name not in _REGISTRY:
        raise bad("name", name, f"one of {', '.join(LOSS_NAMES)}")
    cls, fixed, _ = _REGISTRY[name]
    params = inspect.signature(cls.__init__).parameters
    skip = {"self", "num_classes", "class_counts", *fixed}
    return {p: str(params[p].annotation) for p in params if p not in skip}
