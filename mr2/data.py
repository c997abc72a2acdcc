"""Image classification data held in memory: Fashion-MNIST, scikit-learn digits, CIFAR-10/100, folders.

Every loader returns uint8 images shaped (N, C, H, W) and int64 labels; ``load_dataset`` holds out a
seeded, stratified validation split from the training set (model selection never looks at the test
split) and computes the per-channel normalisation from the remaining training images only.

The sets are small (at most 60,000 images), so they stay in memory as tensors and ``batch_indices``
replaces a DataLoader: shuffling, DistributedSampler-style sharding and augmentation are tensor ops
driven by an explicit ``torch.Generator`` (same seed, same batches).

Sources, in lookup order (docs/setup.md, Data):

* Fashion-MNIST: ``data_dir`` (explicit), ``$MR2_DATA``, ``/usr/share/datasets/fashion-mnist``
  (Debian's ``dataset-fashion-mnist``), then a torchvision download where installed and online.
* digits: ``sklearn.datasets.load_digits`` (ships inside scikit-learn, always there).
* CIFAR-10/100: the python-pickle batches (``cifar-10-batches-py``, ``cifar-100-python``) or their
  ``.tar.gz`` archive under ``data_dir`` / ``$MR2_DATA``, else a torchvision download.
* folder: ``data_dir/{train,test}[/val]/<class>/<image>``, read with Pillow.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.checks import bad
from common.contracts import FASHION_MNIST_CLASSES

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
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
]

DATASET_NAMES = ("fashion-mnist", "digits", "cifar10", "cifar100", "folder")
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_INSTALL = "apt-get update && apt-get install -y dataset-fashion-mnist"
FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# IDX type byte -> numpy dtype (big-endian), from the MNIST file-format description
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


# --------------------------------------------------------------------------------------------- IDX
def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` in the IDX format (gzip-compressed when ``path`` ends in ``.gz``)."""
    arr = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise bad(
            "array.dtype", arr.dtype, f"one of {sorted({np.dtype(v).name for v in _IDX_DTYPES.values()})}"
        )
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a native-endian array; corrupt files raise ValueError."""
    path = Path(path)
    fix = f"delete {path} and reinstall it ({FMNIST_INSTALL}) or download it again"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: unreadable IDX file ({exc}); {fix}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()}); {fix}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header; {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(
            f"{path}: IDX body has {len(body)} bytes, header shape {shape} needs {expected}; {fix}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _fmnist_files_in(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (``.gz`` or not), or None when one is missing."""
    found = {}
    for key, stem in FMNIST_FILES.items():
        for cand in (folder / f"{stem}.gz", folder / stem):
            if cand.is_file():
                found[key] = cand
                break
        else:
            return None
    return found


def _fmnist_candidates(root: Path) -> list[Path]:
    # a root may be the folder itself, a data root holding fashion-mnist/, or torchvision's layout
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Locate the four Fashion-MNIST IDX files, in the documented lookup order.

    Returns a mapping ``train_images, train_labels, test_images, test_labels -> Path``.
    An explicit ``data_dir`` that lacks the files is an error (no silent fallback to other data).
    """
    if data_dir is not None:
        for cand in _fmnist_candidates(Path(data_dir)):
            if files := _fmnist_files_in(cand):
                return files
        raise bad(
            "data_dir",
            str(data_dir),
            f"a folder holding {', '.join(f'{s}.gz' for s in FMNIST_FILES.values())} "
            f"(Debian puts them in {DEBIAN_FMNIST_DIR}: {FMNIST_INSTALL})",
        )
    tried = []
    roots = []
    if env := os.environ.get("MR2_DATA"):
        roots.append(Path(env))
    roots.append(DEBIAN_FMNIST_DIR)
    for root in roots:
        for cand in _fmnist_candidates(root):
            tried.append(str(cand))
            if files := _fmnist_files_in(cand):
                return files
    cache = Path(os.environ.get("MR2_DATA") or Path.home() / ".cache" / "mr2")
    try:
        _torchvision_download("FashionMNIST", cache)
    except ImportError:
        why = "torchvision is not installed"
    except Exception as exc:  # offline, proxy, disk: any failure means "not downloadable here"
        why = f"the torchvision download failed ({type(exc).__name__}: {exc})"
    else:
        if files := _fmnist_files_in(cache / "FashionMNIST" / "raw"):
            return files
        why = "the torchvision download left no IDX files"
    raise ValueError(
        f"Fashion-MNIST not found (looked in {', '.join(tried)}; {why}). Install it with "
        f"`{FMNIST_INSTALL}` (as root), or pass --data-dir / set MR2_DATA to a folder holding the "
        "four IDX .gz files."
    )


def _torchvision_download(cls_name: str, root: Path, **kwargs) -> None:
    import torchvision.datasets  # optional; ImportError is the caller's cue

    getattr(torchvision.datasets, cls_name)(root=str(root), download=True, **kwargs)


def _load_fashion_mnist(data_dir: str | None) -> tuple:
    files = find_fashion_mnist(data_dir)
    arrays = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or y.max(initial=0) >= 10:
            raise ValueError(
                f"{files[f'{split}_images']}: images {x.shape} / labels {y.shape} do not form Fashion-MNIST "
                f"(expected (N, 28, 28) and (N,) with labels < 10); reinstall: {FMNIST_INSTALL}"
            )
    source = str(files["train_images"].parent)
    return (
        arrays["train_images"][:, None], arrays["train_labels"],
        arrays["test_images"][:, None], arrays["test_labels"],
        FASHION_MNIST_CLASSES, source,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ digits
def _load_digits(seed: int = 0, test_fraction: float = 0.2) -> tuple:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 intensities in 0..16 -> uint8 0..255, so every dataset shares one pixel scale
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    # digits has no official test split: a fixed stratified one (seed 0), the same for every run
    train_idx, test_idx = stratified_split(y, test_fraction, np.random.default_rng(seed))
    names = tuple(str(n) for n in bunch.target_names)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], names, "sklearn.datasets.load_digits"


# ------------------------------------------------------------------------------------------- CIFAR
def _unpickle(path: Path, fix: str) -> dict:
    try:
        with open(path, "rb") as fh:
            # the official CIFAR batches are python pickles; only load files you trust
            return pickle.load(fh, encoding="bytes")
    except FileNotFoundError:
        raise ValueError(f"{path}: missing CIFAR batch file; {fix}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: corrupt CIFAR batch ({type(exc).__name__}: {exc}); {fix}") from None


def _cifar_images(batch: dict, path: Path, fix: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: CIFAR batch lacks {b'data'!r} or {label_key!r}; {fix}")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: CIFAR data has shape {data.shape}, expected (N, 3072); {fix}")
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images; {fix}")
    # each row is 1024 red, then green, then blue values, each 32x32 row-major
    return data.reshape(-1, 3, 32, 32), labels


def _find_cifar(name: str, data_dir: str | None) -> Path:
    folder, archive = CIFAR_DIRS[name], CIFAR_ARCHIVES[name]
    roots = [Path(data_dir)] if data_dir is not None else []
    if env := os.environ.get("MR2_DATA"):
        roots.append(Path(env))
    roots.append(Path.home() / ".cache" / "mr2")
    for root in roots:
        if root.name == folder and root.is_dir():
            return root
        if (root / folder).is_dir():
            return root / folder
        if (root / archive).is_file():
            try:
                with tarfile.open(root / archive) as tar:
                    tar.extractall(root, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ValueError(f"{root / archive}: corrupt archive ({exc}); download it again") from None
            if (root / folder).is_dir():
                return root / folder
    cache = Path(data_dir) if data_dir is not None else roots[-2 if len(roots) > 1 else -1]
    try:
        _torchvision_download("CIFAR10" if name == "cifar10" else "CIFAR100", cache)
    except ImportError:
        why = "torchvision is not installed"
    except Exception as exc:
        why = f"the torchvision download failed ({type(exc).__name__}: {exc})"
    else:
        if (cache / folder).is_dir():
            return cache / folder
        why = "the torchvision download left no batches"
    raise ValueError(
        f"{name} not found (looked for {folder}/ or {archive} in {', '.join(map(str, roots))}; {why}). "
        f"Download {archive} from {CIFAR_URL} into --data-dir (or $MR2_DATA), or install torchvision "
        "(pip install torchvision) on a machine with network access."
    )


def _load_cifar(name: str, data_dir: str | None) -> tuple:
    root = _find_cifar(name, data_dir)
    fix = f"delete {root} and extract {CIFAR_ARCHIVES[name]} again (from {CIFAR_URL})"
    if name == "cifar10":
        train_files, test_file, meta_file = (
            [f"data_batch_{i}" for i in range(1, 6)],
            "test_batch",
            "batches.meta",
        )
        label_key, names_key = b"labels", b"label_names"
    else:
        train_files, test_file, meta_file = ["train"], "test", "meta"
        label_key, names_key = b"fine_labels", b"fine_label_names"
    parts = [_cifar_images(_unpickle(root / f, fix), root / f, fix, label_key) for f in train_files]
    x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_images(_unpickle(root / test_file, fix), root / test_file, fix, label_key)
    meta = _unpickle(root / meta_file, fix)
    if names_key not in meta:
        raise ValueError(f"{root / meta_file}: lacks {names_key!r}; {fix}")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key])
    k = len(names)
    if max(y_tr.max(initial=0), y_te.max(initial=0)) >= k:
        raise ValueError(
            f"{root}: labels reach {max(y_tr.max(), y_te.max())} but meta names {k} classes; {fix}"
        )
    return x_tr, y_tr, x_te, y_te, names, str(root)


# ------------------------------------------------------------------------------------ image folders
def _read_folder_split(split_dir: Path, class_names: tuple[str, ...], channels: int, size: int | None):
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("the folder dataset needs Pillow: pip install Pillow") from None
    from tqdm.auto import tqdm

    files, labels = [], []
    for k, cls in enumerate(class_names):
        sub = split_dir / cls
        members = (
            sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if sub.is_dir() else []
        )
        files += members
        labels += [k] * len(members)
    extra = sorted({p.name for p in split_dir.iterdir() if p.is_dir()} - set(class_names))
    if extra:
        raise ValueError(
            f"{split_dir}: class folders {extra} are not among the training classes {list(class_names)}"
        )
    if not files:
        raise ValueError(f"{split_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    mode = "L" if channels == 1 else "RGB"
    images = []
    for path in tqdm(files, desc=f"reading {split_dir.name}", leave=False):  # I/O: one file at a time
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if size is None:
                    size = img.size[0]
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8).reshape(size, size, channels))
        except OSError as exc:
            raise ValueError(f"{path}: unreadable image ({exc}); delete or replace it") from None
    x = np.stack(images).transpose(0, 3, 1, 2)
    return x, np.asarray(labels, dtype=np.int64), size


def _load_folder(data_dir: str | None, channels: int, image_size: int | None) -> tuple:
    if data_dir is None:
        raise bad(
            "data_dir", None, "a folder with train/<class>/<image> and test/<class>/<image> for 'folder'"
        )
    root = Path(data_dir)
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise bad(
            "data_dir", str(root), "a folder holding train/ and test/, each with one sub-folder per class"
        )
    if channels not in (1, 3):
        raise bad("channels", channels, "1 (grey) or 3 (RGB)")
    class_names = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    if len(class_names) < 2:
        raise bad("data_dir", str(root), "at least 2 class folders under train/")
    x_tr, y_tr, size = _read_folder_split(root / "train", class_names, channels, image_size)
    x_te, y_te, _ = _read_folder_split(root / "test", class_names, channels, size)
    return x_tr, y_tr, x_te, y_te, class_names, str(root)


# --------------------------------------------------------------------------------------- splitting
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


# ----------------------------------------------------------------------------------------- loading
@lru_cache(maxsize=4)
def load_arrays(
    name: str, data_dir: str | None = None, channels: int = 3, image_size: int | None = None
) -> tuple:
    """Raw ``(x_train, y_train, x_test, y_test, class_names, source)`` as numpy, cached per process."""
    if name == "fashion-mnist":
        return _load_fashion_mnist(data_dir)
    if name == "digits":
        return _load_digits()
    if name in CIFAR_DIRS:
        return _load_cifar(name, data_dir)
    if name == "folder":
        return _load_folder(data_dir, channels, image_size)
    raise bad("dataset", name, f"one of {list(DATASET_NAMES)}")


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    max_train_samples: int | None = None,
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
    rng = np.random.default_rng(split_seed)
    keep, held = stratified_split(y_tr, val_fraction, rng)
    if max_train_samples is not None:
        if max_train_samples < len(names):
            raise bad("max_train_samples", max_train_samples, f"at least one image per class ({len(names)})")
        if max_train_samples < len(keep):
            sub, _ = stratified_split(y_tr[keep], 1.0 - max_train_samples / len(keep), rng)
            keep = keep[sub]
    x_train = torch.from_numpy(np.ascontiguousarray(x_tr[keep]))
    # per-channel statistics of the training split only (the validation and test images stay unseen)
    pix = x_train.double().div_(255.0).transpose(0, 1).reshape(x_train.shape[1], -1)
    mean = tuple(pix.mean(dim=1).tolist())
    std = tuple(pix.std(dim=1).clamp_min(1e-3).tolist())

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return ImageData(
        name=name, class_names=tuple(names),
        x_train=x_train, y_train=t(y_tr[keep]), x_val=t(x_tr[held]), y_val=t(y_tr[held]),
        x_test=t(x_te), y_test=t(np.asarray(y_te, dtype=np.int64)),
        mean=mean, std=std, source=source,
    )  # fmt: skip


# --------------------------------------------------------------------------------------- iteration
def batch_indices(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> list[torch.Tensor]:
    """Index batches over ``range(n)``: shuffled by ``generator`` (None: in order), sharded like
    ``DistributedSampler`` (every rank draws the same permutation, pads it to a multiple of
    ``world_size`` by wrapping around, and takes every ``world_size``-th index from ``rank``).

    ``batch_size`` is per rank. Returns a list of int64 index tensors.
    """
    if batch_size < 1:
        raise bad("batch_size", batch_size, "a positive integer")
    if not 0 <= rank < world_size:
        raise bad("rank", rank, f"an integer in [0, world_size={world_size})")
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if world_size > 1:
        total = -(-n // world_size) * world_size
        order = torch.cat([order, order[: total - n]])[rank::world_size]
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return list(order[:stop].split(batch_size))


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (or [0, 1] float) images (B, C, H, W) -> float32 standardised per channel."""
    xf = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (xf - m) / s


def augment(x: torch.Tensor, *, crop_padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding (pixels) and random horizontal flip, batched.

    Args:
        x: images (B, C, H, W), any dtype; returned with the same shape and dtype.
        crop_padding: pad each side by this many pixels, then crop back at a random offset.
        hflip: flip each image left-right with probability 1/2.
        generator: a CPU ``torch.Generator`` (draws are made on CPU, then moved to ``x.device``).
    """
    b, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator).to(x.device)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        bidx = torch.arange(b, device=x.device)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x
