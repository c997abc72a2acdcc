"""MR2: class-sensitive logit margins plus a representation margin (Zhu et al., ICLR 2026).

Per training step (the official ``MRFLoss.forward`` order: statistics first, then margins):

1. **Statistics.** Per-class ||mu_k||_p^2 and s_k^2 = mean_i ||h_i - mu_k||_p^2 of the batch
   (``class_stats``; all-reduced under torch.distributed), folded into per-class EMAs: a class's first
   observation initialises its EMA, absent classes are left alone, and nothing changes in ``eval()``.
   The statistics ``"centred"`` and ``"separation"`` also keep an EMA of the class-mean vectors.
   A batch statistic that is not finite (features beyond the dtype's range) is not folded in.
2. **Margins.** a_k = the chosen statistic (``margin_statistics``; by default the paper's
   EMA(||mu_k||_p^2) + EMA(s_k^2)) and gamma = ``theory.optimal_margins(a, mean_margin=cbar,
   power=1/exponent - 1)``, i.e. gamma_k = K cbar a_k^e / sum_j a_j^e with e = 1/3 (the bound's
   optimum at p = 2). The margins are constants for autograd, as in the official code.
3. **Logit term.** ``"temperature"`` (official): CE(z_i / gamma_{y_i}, y_i), every logit of sample i
   divided by its class's margin. ``"additive"`` (LDAM form): CE(z_i - gamma_{y_i} e_{y_i}, y_i).
4. **Representation term** (``representation``): (d / (10 K)) sum_k R_k with target 2 sbar
   (``rep_target="mean"``, sbar = the mean EMA spread over classes) or 0 (``"zero"``, the official
   CIFAR variant), temperature 10 d by default. Under torch.distributed it is taken over the pairs of
   the global batch (every rank's features gathered, ``sync_rep``), as the official code's
   DataParallel does: the pairs that straddle two ranks count too.
5. loss = logit term + ``lambda_rep`` * representation term.

Deliberate differences from the official code are listed in ``docs/losses.md``; ``stat_slots``
reproduces how the released ImageNet script sizes the statistics (``make_loss("mr2-official", K)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mr2.losses._common import (
    LossBase,
    all_gather_batch,
    check_batch,
    check_in,
    check_real,
    distributed_world_size,
)
from mr2.losses.class_stats import batch_class_statistics, dense_class_statistics
from mr2.losses.layout import BatchLayout, batch_layout
from mr2.losses.margin_ce import margin_cross_entropy
from mr2.losses.margin_statistics import STATISTICS, VECTOR_STATISTICS, class_statistic, derangement
from mr2.losses.mr2_state import (
    DENSE_MAX_CLASSES_CPU,
    LAYOUTS,
    REP_SCALE_PER_DIM,
    REP_TARGETS,
    REP_TEMPERATURE_PER_DIM,
    SPREAD_FLOOR,
    finite_statistics,
    fold_class_statistics,
    overflow_guard,
    update_projected_variances,
    warn_non_finite,
)
from mr2.losses.representation import (
    check_representation_value,
    representation_dtype,
    representation_margin,
    representation_margin_masked,
)
from mr2_core.checks import bad, check_int
from mr2_core.contracts import MARGIN_FORMS
from theory import optimal_margins

__all__ = ["MR2Loss", "MARGIN_FORMS", "REP_TARGETS", "LAYOUTS", "SPREAD_FLOOR", "STATISTICS"]

_NO_SKIPS = torch.zeros((), dtype=torch.int64)  # last["stats_skipped"] when no check was needed


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
        statistic: the per-class statistic a_k behind the margins (``margin_statistics``):
            ``"second_moment"`` (the paper), ``"centred"``, ``"spread"``, ``"separation"`` (a heuristic
            suggested by data, not a consequence of the bound), ``"oracle"`` (the two-Gaussian
            worst-class share s_k / (s_k + s_j) against the nearest rival; use it with exponent 1)
            or ``"shuffled"`` (a placebo).
        exponent: e in gamma_k proportional to a_k^e, in (0, 1]; 1/3 is the bound's value (p = 2 in
            ``theory.optimal_margins``, e = 1/(p + 1)); 1 for ``"oracle"``.
        shuffle_seed: seed of the fixed derangement used by ``statistic="shuffled"``.
        stat_slots: None (default): K slots, and a class not yet seen takes the mean statistic of
            the seen ones. An integer S >= K reproduces the released code's slot handling: S slots of
            which the first K are the real classes; a slot never seen (the S - K that no label
            reaches, and a real class before its first batch) has a_k = 0 and margin 0 and counts as
            0 in sbar, and the margins and the representation term are normalised by S, not K. The
            released ImageNet script builds ``MRFLoss()`` with S = 1000 whatever K is, so the real
            classes' margins average S / K (``make_loss("mr2-official", K)``).
        sync_stats: all-reduce the statistics under torch.distributed (default True).
        sync_rep: in training under torch.distributed, compute the representation term on the
            features of every rank, gathered with their gradients (default True), so that it equals
            the single-process term of the concatenated batch; each rank then computes the whole term
            and DDP's gradient averaging gives the single-process gradient. False: each rank's own
            pairs only, which misses the pairs split across ranks (a different, rank-count-dependent
            objective). Costs one all-gather of the features per step.
        layout: how the batch is split by class. ``"compact"``: one sort by label and the C <= B
            classes present (``layout``, pairs listed by ``same_class_pairs``); the cheapest on a CPU
            at many classes, but its tensor sizes depend on the labels, which a GPU must read back
            (a synchronisation per step). ``"dense"``: fixed shapes, (K, .) statistics with a mask of
            the present classes and a (B, B) same-class mask for the representation term, no
            read-back. ``"auto"`` (default): dense on a GPU, and on a CPU up to
            ``DENSE_MAX_CLASSES_CPU`` = 16 classes (where it is also faster); compact otherwise. The
            two give the same numbers up to float summation order in the representation term (the
            statistics bit for bit on CPU).
        check_values: check inputs for NaN/inf and labels out of range (one device sync per step),
            and warn when a batch statistic is not finite.
        check_every: check the values on every N-th call only (None: every call); the calls between
            take the overflow guard's scale on the device and skip a non-finite statistic silently.
            With ``layout="dense"`` (or ``"auto"`` on a GPU) those calls have no host-device
            synchronisation at all.

    Call: ``loss(logits (B, K), features (B, d), targets (B,))`` -> scalar. The statistics are taken
    on ``features``, which need not be what the head saw (the released ImageNet code takes them on the
    raw backbone features while its head normalises its input). ``loss.last`` then holds detached
    tensors: ``loss``, ``ce`` (the logit term), ``rep`` (the representation term, before
    ``lambda_rep``), ``margins`` (K,), ``margin_min`` and ``margin_max`` (the realised range of
    gamma), ``sbar`` and ``stats_skipped`` (classes whose batch statistic was not finite and was
    left out of the EMA this step). ``loss.statistic`` names the statistic.

    Non-finite statistics. The statistics are computed so that finite features cannot overflow them
    (``class_stats``, a power-of-two rescaling), but a statistic beyond the range of the buffers'
    dtype (e.g. ||h||^2 > 3.4e38 in float32) is still inf. Such a class is **skipped**: its EMAs and
    ``observations`` keep their previous values, a ``RuntimeWarning`` names the statistic, the classes
    and what to do (with ``check_values=False`` the skip is silent: no read-back), and
    ``last["stats_skipped"]`` counts them. The loss of that batch is still computed.

    Buffers (float32 unless the module is cast, e.g. ``.double()``; never lowered by autocast):
    ``mean_norm_ema`` (K,), ``spread_ema`` (K,), ``observations`` (K,) int64 (batches that held the
    class; 0 = never seen), and for ``"centred"`` / ``"separation"`` ``class_mean_ema`` (K, d),
    allocated at the first batch (d is not known before). They are in ``state_dict``, so checkpoints
    resume exactly.
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
        statistic: str = "second_moment",
        exponent: float = 1.0 / 3.0,
        shuffle_seed: int = 0,
        stat_slots: int | None = None,
        sync_stats: bool = True,
        sync_rep: bool = True,
        layout: str = "auto",
        check_values: bool = True,
        check_every: int | None = None,
    ) -> None:
        super().__init__(num_classes, check_values=check_values, check_every=check_every)
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
        self.statistic = check_in("statistic", statistic, STATISTICS)
        # e = 1 is allowed: margins proportional to the statistic itself (the "oracle" share's rule)
        self.exponent = check_real("exponent", exponent, low=0.0, high=1.0, low_open=True)
        # e = 1 / (p + 1) in theory.optimal_margins; e = 1/3 gives p = 2.0 exactly
        self.margin_power = 1.0 / self.exponent - 1.0
        self.shuffle_seed = check_int("shuffle_seed", shuffle_seed, 0)
        K = self.num_classes
        if stat_slots is not None:
            stat_slots = check_int("stat_slots", stat_slots, 2)
            if stat_slots < K:
                raise bad(
                    "stat_slots",
                    stat_slots,
                    f"an integer >= num_classes = {K} (the first K slots are the real classes), or None",
                )
            if self.statistic == "shuffled":
                raise bad("stat_slots", stat_slots, "None with statistic='shuffled' (a placebo of the paper)")
        self.stat_slots = stat_slots
        self.sync_stats = bool(sync_stats)
        self.sync_rep = bool(sync_rep)
        self.layout = check_in("layout", layout, LAYOUTS)
        self._skipped: Tensor | None = None  # classes left out of the EMA at the last update
        self.register_buffer("mean_norm_ema", torch.zeros(K, dtype=torch.float32))
        self.register_buffer("spread_ema", torch.zeros(K, dtype=torch.float32))
        self.register_buffer("observations", torch.zeros(K, dtype=torch.int64))
        if self.statistic in VECTOR_STATISTICS:
            # (K, d), materialised at the first batch or by load_state_dict (_load_from_state_dict)
            self.register_buffer("class_mean_ema", torch.zeros(K, 0, dtype=torch.float32))
        if self.statistic == "oracle":
            # V[k, j]: EMA of the variance of class k projected on the line from m_k to m_j, and how
            # often each entry was observed (margin_statistics.projected_class_variances)
            self.register_buffer("proj_var_ema", torch.zeros(K, K, dtype=torch.float32))
            self.register_buffer("pair_observations", torch.zeros(K, K, dtype=torch.int64))
        if self.statistic == "shuffled":
            # not persistent: it is a function of (K, shuffle_seed), both in the config
            self.register_buffer("permutation", derangement(K, self.shuffle_seed), persistent=False)

    # ----------------------------------------------------------------------------------------------
    # statistics and margins

    @property
    def slots(self) -> int:
        """S, the number of statistic slots: ``stat_slots``, or K."""
        return self.num_classes if self.stat_slots is None else self.stat_slots

    def uses_dense_layout(self, device: torch.device) -> bool:
        """Whether a batch on ``device`` takes the fixed-shape route (``layout``)."""
        if self.layout != "auto":
            return self.layout == "dense"
        return device.type != "cpu" or self.num_classes <= DENSE_MAX_CLASSES_CPU

    @torch.no_grad()
    def update_statistics(
        self,
        features: Tensor,
        targets: Tensor,
        layout: BatchLayout | None = None,
        *,
        feature_absmax: float | None = None,
        checked: bool | None = None,
        dense: bool | None = None,
    ) -> None:
        """Fold one batch into the per-class EMAs (features (B, d), targets (B,) int64).

        Present classes seen before: ema <- decay * ema + (1 - decay) * batch value. Present classes
        never seen: ema <- batch value. Absent classes: unchanged. A class whose batch statistic is not
        finite: unchanged, and not counted as observed (class docstring). Called by ``forward`` in
        training mode; call it directly only to feed statistics by hand. ``feature_absmax`` is
        max |features| when the caller already read it back (the input check does), which lets the
        overflow guard cost nothing on the usual path. ``checked``: warn about a skipped class (a
        read-back); None means ``check_values``. ``dense``: the fixed-shape route; None picks by
        ``layout`` and the device.
        """
        h = features.detach().to(self.mean_norm_ema.dtype)
        sync = self.sync_stats and distributed_world_size() > 1
        checked = self.check_values if checked is None else checked
        dense = self.uses_dense_layout(h.device) if dense is None else dense
        scale, guard = overflow_guard(h, self.norm_p, feature_absmax=feature_absmax, sync=sync)
        vector = self.statistic in VECTOR_STATISTICS
        if vector:
            self._materialise_class_means(h.shape[1])
        options = {"norm_p": self.norm_p, "sync": sync, "scale": scale, "with_means": vector}
        if dense:
            stats = dense_class_statistics(h, targets, self.num_classes, **options)
            idx, ok = None, stats.present  # every class, a mask of the present ones
        else:
            stats = batch_class_statistics(h, targets, self.num_classes, layout=layout, **options)
            idx, ok = stats.classes, None  # the present classes only
        updates = [(self.mean_norm_ema, stats.mean_norm), (self.spread_ema, stats.spread)]
        if vector:
            updates.append((self.class_mean_ema, stats.means))
        self._skipped = None
        if guard:
            finite = finite_statistics(stats, vector)
            if checked:  # idx: the class of each entry of ok (None: entry k is class k)
                fine = finite if ok is None else finite | ~ok
                warn_non_finite(idx, fine, feature_absmax, norm_p=self.norm_p, dtype=h.dtype)
            self._skipped = (~finite if ok is None else ok & ~finite).sum()
            ok = finite if ok is None else ok & finite
        fold_class_statistics(updates, self.observations, idx, ok, ema_decay=self.ema_decay, guard=guard)
        if self.statistic == "oracle":
            update_projected_variances(
                h,
                targets,
                class_means=self.class_mean_ema,
                proj_var=self.proj_var_ema,
                pair_observations=self.pair_observations,
                observations=self.observations,
                ema_decay=self.ema_decay,
                sync=sync,
            )

    def _materialise_class_means(self, d: int) -> None:
        buf = self.class_mean_ema
        if buf.shape[1] == d:
            return
        if buf.shape[1] != 0:
            raise bad("features", f"<width {d}>", f"width d = {buf.shape[1]}, as in earlier batches")
        self.class_mean_ema = buf.new_zeros(self.num_classes, d)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        # class_mean_ema is (K, 0) until the first batch: take the checkpoint's width before loading
        saved = state_dict.get(prefix + "class_mean_ema")
        if saved is not None and hasattr(self, "class_mean_ema") and self.class_mean_ema.shape[1] == 0:
            self.class_mean_ema = self.class_mean_ema.new_zeros(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def class_spreads(self) -> tuple[Tensor, Tensor]:
        """``(a, sbar)``: the statistic a_k of every class (K,) (``statistic``; by default
        EMA ||mu_k||_p^2 + EMA s_k^2; float64 for ``"centred"`` and ``"separation"``), and sbar = the
        mean EMA spread s_k^2 (0-dim).

        Default slots: a class never seen gets the mean a of the seen ones (a neutral guess, so that it
        neither takes nor leaves margin budget), sbar averages over the classes seen, and before any
        class is seen all a_k are 0 (uniform margins). With ``stat_slots`` = S: a class never seen has
        a_k = 0 and sbar = (sum of the seen spreads) / S, as in the released code.
        """
        seen = self.observations > 0
        n_seen = seen.sum().clamp_min(1).to(self.spread_ema.dtype)
        stat = class_statistic(
            self.statistic,
            mean_norm=self.mean_norm_ema,
            spread=self.spread_ema,
            class_means=getattr(self, "class_mean_ema", None),
            seen=seen,
            norm_p=self.norm_p,
            projected_var=getattr(self, "proj_var_ema", None),
            pair_seen=self.pair_observations > 0 if self.statistic == "oracle" else None,
        )
        if self.statistic in VECTOR_STATISTICS:  # their values at unseen classes are meaningless
            a = torch.where(seen, stat, 0.0)
            spread_sum = torch.where(seen, self.spread_ema, 0.0).sum()
        else:  # an EMA is written only when its class is observed: 0 at the unseen ones already
            a, spread_sum = stat, self.spread_ema.sum()
        if self.stat_slots is None:
            a = torch.where(seen, a, a.sum() / n_seen)
            sbar = spread_sum / n_seen
        else:
            sbar = spread_sum / self.stat_slots
        if self.statistic == "shuffled":
            a = a.index_select(0, self.permutation)  # class k takes the value of class perm[k] != k
        return a, sbar

    def margins(self, spreads: Tensor | None = None) -> Tensor:
        """gamma (K,) via ``theory.optimal_margins`` from ``spreads`` (default: ``class_spreads()``).

        mean(gamma) = cbar with the default slots. With ``stat_slots`` = S, gamma_k =
        S cbar a_k^e / sum_j a_j^e (the S - K phantom slots add a_j = 0), so the real classes' margins
        average S cbar / K, and a class never seen has gamma = 0.
        """
        a = self.class_spreads()[0] if spreads is None else spreads
        floored = a.clamp_min(SPREAD_FLOOR * a.max())
        # Our a is finite and >= 0 by construction, so skip the checks: they would sync the GPU.
        if self.stat_slots is None:
            return optimal_margins(
                floored, mean_margin=self.mean_margin, power=self.margin_power, validate=False
            )
        budget = self.mean_margin * self.stat_slots / self.num_classes  # K * budget = S * cbar
        a = torch.where(self.observations > 0, floored, 0.0)
        return optimal_margins(a, mean_margin=budget, power=self.margin_power, validate=False)

    # ----------------------------------------------------------------------------------------------
    # loss

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        """Loss of one batch: logits (B, K), features (B, d), targets (B,) int64 -> scalar."""
        checked = self._values_checked_now()
        y, absmax = check_batch(
            logits,
            features,
            targets,
            self.num_classes,
            need_features=True,
            check_values=checked,
            return_feature_absmax=True,
        )
        self._follow_device(logits.device)
        return self._loss(logits, features, y, feature_absmax=absmax, checked=checked)

    def _loss(
        self,
        logits: Tensor,
        features: Tensor,
        targets: Tensor,
        *,
        feature_absmax: float | None = None,
        checked: bool | None = None,
    ) -> Tensor:
        # Statistics, margins and both terms in full precision even inside an autocast region.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            dense = self.uses_dense_layout(logits.device)
            layout = None if dense else batch_layout(targets)
            self._skipped = None
            if self.training:
                self.update_statistics(
                    features, targets, layout, feature_absmax=feature_absmax, checked=checked, dense=dense
                )
            spreads, sbar = self.class_spreads()
            gamma = self.margins(spreads).to(torch.promote_types(logits.dtype, self.mean_norm_ema.dtype))
            ce = self.logit_term(logits, targets, gamma)
            if self.lambda_rep > 0:
                # huge features: the pair distances in float64, else inf - inf = NaN (representation.py)
                wide = torch.promote_types(features.dtype, self.mean_norm_ema.dtype)
                rep_dtype = representation_dtype(feature_absmax, features.shape[1], wide)
                h = features.to(rep_dtype)
                rep = self.representation_term(h, targets, sbar, layout=layout, dense=dense)
                if rep_dtype != wide:
                    check_representation_value(rep, feature_absmax, wide)
                total = ce + self.lambda_rep * rep.to(ce.dtype)
            else:
                rep = ce.new_zeros(())
                total = ce
        g_min, g_max = torch.aminmax(gamma.detach())
        self.last = {
            "loss": total.detach(),
            "ce": ce.detach(),
            "rep": rep.detach(),
            "margins": gamma.detach(),
            "margin_min": g_min,
            "margin_max": g_max,
            "sbar": sbar.detach(),
            "stats_skipped": self._skipped if self._skipped is not None else _NO_SKIPS,
        }
        return total

    def logit_term(self, logits: Tensor, targets: Tensor, gamma: Tensor) -> Tensor:
        """The margin cross-entropy (``margin_form``) of logits (B, K) with margins gamma (K,)."""
        z = logits.to(gamma.dtype)
        if not self.logit_margins:
            return F.cross_entropy(z, targets)
        if self.margin_form == "temperature":
            g = gamma.index_select(0, targets)
            if self.stat_slots is not None:
                # a class never seen has gamma = 0 here (the released code divides by it): its
                # samples get scale 0, i.e. a constant log K and no gradient, instead of NaN
                g = torch.where(g > 0, g, torch.inf)
            return margin_cross_entropy(z, targets, scale=1.0 / g)
        return margin_cross_entropy(z, targets, shift=gamma.index_select(0, targets))

    def representation_term(
        self,
        features: Tensor,
        targets: Tensor,
        sbar: Tensor,
        *,
        layout: BatchLayout | None = None,
        dense: bool = False,
    ) -> Tensor:
        """The representation margin (before ``lambda_rep``) of features (B, d); ``dense``: the
        fixed-shape (B, B) route, else the pairs of ``layout`` (``batch_layout(targets)``)."""
        h = features.to(torch.promote_types(features.dtype, self.mean_norm_ema.dtype))
        if self.training and self.sync_rep and distributed_world_size() > 1:
            # the global batch's pairs, with gradients back to every rank (sync_rep)
            h, targets = all_gather_batch(h, targets)
            layout = None if dense else batch_layout(targets)
        d = h.shape[1]
        options = {
            "target": 2.0 * sbar.to(h.dtype) if self.rep_target == "mean" else 0.0,
            "temperature": self.rep_temperature or REP_TEMPERATURE_PER_DIM * d,
            "scale": REP_SCALE_PER_DIM * d / self.slots,
        }
        if dense:
            return representation_margin_masked(h, targets, **options)
        return representation_margin(h, targets, self.num_classes, layout=layout, **options)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, lambda_rep={self.lambda_rep}, ema_decay={self.ema_decay}, "
            f"norm_p={self.norm_p}, margin_form={self.margin_form!r}, mean_margin={self.mean_margin}, "
            f"rep_target={self.rep_target!r}, rep_temperature={self.rep_temperature}, "
            f"logit_margins={self.logit_margins}, statistic={self.statistic!r}, "
            f"exponent={self.exponent:.6g}, stat_slots={self.stat_slots}, layout={self.layout!r}"
        )
