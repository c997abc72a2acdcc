"""Image classification data: Fashion-MNIST, scikit-learn digits, CIFAR-10/100, image folders.

* ``mr2.data.idx``: the IDX file format;
* ``mr2.data.sources``: where each dataset lives on disk and how it is read (``load_arrays``);
* ``mr2.data.dataset``: the in-memory three-way split (``load_dataset`` -> ``ImageData``);
* ``mr2.data.batching``: index batches, normalisation and augmentation as tensor ops.

Every loader returns uint8 images shaped (N, C, H, W) and int64 labels.
"""

from mr2.data.batching import AugmentationPlan, augment, batch_indices, normalize, to_device
from mr2.data.dataset import ImageData, load_dataset
from mr2.data.idx import read_idx, write_idx
from mr2.data.sources import DATASET_NAMES, FMNIST_FILES, find_fashion_mnist, load_arrays
from mr2.data.splits import stratified_split
from mr2_core.contracts import FASHION_MNIST_CLASSES

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "FMNIST_FILES",
    "ImageData",
    "load_dataset",
    "load_arrays",
    "read_idx",
    "write_idx",
    "find_fashion_mnist",
    "stratified_split",
    "batch_indices",
    "normalize",
    "augment",
    "AugmentationPlan",
    "to_device",
]
