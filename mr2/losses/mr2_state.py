"""The constants and the per-class state updates of ``MR2Loss`` (``mr2.losses.mr2_loss``).

Plain functions on the loss's buffers, called by ``MR2Loss.update_statistics``: the overflow guard's
scale (``overflow_guard``), which batch statistics are finite (``finite_statistics``), folding them into
the per-class EMAs (``fold_class_statistics``), the projected class variances of the ``"oracle"``
statistic (``update_projected_variances``) and the warning about a non-finite batch statistic
(``warn_non_finite``). ``mr2.losses.mr2_loss`` re-exports the constants.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from mr2.losses.class_stats import BatchClassStats, DenseClassStats, overflow_scale, overflow_scale_tensor
from mr2.losses.margin_statistics import projected_class_variances

__all__ = [
    "LAYOUTS",
    "DENSE_MAX_CLASSES_CPU",
    "REP_TARGETS",
    "SPREAD_FLOOR",
    "REP_TEMPERATURE_PER_DIM",
    "REP_SCALE_PER_DIM",
    "overflow_guard",
    "finite_statistics",
    "fold_class_statistics",
    "update_projected_variances",
    "warn_non_finite",
]

LAYOUTS = ("auto", "compact", "dense")
# layout="auto" on a CPU: the fixed-shape route up to this many classes. With few classes the pairs
# are many (about B^2 / (2K) with balanced labels, above the B^2 / 32 of DENSE_PAIR_FRACTION below
# K = 16), the compact route reads their distances off the B x B Gram matrix anyway, and the fixed
# shapes cost the same arithmetic in fewer operations (no sort, no pair list). Measured in one
# process (CPU time, one thread, docs/losses.md): the loss alone is 4-15% faster at K = 10, about
# even at K = 20, slower from K = 32 (1.3-3x at K = 100-1000).
DENSE_MAX_CLASSES_CPU = 16
REP_TARGETS = ("mean", "zero")
# Spreads are floored at SPREAD_FLOOR * max_k a_k before the margin rule: a class whose features are
# all zero (dead ReLUs) would otherwise get gamma = 0 and a division by zero in the temperature form.
# The floor changes gamma_k only for classes ~7 orders of magnitude below the widest class.
SPREAD_FLOOR = 1e-7
REP_TEMPERATURE_PER_DIM = 10.0  # official: exp((D - 2 sbar) / (10 d))
REP_SCALE_PER_DIM = 0.1  # official: rep * d / 10 / K


def overflow_guard(
    h: Tensor, norm_p: float, *, feature_absmax: float | None, sync: bool
) -> tuple[float | Tensor | None, bool]:
    """``(scale, guard)`` for the statistics of features ``h``: the overflow guard's power-of-two
    scale (``class_stats``), and whether the statistics may still be non-finite (check them).
    ``feature_absmax``: max |h| when the caller already read it back, else None."""
    if feature_absmax is not None and not sync:
        # host path: features below the overflow threshold (every realistic scale) give finite
        # statistics by construction, so neither a rescaling nor a finiteness check is needed
        scale = overflow_scale(feature_absmax, norm_p, h.dtype)
        return scale, scale is not None
    return overflow_scale_tensor(h, norm_p, sync=sync), True  # exactly 1 unless needed


def finite_statistics(stats: BatchClassStats | DenseClassStats, vector: bool) -> Tensor:
    """Which entries of a batch's class statistics are finite: a_k = ||mu_k||_p^2 + s_k^2 and, for
    the vector statistics (``vector``), every entry of the class mean."""
    # the sum: a_k itself must be finite; x - x == 0 is isfinite(x) in two operations, not four
    a_k = stats.mean_norm + stats.spread
    finite = (a_k - a_k) == 0
    if vector:
        finite &= torch.isfinite(stats.means).all(dim=1)
    return finite


def fold_class_statistics(
    updates: list[tuple[Tensor, Tensor]],
    observations: Tensor,
    idx: Tensor | None,
    ok: Tensor | None,
    *,
    ema_decay: float,
    guard: bool,
) -> None:
    """Fold a batch's statistics into the per-class EMAs, in place.

    ``updates``: (EMA buffer, batch value) pairs; ``observations`` (K,) int64 counts the batches that
    held each class. ``idx``: the classes of the batch values (compact route), or None when entry k is
    class k (dense route, every class). ``ok``: which entries to fold (None: all of them); a class left
    out keeps its EMAs and its count exactly. ``guard``: the batch values may be inf (dense route).
    A class's first observation initialises its EMA; later ones give decay * ema + (1 - decay) * new.
    """
    ref = updates[0][0]
    seen_before = observations if idx is None else observations.index_select(0, idx)
    # weight of the new value: 1 on a class's first observation (initialise), 1 - decay after
    w = torch.where(seen_before == 0, ref.new_ones(()), ref.new_full((), 1.0 - ema_decay))
    if idx is None:  # dense: every class, in place; a class left out has weight 0
        w = torch.where(ok, w, 0.0)
        for ema, new in updates:
            if guard:  # a skipped class's statistic may be inf: 0 * inf would be NaN
                new = torch.where(ok.view(-1, *[1] * (new.ndim - 1)), new, ema)
            ema.add_((w if ema.ndim == 1 else w[:, None]) * (new - ema))  # = decay ema + (1 - decay) new
        observations.add_(ok)
        return
    olds = [ema.index_select(0, idx) for ema, _ in updates]
    if ok is not None:
        # a skipped class gets weight 0 on its own old value: exactly unchanged, and no inf * 0
        w = torch.where(ok, w, 0.0)
        updates = [
            (ema, torch.where(ok.view(-1, *[1] * (new.ndim - 1)), new, old))
            for (ema, new), old in zip(updates, olds, strict=True)
        ]
    for (ema, new), old in zip(updates, olds, strict=True):
        wk = w if ema.ndim == 1 else w[:, None]
        ema.index_copy_(0, idx, old + wk * (new - old))  # = decay * old + (1 - decay) * new
    observations.index_copy_(0, idx, seen_before + (1 if ok is None else ok.long()))


def update_projected_variances(
    h: Tensor,
    targets: Tensor,
    *,
    class_means: Tensor,
    proj_var: Tensor,
    pair_observations: Tensor,
    observations: Tensor,
    ema_decay: float,
    sync: bool,
) -> None:
    """Fold the batch's projected class variances into ``proj_var`` (K, K), in place (``"oracle"``).

    Directions: ``class_means``, the class-mean EMA after this batch's update. Entry (k, j) is updated
    when class k is in the batch, class j has a mean (``observations`` > 0), j != k, the two means
    differ and the value is finite; its first observation (``pair_observations``) initialises it,
    later ones are EMA'd with ``ema_decay``.
    """
    var, counts = projected_class_variances(h, targets, class_means, sync=sync)
    seen = observations > 0
    K = observations.shape[0]
    valid = (counts > 0)[:, None] & seen[None, :] & ~torch.eye(K, dtype=torch.bool, device=h.device)
    valid &= torch.isfinite(var.float()) & (var > 0)
    new = torch.where(valid, var.to(proj_var.dtype), proj_var)
    w = torch.where(pair_observations == 0, proj_var.new_ones(()), proj_var.new_full((), 1.0 - ema_decay))
    proj_var.add_(torch.where(valid, w, 0.0) * (new - proj_var))
    pair_observations.add_(valid)


def warn_non_finite(
    classes: Tensor | None, ok: Tensor, feature_absmax: float | None, *, norm_p: float, dtype: torch.dtype
) -> None:
    """Warn (``RuntimeWarning``) about the entries of ``ok`` that are False: classes whose batch
    statistic is not finite in ``dtype``. ``classes``: the class of each entry (None: entry k is
    class k). The warning points at the caller (``MR2Loss.update_statistics``)."""
    bad_mask = ~ok
    bad_classes = (torch.nonzero(bad_mask).squeeze(1) if classes is None else classes[bad_mask]).tolist()
    if not bad_classes:  # one small read-back, only on checked calls of the guarded path
        return
    size = "" if feature_absmax is None else f" (max |h| = {feature_absmax:.3g})"
    warnings.warn(
        f"MR2Loss: the batch statistics ||mu_k||_{norm_p:g}^2 + s_k^2 of classes {bad_classes[:10]}"
        f"{' ...' if len(bad_classes) > 10 else ''} are not finite in {dtype}{size}; "
        "they were left out of the EMA, which keeps its previous values. Rescale or normalise the "
        "features, use a smaller norm_p, or keep the statistics in float64 with loss.double().",
        RuntimeWarning,
        stacklevel=2,
    )
