"""Seeded, stratified index splits of a labelled set (validation hold-out, subsamples, test splits)."""

from __future__ import annotations

import numpy as np

from mr2_core.checks import bad

__all__ = ["stratified_split", "long_tail_counts", "long_tail_subsample", "TRAIN_SUBSETS", "train_subset"]


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


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> np.ndarray:
    """Exponential long-tailed profile n_k = floor(n_max * ratio^(-k / (K - 1))), k = 0..K-1.

    The profile of CIFAR-10-LT (Cao et al. 2019; Cui et al. 2019): class 0 keeps ``n_max`` images,
    class K-1 keeps ``n_max / ratio``; ``ratio`` = 1 keeps every class at ``n_max``. Class order is
    the label order. Returns int64 counts (K,), each at least 1.
    """
    if ratio < 1 or not np.isfinite(ratio):
        raise bad("imbalance_ratio", ratio, "a finite ratio >= 1 (n_max / n_min)")
    if num_classes < 2 or n_max < 1:
        raise bad("n_max", n_max, "at least one image per class and K >= 2 classes")
    k = np.arange(num_classes, dtype=np.float64)
    counts = np.floor(n_max * ratio ** (-k / (num_classes - 1)) + 1e-9).astype(np.int64)
    return np.maximum(counts, 1)


def long_tail_subsample(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a long-tailed subsample of a labelled set (``long_tail_counts`` with n_max =
    the smallest class's count): each class keeps a uniformly drawn subset of its images."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    want = long_tail_counts(int(counts.min()), len(classes), ratio)
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]  # shuffled within each class
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    return np.sort(order[rank < np.repeat(want, counts)])


TRAIN_SUBSETS = ("all", "first-half", "second-half")


def train_subset(labels: np.ndarray, subset: str, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``subset`` of a labelled set: ``all``, or one of two disjoint stratified
    halves (``first-half``/``second-half``; the same ``rng`` state gives complementary halves), e.g. a
    backbone pretrained on one half and probed on the other."""
    labels = np.asarray(labels)
    if subset == "all":
        return np.arange(len(labels))
    if subset not in TRAIN_SUBSETS:
        raise bad("train_subset", subset, f"one of {list(TRAIN_SUBSETS)}")
    first, second = stratified_split(labels, 0.5, rng)
    return first if subset == "first-half" else second
