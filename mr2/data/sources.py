"""Where each dataset lives on disk, and how it is read into numpy arrays.

Every reader returns ``(x_train, y_train, x_test, y_test, class_names, source)`` with uint8 images
(N, C, H, W) and integer labels. Sources, in lookup order (docs/setup.md, Data):

* Fashion-MNIST: ``data_dir`` (explicit), ``$MR2_DATA``, ``/usr/share/datasets/fashion-mnist``
  (Debian's ``dataset-fashion-mnist``), then a torchvision download where installed and online.
* digits: ``sklearn.datasets.load_digits`` (ships inside scikit-learn, always there).
* CIFAR-10/100: the python-pickle batches (``cifar-10-batches-py``, ``cifar-100-python``) or their
  ``.tar.gz`` archive under ``data_dir`` / ``$MR2_DATA``, else a torchvision download.
* folder: ``data_dir/{train,test}[/val]/<class>/<image>``, read with Pillow.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from mr2.data.idx import FMNIST_INSTALL, read_idx
from mr2.data.splits import stratified_split
from mr2_core.checks import bad, one_line
from mr2_core.contracts import FASHION_MNIST_CLASSES

__all__ = [
    "DATASET_NAMES",
    "DEBIAN_FMNIST_DIR",
    "FMNIST_FILES",
    "find_fashion_mnist",
    "load_arrays",
]

DATASET_NAMES = ("fashion-mnist", "digits", "cifar10", "cifar100", "folder")
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
FOLDER_LAYOUT = "DIR/train/<class>/<image> and DIR/test/<class>/<image>"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _fmnist_found(folder: Path) -> dict[str, Path]:
    """Those of the four IDX files that ``folder`` holds (``.gz`` or not)."""
    found = {}
    for key, stem in FMNIST_FILES.items():
        for cand in (folder / f"{stem}.gz", folder / stem):
            if cand.is_file():
                found[key] = cand
                break
    return found


def _fmnist_files_in(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (``.gz`` or not), or None when one is missing."""
    found = _fmnist_found(folder)
    return found if len(found) == len(FMNIST_FILES) else None


def _refuse_incomplete(folder: Path, fix: str) -> None:
    """A folder with some of the four files is a broken copy: refuse it rather than fall back silently
    to another copy (the run would train on data the user did not point to)."""
    found = _fmnist_found(folder)
    if found and len(found) < len(FMNIST_FILES):
        missing = [FMNIST_FILES[k] for k in FMNIST_FILES if k not in found]
        raise ValueError(f"{folder}: incomplete Fashion-MNIST, {', '.join(missing)} (.gz) missing; {fix}")


def _fmnist_candidates(root: Path) -> list[Path]:
    # a root may be the folder itself, a data root holding fashion-mnist/, or torchvision's layout
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Locate the four Fashion-MNIST IDX files, in the documented lookup order.

    Returns a mapping ``train_images, train_labels, test_images, test_labels -> Path``.
    An explicit ``data_dir`` that lacks the files is an error (no silent fallback to other data), and
    so is a folder on the lookup path that holds only some of them (an incomplete ``$MR2_DATA``).
    """
    if data_dir is not None:
        for cand in _fmnist_candidates(Path(data_dir)):
            if files := _fmnist_files_in(cand):
                return files
            _refuse_incomplete(cand, "copy the missing files there, or pass another --data-dir")
        raise bad(
            "data_dir",
            str(data_dir),
            f"a folder holding {', '.join(f'{s}.gz' for s in FMNIST_FILES.values())} "
            f"(Debian puts them in {DEBIAN_FMNIST_DIR}: {FMNIST_INSTALL}); for your own images use "
            f"dataset='folder' (--set dataset=folder) with {FOLDER_LAYOUT}",
        )
    tried = []
    fixes = {}  # root -> how to mend an incomplete copy in it
    if env := os.environ.get("MR2_DATA"):
        fixes[Path(env)] = (
            "copy the missing files there, or set MR2_DATA to another folder (or unset it to use "
            f"{DEBIAN_FMNIST_DIR})"
        )
    fixes.setdefault(DEBIAN_FMNIST_DIR, f"reinstall the system copy: {FMNIST_INSTALL}")
    roots = list(fixes)
    for root in roots:
        for cand in _fmnist_candidates(root):
            tried.append(str(cand))
            if files := _fmnist_files_in(cand):
                return files
            _refuse_incomplete(cand, fixes[root])
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
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{files[f'{split}_images']}: images {x.shape} / labels {y.shape} do not form Fashion-MNIST "
                f"(expected (N, 28, 28) and (N,)); reinstall: {FMNIST_INSTALL}"
            )
        if x.dtype != np.uint8:
            # the pixel scale of other types is a guess ([0, 1]? [0, 255]?): refuse rather than guess
            raise ValueError(
                f"{files[f'{split}_images']}: images of type {x.dtype}; expected uint8 pixels 0..255 (IDX "
                "type 0x08, as in Fashion-MNIST). Convert them, e.g. mr2.data.write_idx(path, "
                "np.round(x * 255).astype(np.uint8)) for pixels in [0, 1]"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0 or y.max(initial=0) >= 10:
            raise ValueError(
                f"{files[f'{split}_labels']}: labels of type {y.dtype} in [{y.min(initial=0)}, "
                f"{y.max(initial=0)}]; expected integers 0..9 (labels < 10); reinstall: {FMNIST_INSTALL}"
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
    from mr2_core.progress import progress_bar

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
    for path in progress_bar(files, desc=f"reading {split_dir.name}", leave=False):  # I/O: one file at a time
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if size is None:
                    size = img.size[0]
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8).reshape(size, size, channels))
        except Image.DecompressionBombError as exc:  # a header claiming a huge image: not decoded
            raise ValueError(
                f"{path}: refused, a possible decompression bomb ({one_line(exc)}); delete or replace it"
            ) from None
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


# ----------------------------------------------------------------------------------------- loading
@lru_cache(maxsize=4)
def load_arrays(
    name: str, data_dir: str | None = None, channels: int = 3, image_size: int | None = None
) -> tuple:
    """Raw ``(x_train, y_train, x_test, y_test, class_names, source)`` as numpy, cached per process."""
    if name == "fashion-mnist":
        return _load_fashion_mnist(data_dir)
    if name == "digits":
        if data_dir is not None:  # refuse: it would train on digits while config.json names the folder
            raise bad("data_dir", data_dir, "None with dataset='digits' (scikit-learn's copy: no folder is "
                      f"read); for your own images add --set dataset=folder ({FOLDER_LAYOUT})")  # fmt: skip
        return _load_digits()
    if name in CIFAR_DIRS:
        return _load_cifar(name, data_dir)
    if name == "folder":
        return _load_folder(data_dir, channels, image_size)
    raise bad("dataset", name, f"one of {list(DATASET_NAMES)}")
