"""A dataset split three ways and held in memory: training, validation (for model selection) and test.

``load_dataset`` holds out a seeded, stratified validation split from the training set (model
selection never looks at the test split) and computes the per-channel normalisation from the
remaining training images only. The sets are small (at most 60,000 images), so they stay in memory as
tensors.

Whatever the source, the arrays are checked before any training (``_check_arrays``,
``_check_classes``): uint8 images of one shape in every split, integer labels in [0, K), at least one
training image, and every class present in the training, validation and test splits. A bad dataset is
a ValueError naming the source and what to change, at load time, not a tensor error an epoch later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from mr2.data import splits
from mr2.data.sources import DATASET_NAMES, load_arrays
from mr2.data.splits import stratified_split
from mr2_core.checks import bad

_HALVES_STREAM, _LONG_TAIL_STREAM = 1, 2  # SeedSequence streams of the optional splitting steps

__all__ = ["ImageData", "load_dataset"]


@dataclass(frozen=True)
class ImageData:
    """A dataset split three ways, in memory.

    Images are uint8 tensors (N, C, H, W) in [0, 255]; labels are int64 (N,) in [0, K).
    ``mean``/``std`` are per-channel statistics of the training split in [0, 1] units.
    """

    name: str
    class_names: tuple[str, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def class_counts(self) -> torch.Tensor:
        """Training-split images per class, shape (K,)."""
        return torch.bincount(self.y_train, minlength=self.num_classes)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    max_train_samples: int | None = None,
    train_subset: str = "all",
    imbalance_ratio: float | None = None,
    channels: int = 3,
    image_size: int | None = None,
) -> ImageData:
    """Load ``name`` and hold out a stratified validation split of the training set.

    Args:
        name: one of ``DATASET_NAMES``.
        data_dir: where to look first (see the module docstring); required for ``folder``.
        val_fraction: fraction of each class's training images held out for validation, in [0, 1).
        split_seed: seed of the validation split (and of the ``max_train_samples`` subsample).
        max_train_samples: keep at most this many training images (stratified), for quick runs.
        train_subset: ``all``, or ``first-half``/``second-half``: disjoint stratified halves of the
            training split (after the validation hold-out), e.g. to pretrain on one and probe on the other.
        imbalance_ratio: make the training split long-tailed, n_k = n_max r^(-k/(K-1)) in label order
            (``mr2.data.splits.long_tail_counts``); the validation and test splits stay as they are
            (balanced for the balanced sets). None: keep every class as stored.
        channels, image_size: only for ``folder`` (1 or 3 channels; resize to a square side, pixels).
    """
    if name not in DATASET_NAMES:
        raise bad("dataset", name, f"one of {list(DATASET_NAMES)}")
    if not 0.0 < val_fraction < 1.0:
        raise bad(
            "val_fraction", val_fraction, "a fraction in (0, 1): model selection needs a validation split"
        )
    key_dir = None if data_dir is None else str(data_dir)
    x_tr, y_tr, x_te, y_te, names, source = load_arrays(name, key_dir, channels, image_size)
    _check_arrays(source, x_tr, y_tr, x_te, y_te, names)
    rng = np.random.default_rng(split_seed)
    keep, held = stratified_split(y_tr, val_fraction, rng)
    # the optional steps draw from streams of their own: a run without them splits as before
    if train_subset != "all":
        half_rng = np.random.default_rng(np.random.SeedSequence([split_seed, _HALVES_STREAM]))
        keep = keep[splits.train_subset(y_tr[keep], train_subset, half_rng)]
    if imbalance_ratio is not None:
        lt_rng = np.random.default_rng(np.random.SeedSequence([split_seed, _LONG_TAIL_STREAM]))
        keep = keep[splits.long_tail_subsample(y_tr[keep], imbalance_ratio, lt_rng)]
    if max_train_samples is not None:
        if max_train_samples < len(names):
            raise bad("max_train_samples", max_train_samples, f"at least one image per class ({len(names)})")
        if max_train_samples < len(keep):
            sub, _ = stratified_split(y_tr[keep], 1.0 - max_train_samples / len(keep), rng)
            keep = keep[sub]
    _check_classes(
        source, names, {"training": y_tr[keep], "validation": y_tr[held], "test": y_te}, val_fraction
    )
    x_train = torch.from_numpy(np.ascontiguousarray(x_tr[keep]))
    # per-channel statistics of the training split only (the validation and test images stay unseen)
    pix = x_train.double().div_(255.0).transpose(0, 1).reshape(x_train.shape[1], -1)
    mean = tuple(pix.mean(dim=1).tolist())
    std = tuple(pix.std(dim=1).clamp_min(1e-3).tolist())

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return ImageData(
        name=name, class_names=tuple(names),
        x_train=x_train, y_train=t(y_tr[keep].astype(np.int64)), x_val=t(x_tr[held]),
        y_val=t(y_tr[held].astype(np.int64)),
        x_test=t(x_te), y_test=t(np.asarray(y_te, dtype=np.int64)),
        mean=mean, std=std, source=source,
    )  # fmt: skip


def _check_arrays(source: str, x_tr, y_tr, x_te, y_te, names) -> None:
    """Refuse arrays that would fail later, or train silently on nonsense (see the module docstring)."""
    k = len(names)
    for split, x, y in (("training", x_tr, y_tr), ("test", x_te, y_te)):
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{source}: {split} images of shape {x.shape} with labels of shape {y.shape}; expected "
                "images (N, C, H, W) and N labels"
            )
        if x.dtype != np.uint8:  # other types have no agreed pixel scale: refuse rather than guess
            raise ValueError(
                f"{source}: {split} images of type {x.dtype}; expected uint8 pixels 0..255 (convert them, "
                "e.g. np.round(x * 255).astype(np.uint8) for pixels in [0, 1])"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{source}: {split} labels of type {y.dtype}; expected integer class indices")
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise ValueError(
                f"{source}: {split} labels in [{y.min()}, {y.max()}]; expected class indices 0..{k - 1} "
                f"({k} classes)"
            )
    if len(x_tr) == 0:
        raise ValueError(f"{source}: no training images; check the dataset files or --data-dir")
    if len(x_te) == 0:
        raise ValueError(f"{source}: no test images; check the dataset files or --data-dir")
    if x_tr.shape[2] != x_tr.shape[3]:  # the models take one side (image_size, input_size)
        raise ValueError(
            f"{source}: images are {x_tr.shape[2]}x{x_tr.shape[3]} pixels (H x W); expected square images, "
            "as the models take one side: resize or pad them to a square"
        )
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise ValueError(
            f"{source}: training images are {'x'.join(map(str, x_tr.shape[1:]))} (C x H x W) but test images "
            f"are {'x'.join(map(str, x_te.shape[1:]))}; both splits need one image size (resize one of them)"
        )


def _check_classes(source: str, names, labels: dict[str, np.ndarray], val_fraction: float) -> None:
    """Every class needs images in each split: its per-class accuracy is otherwise undefined (and model
    selection or the final metrics fail after the whole training)."""
    for split, y in labels.items():
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(names))
        missing = [str(names[j]) for j in np.flatnonzero(counts == 0)]
        if not missing:
            continue
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        fix = (
            f"raise val_fraction (now {val_fraction:g}) or add training images of those classes"
            if split == "validation"
            else "add images of those classes, or leave them out of the dataset"
        )
        raise ValueError(f"{source}: no {split} images of class(es) {shown}; {fix}")
