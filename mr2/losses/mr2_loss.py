"""MR2: class-sensitive logit margins plus a representation margin (Zhu et al., ICLR 2026).

Per training step (the official ``MRFLoss.forward`` order: statistics first, then margins):

1. **Statistics.** Per-class ||mu_k||_p^2 and s_k^2 = mean_i ||h_i - mu_k||_p^2 of the batch
   (``class_stats``; all-reduced under torch.distributed), folded into per-class EMAs: a class's first
   observation initialises its EMA, absent classes are left alone, and nothing changes in ``eval()``.
2. **Margins.** a_k = EMA(||mu_k||_p^2) + EMA(s_k^2) and gamma = ``theory.optimal_margins(a,
   mean_margin=cbar)``, i.e. gamma_k = K cbar a_k^(1/3) / sum_j a_j^(1/3) (the bound's optimum at
   p = 2, docs/method.md, Derivation). The margins are constants for autograd, as in the official code.
3. **Logit term.** ``"temperature"`` (official): CE(z_i / gamma_{y_i}, y_i), every logit of sample i
   divided by its class's margin. ``"additive"`` (LDAM form): CE(z_i - gamma_{y_i} e_{y_i}, y_i).
4. **Representation term** (``representation``): (d / (10 K)) sum_k R_k with target 2 sbar
   (``rep_target="mean"``, sbar = the mean EMA spread over classes) or 0 (``"zero"``, the official
   CIFAR variant), temperature 10 d by default.
5. loss = logit term + ``lambda_rep`` * representation term.

Deliberate differences from the official code are listed in ``docs/losses.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mr2.losses._common import LossBase, check_in, check_real, distributed_world_size
from mr2.losses.class_stats import batch_class_statistics
from mr2.losses.layout import BatchLayout, batch_layout
from mr2.losses.margin_ce import margin_cross_entropy
from mr2.losses.representation import representation_margin
from theory import optimal_margins

__all__ = ["MR2Loss", "MARGIN_FORMS", "REP_TARGETS", "SPREAD_FLOOR"]

MARGIN_FORMS = ("temperature", "additive")
REP_TARGETS = ("mean", "zero")
# Spreads are floored at SPREAD_FLOOR * max_k a_k before the margin rule: a class whose features are
# all zero (dead ReLUs) would otherwise get gamma = 0 and a division by zero in the temperature form.
# The floor changes gamma_k only for classes ~7 orders of magnitude below the widest class.
SPREAD_FLOOR = 1e-7
REP_TEMPERATURE_PER_DIM = 10.0  # official: exp((D - 2 sbar) / (10 d))
REP_SCALE_PER_DIM = 0.1  # official: rep * d / 10 / K


class MR2Loss(LossBase):
    """MR2 loss (Zhu et al., "Reducing Class-Wise Performance Disparity via Margin Regularization").

    Args:
        num_classes: K >= 2.
        lambda_rep: weight of the representation term (0.1 in the paper); 0 skips it (``mr2-logit``).
        ema_decay: EMA decay of the per-class statistics in [0, 1]; 0.999 (ImageNet script) or 0.9
            (CIFAR script). 1 freezes each class at its first observation.
        norm_p: p of the L_p norm in the statistics: 2 follows the paper, 5 reproduces the code.
        margin_form: ``"temperature"`` (official, logits / gamma_y) or ``"additive"`` (z_y - gamma_y).
        mean_margin: cbar > 0, the mean of the margins (1 in the official code).
        rep_target: ``"mean"`` (2 sbar) or ``"zero"`` (the official CIFAR variant).
        rep_temperature: T in the representation term's exponent (units of h^2); None means 10 d.
        logit_margins: False replaces the margin CE by plain CE (the ``mr2-rep`` ablation).
        sync_stats: all-reduce the statistics under torch.distributed (default True).
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step).

    Call: ``loss(logits (B, K), features (B, d), targets (B,))`` -> scalar. ``loss.last`` then holds
    detached tensors: ``loss``, ``ce`` (the logit term), ``rep`` (the representation term, before
    ``lambda_rep``), ``margins`` (K,), ``sbar``.

    Buffers (float32 unless the module is cast, e.g. ``.double()``; never lowered by autocast):
    ``mean_norm_ema`` (K,), ``spread_ema`` (K,), ``observations`` (K,) int64 (batches that held the
    class; 0 = never seen). They are in ``state_dict``, so checkpoints resume exactly.
    """

    uses_features = True

    def __init__(
        self,
        num_classes: int,
        *,
        lambda_rep: float = 0.1,
        ema_decay: float = 0.999,
        norm_p: float = 2.0,
        margin_form: str = "temperature",
        mean_margin: float = 1.0,
        rep_target: str = "mean",
        rep_temperature: float | None = None,
        logit_margins: bool = True,
        sync_stats: bool = True,
        check_values: bool = True,
    ) -> None:
        super().__init__(num_classes, check_values=check_values)
        self.lambda_rep = check_real("lambda_rep", lambda_rep, low=0.0)
        self.ema_decay = check_real("ema_decay", ema_decay, low=0.0, high=1.0)
        self.norm_p = check_real("norm_p", norm_p, low=1.0)
        self.margin_form = check_in("margin_form", margin_form, MARGIN_FORMS)
        self.mean_margin = check_real("mean_margin", mean_margin, low=0.0, low_open=True)
        self.rep_target = check_in("rep_target", rep_target, REP_TARGETS)
        self.rep_temperature = (
            None
            if rep_temperature is None
            else check_real("rep_temperature", rep_temperature, low=0.0, low_open=True)
        )
        self.logit_margins = bool(logit_margins)
        self.sync_stats = bool(sync_stats)
        K = self.num_classes
        self.register_buffer("mean_norm_ema", torch.zeros(K, dtype=torch.float32))
        self.register_buffer("spread_ema", torch.zeros(K, dtype=torch.float32))
        self.register_buffer("observations", torch.zeros(K, dtype=torch.int64))

    # ----------------------------------------------------------------------------------------------
    # statistics and margins

    @torch.no_grad()
    def update_statistics(self, features: Tensor, targets: Tensor, layout: BatchLayout | None = None) -> None:
        """Fold one batch into the per-class EMAs (features (B, d), targets (B,) int64).

        Present classes seen before: ema <- decay * ema + (1 - decay) * batch value. Present classes
        never seen: ema <- batch value. Absent classes: unchanged. Called by ``forward`` in training
        mode; call it directly only to feed statistics by hand.
        """
        h = features.detach().to(self.mean_norm_ema.dtype)
        stats = batch_class_statistics(
            h,
            targets,
            self.num_classes,
            norm_p=self.norm_p,
            sync=self.sync_stats and distributed_world_size() > 1,
            layout=layout,
        )
        idx = stats.classes
        seen_before = self.observations.index_select(0, idx)
        # weight of the new value: 1 on a class's first observation (initialise), 1 - decay after
        w = torch.where(seen_before == 0, h.new_ones(()), h.new_full((), 1.0 - self.ema_decay))
        for ema, new in ((self.mean_norm_ema, stats.mean_norm), (self.spread_ema, stats.spread)):
            old = ema.index_select(0, idx)
            ema.index_copy_(0, idx, old + w * (new - old))  # = decay * old + (1 - decay) * new
        self.observations.index_copy_(0, idx, seen_before + 1)

    def class_spreads(self) -> tuple[Tensor, Tensor]:
        """``(a, sbar)``: a_k = EMA ||mu_k||_p^2 + EMA s_k^2 (K,), and sbar = the mean EMA spread s_k^2
        over the classes seen so far (0-dim).

        A class never seen gets the mean a of the seen ones (a neutral guess, so that it neither takes
        nor leaves margin budget); before any class is seen all a_k are 0 (uniform margins).
        """
        seen = self.observations > 0
        n_seen = seen.sum().clamp_min(1).to(self.spread_ema.dtype)
        a = torch.where(seen, self.mean_norm_ema + self.spread_ema, 0.0)
        a = torch.where(seen, a, a.sum() / n_seen)
        sbar = torch.where(seen, self.spread_ema, 0.0).sum() / n_seen
        return a, sbar

    def margins(self, spreads: Tensor | None = None) -> Tensor:
        """gamma (K,) via ``theory.optimal_margins`` from ``spreads`` (default: ``class_spreads()``);
        mean(gamma) = cbar."""
        a = self.class_spreads()[0] if spreads is None else spreads
        a = a.clamp_min(SPREAD_FLOOR * a.max())
        # Our a is finite and >= 0 by construction, so skip the checks: they would sync the GPU.
        return optimal_margins(a, mean_margin=self.mean_margin, validate=False)

    # ----------------------------------------------------------------------------------------------
    # loss

    def _loss(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        # Statistics, margins and both terms in full precision even inside an autocast region.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            layout = batch_layout(targets)
            if self.training:
                self.update_statistics(features, targets, layout)
            dtype = torch.promote_types(logits.dtype, self.mean_norm_ema.dtype)
            z = logits.to(dtype)
            spreads, sbar = self.class_spreads()
            gamma = self.margins(spreads).to(dtype)
            if not self.logit_margins:
                ce = F.cross_entropy(z, targets)
            elif self.margin_form == "temperature":
                ce = margin_cross_entropy(z, targets, scale=1.0 / gamma.index_select(0, targets))
            else:
                ce = margin_cross_entropy(z, targets, shift=gamma.index_select(0, targets))
            if self.lambda_rep > 0:
                fdtype = torch.promote_types(features.dtype, self.mean_norm_ema.dtype)
                h = features.to(fdtype)
                d = h.shape[1]
                temperature = self.rep_temperature or REP_TEMPERATURE_PER_DIM * d
                target = 2.0 * sbar.to(fdtype) if self.rep_target == "mean" else 0.0
                rep = representation_margin(
                    h,
                    targets,
                    self.num_classes,
                    target=target,
                    temperature=temperature,
                    scale=REP_SCALE_PER_DIM * d / self.num_classes,
                    layout=layout,
                )
                total = ce + self.lambda_rep * rep.to(ce.dtype)
            else:
                rep = ce.new_zeros(())
                total = ce
        self.last = {
            "loss": total.detach(),
            "ce": ce.detach(),
            "rep": rep.detach(),
            "margins": gamma.detach(),
            "sbar": sbar.detach(),
        }
        return total

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, lambda_rep={self.lambda_rep}, ema_decay={self.ema_decay}, "
            f"norm_p={self.norm_p}, margin_form={self.margin_form!r}, mean_margin={self.mean_margin}, "
            f"rep_target={self.rep_target!r}, rep_temperature={self.rep_temperature}, "
            f"logit_margins={self.logit_margins}"
        )
