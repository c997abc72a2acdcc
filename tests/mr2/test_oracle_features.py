"""The oracle share on a split's features (metrics.json's class_oracle_share) against a numpy loop."""

from __future__ import annotations

import numpy as np
import torch

from mr2.metrics import class_feature_stats, class_feature_sums, feature_stats_from_sums


def _naive_oracle(h: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    mu = np.stack([h[y == k].mean(0) for k in range(K)])
    out = np.empty(K)
    for k in range(K):
        dist = [np.linalg.norm(mu[j] - mu[k]) if j != k else np.inf for j in range(K)]
        j = int(np.argmin(dist))
        u = (mu[j] - mu[k]) / np.linalg.norm(mu[j] - mu[k])
        s_k = np.sqrt(np.mean(((h[y == k] - mu[k]) @ u) ** 2))
        s_j = np.sqrt(np.mean(((h[y == j] - mu[j]) @ u) ** 2))
        out[k] = s_k / (s_k + s_j)
    return out


def test_oracle_share_of_features_equals_a_numpy_loop():
    rng = np.random.default_rng(0)
    K, d = 4, 5
    y = np.repeat(np.arange(K), 50)
    h = rng.normal(size=(len(y), d)) * rng.uniform(0.3, 3.0, size=(K, d))[y] + 4 * rng.normal(size=(K, d))[y]
    stats = class_feature_stats(torch.from_numpy(h), torch.from_numpy(y), K)
    np.testing.assert_allclose(stats["oracle"], _naive_oracle(h, y, K), rtol=1e-9)
    # additive over parts (what the ranks all-reduce), and absent without the second moments
    t_h, t_y = torch.from_numpy(h), torch.from_numpy(y)
    parts = sum(class_feature_sums(t_h[i::3], t_y[i::3], K, second_moments=True) for i in range(3))
    np.testing.assert_allclose(feature_stats_from_sums(parts, dim=d)["oracle"], stats["oracle"], rtol=1e-9)
    assert "oracle" not in feature_stats_from_sums(class_feature_sums(t_h, t_y, K))


def test_torch_oracle_share_is_the_theory_oracle():
    """The loss's share (torch) is the derived oracle's (theory): the worst-class boundary of two
    Gaussian classes, read back from ``theory.oracle_margins`` as each class's fraction of the gap."""
    import numpy as np
    import torch

    from mr2.losses.margin_statistics import oracle_share as torch_share
    from theory import oracle_margins
    from theory import oracle_share as theory_share

    rng = np.random.default_rng(7)
    s_k, s_j = rng.uniform(0.05, 5.0, 200), rng.uniform(0.05, 5.0, 200)
    got = torch_share(torch.from_numpy(s_k), torch.from_numpy(s_j)).numpy()
    np.testing.assert_allclose(got, theory_share(s_k, s_j), rtol=1e-12, atol=0)
    for a, b, delta in zip(s_k[:20], s_j[:20], rng.uniform(0.5, 6.0, 20), strict=True):
        m = oracle_margins([a, b], delta, criterion="worst")
        np.testing.assert_allclose(m / delta, [theory_share(a, b), theory_share(b, a)], rtol=1e-9)
