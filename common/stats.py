"""Bootstrap confidence intervals, rliable-style: one generic wrapper over plain metric functions.

Metrics are plain functions of an array whose first axis is the resampled unit (runs/seeds).
Every draw comes from an explicit ``np.random.Generator`` (rliable draws from global ``np.random``
although it is handed a ``random_state``; we do not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from common.seeding import as_generator

__all__ = ["bootstrap_ci", "BootstrapResult"]


class BootstrapResult(tuple):
    """``(point, (low, high))`` with named access: ``.point``, ``.low``, ``.high``."""

    __slots__ = ()

    def __new__(cls, point: Any, low: Any, high: Any):
        return super().__new__(cls, (point, (low, high)))

    point = property(lambda self: self[0])
    low = property(lambda self: self[1][0])
    high = property(lambda self: self[1][1])


def bootstrap_ci(
    data: Any,
    statistic: Callable[[np.ndarray], Any] = lambda x: np.mean(x, axis=0),
    *,
    rng: int | np.random.Generator,
    n_boot: int = 2000,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap over the first axis of ``data``.

    Args:
        data: shape (n_units, ...), e.g. (num_runs, num_classes); n_units >= 2.
        statistic: maps an array shaped like ``data`` to a float or an array (vectorised over the
            trailing axes). It is applied to all ``n_boot`` resamples at once when it accepts a
            leading batch axis (``axis=1`` after stacking), otherwise resample by resample.
        rng: a seed or a Generator; the same seed gives the same interval.
        n_boot: number of resamples.
        confidence: two-sided coverage, in (0, 1).

    Returns:
        ``BootstrapResult(point, (low, high))`` where ``point = statistic(data)``.
    """
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] < 2:
        raise ValueError(f"data with shape {arr.shape}: expected at least 2 units along the first axis")
    if not np.all(np.isfinite(arr)):
        raise ValueError("data contains NaN or inf: expected finite scores")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: expected a number in (0, 1)")
    if n_boot < 10:
        raise ValueError(f"n_boot={n_boot!r}: expected at least 10 resamples")
    gen = as_generator(rng)
    n = arr.shape[0]
    idx = gen.integers(0, n, size=(n_boot, n))
    stats = np.stack([np.asarray(statistic(arr[i]), dtype=np.float64) for i in idx])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    point = np.asarray(statistic(arr), dtype=np.float64)
    if point.ndim == 0:
        return BootstrapResult(float(point), float(low), float(high))
    return BootstrapResult(point, low, high)
