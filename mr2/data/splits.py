"""Seeded, stratified index splits of a labelled set (validation hold-out, subsamples, test splits)."""

from __future__ import annotations

import numpy as np

from common.checks import bad

__all__ = ["stratified_split"]


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with ``round(fraction * n_k)`` of each class held out.

    Vectorised: shuffle, stable-sort by class, then rank within class. Each class keeps at least one
    sample. Both index arrays are sorted (so the kept order does not depend on the draw).
    """
    labels = np.asarray(labels)
    if not 0.0 <= fraction < 1.0:
        raise bad("fraction", fraction, "a fraction in [0, 1)")
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]
    sorted_labels = labels[order]
    classes, starts, counts = np.unique(sorted_labels, return_index=True, return_counts=True)
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    n_out = np.minimum(np.round(fraction * counts).astype(np.int64), counts - 1)
    held = rank < np.repeat(n_out, counts)
    return np.sort(order[~held]), np.sort(order[held])
