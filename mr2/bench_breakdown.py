"""Part 2 of ``mr2 bench train`` (``mr2.bench_train``): one training step split into its phases, each
timed apart, to show where MR²'s time goes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mr2.bench_train import Trainee

__all__ = ["PHASES", "breakdown_step"]

PHASES = ("forward", "check", "statistics", "margins", "logit term", "rep term", "loss backward",
          "model backward", "optimiser")  # fmt: skip


def breakdown_step(
    t: Trainee, x: Any, y: Any, clock: Callable[[], float], sync: Callable[[], None]
) -> dict[str, float]:
    """Milliseconds of each phase (``PHASES``) of one step of ``t``, timed apart (synchronised between
    phases). For MR2 the loss's forward is split as ``MR2Loss._loss`` composes it; other losses count
    their whole forward as ``logit term``."""
    import torch

    from mr2.losses import MR2Loss
    from mr2.losses._common import check_batch
    from mr2.losses.layout import batch_layout

    out: dict[str, float] = {}

    def lap(name: str, fn: Callable[[], Any]) -> Any:
        sync()
        t0 = clock()
        value = fn()
        sync()
        out[name] = out.get(name, 0.0) + 1e3 * (clock() - t0)
        return value

    loss_fn = t.loss
    with torch.autocast(x.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
        logits, feats = lap("forward", lambda: t.net(x))
    z, h = logits.detach().float().requires_grad_(), feats.detach().float().requires_grad_()
    if isinstance(loss_fn, MR2Loss):
        checked = loss_fn._values_checked_now()
        _, absmax = lap("check", lambda: check_batch(
            z, h, y, loss_fn.num_classes, need_features=True, check_values=checked,
            return_feature_absmax=True,
        ))  # fmt: skip
        dense = loss_fn.uses_dense_layout(z.device)

        def statistics_phase() -> Any:
            layout = None if dense else batch_layout(y)
            loss_fn.update_statistics(h, y, layout, feature_absmax=absmax, checked=checked, dense=dense)
            return layout

        layout = lap("statistics", statistics_phase)
        spreads, sbar = lap("margins", loss_fn.class_spreads)
        gamma = lap("margins", lambda: loss_fn.margins(spreads).to(torch.float32))
        ce = lap("logit term", lambda: loss_fn.logit_term(z, y, gamma))
        rep = lap("rep term", lambda: loss_fn.representation_term(h, y, sbar, layout=layout, dense=dense))
        total = ce + loss_fn.lambda_rep * rep
    else:  # LossBase.forward: the check, then the whole loss
        checked = loss_fn._values_checked_now()
        yy = lap("check", lambda: check_batch(
            z, h, y, loss_fn.num_classes, need_features=loss_fn.uses_features, check_values=checked,
        ))  # fmt: skip
        out["statistics"] = out["margins"] = out["rep term"] = 0.0
        total = lap("logit term", lambda: loss_fn._loss(z, h, yy))
    grads = lap("loss backward", lambda: torch.autograd.grad(total, (z, h), allow_unused=True))
    t.optimizer.zero_grad(set_to_none=True)
    pairs = [(o, g) for o, g in zip((logits, feats), grads, strict=True) if g is not None]
    lap(
        "model backward",
        lambda: torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs]),
    )
    lap("optimiser", t.optimizer.step)
    return out
