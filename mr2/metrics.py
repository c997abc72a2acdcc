"""Per-class numbers (docs/conventions.md, reporting) and the feature statistic of the bound, a_k.

All functions are vectorised over samples and classes (``bincount``/``index_add``), no Python loops.
"""

from __future__ import annotations

import numpy as np
import torch

from mr2_core.checks import bad
from mr2_core.summaries import class_summary

__all__ = [
    "per_class_accuracy",
    "class_summary",
    "class_feature_stats",
    "class_feature_sums",
    "feature_stats_from_sums",
    "confusion_matrix",
]


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (K, K): row = true class, column = predicted class."""
    flat = targets.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """Fraction of each class's samples predicted correctly, shape (K,); NaN for an absent class."""
    correct = torch.bincount(targets[preds == targets], minlength=num_classes).double()
    total = torch.bincount(targets, minlength=num_classes).double()
    return (correct / total).cpu().numpy()


def class_feature_sums(
    features: torch.Tensor, targets: torch.Tensor, num_classes: int, *, second_moments: bool = False
) -> torch.Tensor:
    """Per-class sums (K, d + 2) float64: columns [sum_i h_i (d), sum_i ||h_i||² (1), n_k (1)] over the
    samples of each class. Additive over disjoint parts of a split, so ranks can all-reduce them.

    ``second_moments``: (K, d + d² + 2), with sum_i h_i h_i^T (d², row-major) after the first d
    columns; :func:`feature_stats_from_sums` (given ``dim=d``) then adds the oracle share."""
    h = features.detach().double()
    y = targets.long()
    d = h.shape[1]
    extra = d * d if second_moments else 0
    out = torch.zeros(num_classes, d + extra + 2, dtype=torch.float64, device=h.device)
    out[:, :d].index_add_(0, y, h)
    if second_moments:  # one (d, d) product per class present: no (N, d, d) tensor
        for k in torch.unique(y).tolist():
            hk = h[y == k]
            out[k, d : d + extra] = (hk.T @ hk).reshape(-1)
    out[:, -2].index_add_(0, y, (h * h).sum(1))
    out[:, -1].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
    return out


def feature_stats_from_sums(sums: torch.Tensor, dim: int | None = None) -> dict[str, np.ndarray]:
    """The per-class feature statistics of :func:`class_feature_stats` from :func:`class_feature_sums`
    (summed over every part of a split). ``dim``: the feature size d; when the sums hold the second
    moments (width d + d² + 2), the result also has ``oracle``."""
    counts = sums[:, -1]
    num_classes = counts.shape[0]
    if torch.any(counts == 0):
        raise bad("targets", counts.tolist(), f"every one of the {num_classes} classes present")
    d = sums.shape[1] - 2 if dim is None else dim
    moments = sums.shape[1] == d + d * d + 2
    mu = sums[:, :d] / counts[:, None]
    spread = sums[:, -2] / counts
    mean_norm2 = (mu * mu).sum(1)
    within = (spread - mean_norm2).clamp_min(0)
    # the statistics MR2Loss offers, computed as the loss computes them (L2, every class seen)
    from mr2.losses.margin_statistics import class_statistic

    seen = torch.ones(num_classes, dtype=torch.bool, device=sums.device)
    stat = {
        name: class_statistic(
            name, mean_norm=mean_norm2, spread=within, class_means=mu, seen=seen, norm_p=2.0
        )
        for name in ("centred", "separation")
    }
    return {
        "spread": spread.cpu().numpy(),
        "mean_norm2": mean_norm2.cpu().numpy(),
        "within": within.cpu().numpy(),
        "centred": stat["centred"].cpu().numpy(),
        "separation": stat["separation"].cpu().numpy(),
        **({"oracle": _oracle_from_moments(sums, mu, counts, d).cpu().numpy()} if moments else {}),
    }


def _oracle_from_moments(sums: torch.Tensor, mu: torch.Tensor, counts: torch.Tensor, d: int) -> torch.Tensor:
    """The oracle share s_k / (s_k + s_j) of every class against its nearest rival j (nearest class
    mean), with s the SDs of the two classes projected on the line joining their means, from the
    per-class second moments: s_k² = u^T Cov_k u (``mr2.losses.margin_statistics.oracle_statistic``)."""
    from mr2.losses.margin_statistics import oracle_statistic

    K = mu.shape[0]
    cov = sums[:, d : d + d * d].reshape(K, d, d) / counts[:, None, None] - mu[:, :, None] * mu[:, None, :]
    diff = mu[None, :, :] - mu[:, None, :]  # (k, j, d): m_j - m_k
    norm = diff.norm(dim=2, keepdim=True)
    u = diff / torch.where(norm > 0, norm, torch.ones_like(norm))
    var = torch.einsum("kjd,kde,kje->kj", u, cov, u)  # V[k, j] = u_kj^T Cov_k u_kj
    return oracle_statistic(mu, var, torch.ones(K, dtype=torch.bool, device=mu.device))


def class_feature_stats(
    features: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> dict[str, np.ndarray]:
    """The bound's per-class feature statistic a_k and the other statistics of the MR2 loss.

    Args:
        features: (N, d); targets: (N,) int64 in [0, K).

    Returns:
        ``spread`` a_k = ||mu_k||² + s_k² = mean_i ||h_i||² over class k; ``mean_norm2`` ||mu_k||²;
        ``within`` s_k² = mean_i ||h_i - mu_k||²; ``centred`` ||mu_k - mu_bar||² + s_k² (mu_bar the
        mean of the class means: the statistic a head with a bias supports); ``separation``
        s_k² / min_{j != k} ||mu_k - mu_j||² (a heuristic suggested by data, not by the bound);
        ``oracle`` s_k / (s_k + s_j) against the nearest rival j, SDs along the line joining the two
        means (the two-Gaussian worst-class share); each shape (K,), float64; the first four in
        squared feature units, the last two unitless.
    """
    sums = class_feature_sums(features, targets, num_classes, second_moments=True)
    return feature_stats_from_sums(sums, dim=features.shape[1])
