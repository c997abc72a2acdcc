"""What the tidy tables of ``sims.experiments`` and ``sims.bound_checks`` share: the regime key of a
setting, its columns, the sigma ratio of a K = 2 setting and the bootstrap's size and seed.

Every CI is ``mr2_core.stats.bootstrap_ci`` over seeds (percentile, 95%) with ``N_BOOT`` resamples
from a generator seeded with ``BOOT_SEED``, so the CIs are reproducible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from mr2_core.contracts import SIMS_REGIME_COLUMNS
from sims.search import SettingResult

__all__ = ["N_BOOT", "BOOT_SEED", "REGIME_COLS", "boot_rng", "regime", "group_by_regime", "sigma_ratio"]

N_BOOT = 2000  # bootstrap resamples for every CI
BOOT_SEED = 20260  # the bootstrap's own generator seed (CIs are reproducible)
REGIME_COLS = list(SIMS_REGIME_COLUMNS)


def boot_rng() -> np.random.Generator:
    """A fresh generator for one bootstrap (the same resamples on every call)."""
    return np.random.default_rng(BOOT_SEED)


def regime(res: SettingResult) -> tuple:
    """The regime key (K, loss, d, n_per_class, mu) of a setting, in the order of ``REGIME_COLS``."""
    s = res.setting
    m = s.mixture
    return (m.K, s.learner.loss, m.d, m.n_per_class[0], m.mu)


def group_by_regime(results: Sequence[SettingResult]) -> dict[tuple, list[SettingResult]]:
    """The results grouped by :func:`regime`."""
    groups: dict[tuple, list[SettingResult]] = defaultdict(list)
    for r in results:
        groups[regime(r)].append(r)
    return groups


def sigma_ratio(res: SettingResult) -> float:
    """sigma of the varied class / sigma of the reference class of a K = 2 setting."""
    s = res.setting
    return s.mixture.sigmas[1 - s.reference] / s.mixture.sigmas[s.reference]
