"""Draws from the Gaussian mixture of :class:`sims.config.MixtureConfig`.

x | y=k ~ N(mu_k, Sigma_k) with Sigma_k = sigma_k^2 diag(cov_diag). Every draw takes a seed or a
``np.random.Generator``; nothing touches global random state. Labels are laid out class by class
(n_0 zeros, then n_1 ones, ...), the same for every training set, so a batch of training sets is one
array of inputs and one label vector.
"""

from __future__ import annotations

import numpy as np

from mr2_core.checks import bad
from mr2_core.seeding import as_generator
from sims.config import MixtureConfig

__all__ = ["labels", "sample", "sample_training_sets", "children"]


def labels(n_per_class: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """y = (0 x n_0, 1 x n_1, ...), shape (sum n_k,), int64."""
    n = np.asarray(n_per_class, dtype=np.int64)
    return np.repeat(np.arange(n.size, dtype=np.int64), n)


def sample(
    cfg: MixtureConfig, rng: int | np.random.Generator, n_per_class: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One draw of sum_k n_k points.

    Args:
        cfg: the mixture.
        rng: a seed or a Generator.
        n_per_class: points per class (default ``cfg.n_per_class``), shape (K,).

    Returns:
        X: shape (N, d), float64 (feature units); y: shape (N,), int64, class by class.
    """
    gen = as_generator(rng)
    n = cfg.n_per_class if n_per_class is None else tuple(n_per_class)
    if len(n) != cfg.K or min(n) < 1:
        raise bad("n_per_class", n_per_class, f"{cfg.K} positive counts")
    y = labels(n)
    eps = gen.standard_normal((y.size, cfg.d))
    return _affine(cfg, eps, y), y


def _affine(cfg: MixtureConfig, eps: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x = mu_y + sqrt(diag Sigma_y) * eps; eps (..., N, d) standard normal."""
    return cfg.mean_vectors()[y] + np.sqrt(cfg.cov_diagonals())[y] * eps


def sample_training_sets(
    cfg: MixtureConfig, n_sets: int, seed: np.random.SeedSequence | int
) -> tuple[np.ndarray, np.ndarray]:
    """``n_sets`` independent training sets, the s-th drawn from child s of ``seed``.

    Training set s does not depend on ``n_sets`` (children of a SeedSequence are stable), so adding
    seeds to a sweep keeps the earlier ones. Settings whose mixtures differ only in sigma or mu get
    the same standard-normal noise (common random numbers) when given the same ``seed``.

    Returns:
        X: shape (n_sets, N, d), float64; y: shape (N,), int64 (shared by all sets).
    """
    if isinstance(n_sets, bool) or not isinstance(n_sets, (int, np.integer)) or n_sets < 1:
        raise bad("n_sets", n_sets, "an integer >= 1")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(as_seed(seed))
    y = labels(cfg.n_per_class)
    eps = np.stack(
        [np.random.default_rng(c).standard_normal((y.size, cfg.d)) for c in children(root, n_sets)]
    )
    return _affine(cfg, eps, y), y


def children(root: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """Children 0..n-1 of ``root``, the same on every call (``SeedSequence.spawn`` is stateful)."""
    return [
        np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i), pool_size=root.pool_size)
        for i in range(n)
    ]


def as_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise bad("seed", seed, "a non-negative integer or a numpy SeedSequence")
    return int(seed)
