"""Per-class summaries of a classifier: the worst class, the bottom and top tenth, the spread.

One home for these numbers, so that training (``mr2.metrics``), reports and the synthetic test data
compute the tails the same way: the ceil(``TAIL_FRACTION`` x K) worst or best classes.
"""

from __future__ import annotations

import math

import numpy as np

from mr2_core.checks import bad
from mr2_core.contracts import TAIL_FRACTION

__all__ = ["class_summary", "tail_size"]


def tail_size(num_classes: int) -> int:
    """Classes in the bottom (or top) tail: ceil(TAIL_FRACTION x K), at least 1."""
    return max(1, math.ceil(TAIL_FRACTION * num_classes))


def class_summary(per_class: np.ndarray) -> dict[str, float | int]:
    """Worst class, bottom/top-10% means and spread of per-class accuracies (K,) -> dict.

    Keys: ``worst_class`` (index), ``worst_class_accuracy``, ``bottom10_accuracy`` (mean of the
    ceil(0.1 K) lowest), ``top10_accuracy`` (mean of the ceil(0.1 K) highest), ``class_accuracy_std``
    (population standard deviation over classes), ``balanced_accuracy`` (mean over classes).
    """
    acc = np.asarray(per_class, dtype=np.float64)
    if acc.ndim != 1 or acc.size < 2 or not np.all(np.isfinite(acc)):
        raise bad("per_class", acc, "a 1-D array of at least 2 finite accuracies (every class present)")
    tail = tail_size(acc.size)
    srt = np.sort(acc)
    return {
        "worst_class": int(np.argmin(acc)),
        "worst_class_accuracy": float(srt[0]),
        "bottom10_accuracy": float(srt[:tail].mean()),
        "top10_accuracy": float(srt[-tail:].mean()),
        "class_accuracy_std": float(acc.std()),
        "balanced_accuracy": float(acc.mean()),
    }
