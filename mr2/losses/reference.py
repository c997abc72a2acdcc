"""A per-class-loop implementation of MR2, for the speed benchmark (``mr2 bench loss``) only.

It computes the same definition as :class:`mr2.losses.MR2Loss` (same buffers, same margins, same
representation term) the way research code does: two Python loops over all K classes per step, one
to update the statistics and one for the representation term, with a boolean mask and a dense
n_k x n_k distance matrix per class. It is what the vectorised loss is measured against; the tests
carry their own naive reference and also check that this one agrees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mr2.losses.mr2_state import REP_SCALE_PER_DIM, REP_TEMPERATURE_PER_DIM, SPREAD_FLOOR
from theory import optimal_margins

__all__ = ["LoopMR2Loss"]


class LoopMR2Loss(nn.Module):
    """MR2 with per-class Python loops (research-code style). Arguments as in ``MR2Loss``."""

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
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.lambda_rep = lambda_rep
        self.ema_decay = ema_decay
        self.norm_p = norm_p
        self.margin_form = margin_form
        self.mean_margin = mean_margin
        self.rep_target = rep_target
        self.rep_temperature = rep_temperature
        self.register_buffer("mean_norm_ema", torch.zeros(num_classes))
        self.register_buffer("spread_ema", torch.zeros(num_classes))
        self.register_buffer("observations", torch.zeros(num_classes, dtype=torch.int64))

    def update_ema(self, features: Tensor, targets: Tensor) -> None:
        with torch.no_grad():
            features = features.to(self.mean_norm_ema.dtype)
            for k in range(self.num_classes):
                f = features[targets == k]
                if f.shape[0] == 0:
                    continue
                mu = f.mean(dim=0)
                mean_norm = torch.linalg.vector_norm(mu, ord=self.norm_p) ** 2
                spread = (torch.linalg.vector_norm(f - mu, ord=self.norm_p, dim=1) ** 2).mean()
                if self.observations[k] == 0:
                    self.mean_norm_ema[k] = mean_norm
                    self.spread_ema[k] = spread
                else:
                    self.mean_norm_ema[k] = (
                        self.ema_decay * self.mean_norm_ema[k] + (1 - self.ema_decay) * mean_norm
                    )
                    self.spread_ema[k] = self.ema_decay * self.spread_ema[k] + (1 - self.ema_decay) * spread
                self.observations[k] += 1

    def margins(self) -> Tensor:
        seen = self.observations > 0
        a = self.mean_norm_ema + self.spread_ema
        a = torch.where(seen, a, a[seen].mean() if seen.any() else a.new_zeros(()))
        a = a.clamp_min(SPREAD_FLOOR * a.max())
        return optimal_margins(a, mean_margin=self.mean_margin, validate=False)

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        if self.training:
            self.update_ema(features, targets)
        gamma = self.margins().to(logits.dtype)
        if self.margin_form == "temperature":
            ce = F.cross_entropy(logits / gamma[targets].view(-1, 1), targets)
        else:
            onehot = F.one_hot(targets, self.num_classes).to(logits.dtype)
            ce = F.cross_entropy(logits - onehot * gamma[targets].view(-1, 1), targets)
        seen = self.observations > 0
        sbar = self.spread_ema[seen].mean() if seen.any() else self.spread_ema.new_zeros(())
        target = 2 * sbar if self.rep_target == "mean" else 0.0
        d = features.shape[1]
        temperature = self.rep_temperature or REP_TEMPERATURE_PER_DIM * d
        rep = logits.new_zeros(())
        for k in range(self.num_classes):
            f = features[targets == k]
            if f.shape[0] < 2:
                continue
            dist = ((f.unsqueeze(1) - f.unsqueeze(0)) ** 2).sum(dim=2)
            eye = torch.eye(f.shape[0], dtype=torch.bool, device=f.device)
            terms = torch.exp((dist - target) / temperature).masked_fill(eye, 0).sum(dim=1)
            rep = rep + torch.log1p(terms).mean()
        rep = rep * REP_SCALE_PER_DIM * d / self.num_classes
        return ce + self.lambda_rep * rep
