"""mr2.data: loaders on small files written in the real formats, the split, batching, augmentation."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest
import torch

from mr2 import data as mdata

N_TRAIN, N_TEST, SIDE = 60, 20, 28  # tiny Fashion-MNIST-shaped files


def _write_fmnist(folder, gz=True, n_train=N_TRAIN, n_test=N_TEST, seed=0):
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, SIDE, SIDE), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, SIDE, SIDE), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for key, stem in mdata.FMNIST_FILES.items():
        mdata.write_idx(folder / f"{stem}{suffix}", arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_data_idx_round_trip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    mdata.write_idx(path, arr)
    back = mdata.read_idx(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_data_idx_corrupt_files_name_the_fix(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="bad magic number.*apt-get install -y dataset-fashion-mnist"):
        mdata.read_idx(path)
    mdata.write_idx(path, np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])  # truncated body
    with pytest.raises(ValueError, match="needs 100"):
        mdata.read_idx(path)
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="unreadable IDX"):
        mdata.read_idx(gz)


def test_data_fashion_mnist_from_explicit_dir(tmp_path, no_system_fmnist):
    arrays = _write_fmnist(tmp_path / "fm")
    data = mdata.load_dataset("fashion-mnist", data_dir=tmp_path / "fm", val_fraction=0.2, split_seed=3)
    assert data.class_names == mdata.FASHION_MNIST_CLASSES
    assert data.x_train.shape == (50, 1, SIDE, SIDE) and data.x_val.shape == (10, 1, SIDE, SIDE)
    assert data.x_test.dtype == torch.uint8 and data.y_test.dtype == torch.int64
    np.testing.assert_array_equal(data.x_test[:, 0].numpy(), arrays["test_images"])
    # stratified: 6 images per class, 20% of them (1.2 -> 1) held out from each
    assert torch.bincount(data.y_val, minlength=10).tolist() == [1] * 10
    # train + val is exactly the training file, with no image in both
    both = torch.cat([data.x_train, data.x_val]).view(N_TRAIN, -1)
    assert torch.unique(both, dim=0).shape[0] == N_TRAIN
    # normalisation comes from the training split only
    expected = data.x_train.double().mean().item() / 255.0
    assert data.mean[0] == pytest.approx(expected, rel=1e-9)


def test_data_fashion_mnist_lookup_order(tmp_path, monkeypatch, no_system_fmnist):
    _write_fmnist(tmp_path / "envroot" / "fashion-mnist", gz=False)
    monkeypatch.setenv("MR2_DATA", str(tmp_path / "envroot"))
    files = mdata.find_fashion_mnist(None)
    assert files["train_images"].parent == tmp_path / "envroot" / "fashion-mnist"
    # an explicit folder wins over MR2_DATA
    _write_fmnist(tmp_path / "explicit")
    assert mdata.find_fashion_mnist(tmp_path / "explicit")["test_labels"].parent == tmp_path / "explicit"
    # an explicit folder without the files is an error, not a silent fallback
    with pytest.raises(ValueError, match="data_dir=.*apt-get install"):
        mdata.find_fashion_mnist(tmp_path / "empty")


def test_data_fashion_mnist_missing_names_the_install_command(no_system_fmnist):
    with pytest.raises(ValueError, match=r"apt-get install -y dataset-fashion-mnist.*--data-dir"):
        mdata.find_fashion_mnist(None)


def test_data_fashion_mnist_bad_labels(tmp_path, no_system_fmnist):
    _write_fmnist(tmp_path / "fm")
    mdata.write_idx(tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz", np.full(N_TEST, 12, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels < 10"):
        mdata.load_dataset("fashion-mnist", data_dir=tmp_path / "fm")


def _cifar_batch(n, k, label_key, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # a known R, G, B image
    return {b"data": data, label_key: rng.integers(0, k, n).tolist(), b"batch_label": b"x"}


def _write_cifar10(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump(_cifar_batch(per_batch, 10, b"labels", i), fh, protocol=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(_cifar_batch(6, 10, b"labels", 9), fh, protocol=2)
    names = [
        n.encode()
        for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    ]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, fh, protocol=2)
    return folder


def test_data_cifar10_pickle_batches(tmp_path, monkeypatch):
    monkeypatch.delenv("MR2_DATA", raising=False)
    _write_cifar10(tmp_path)
    x_tr, y_tr, x_te, y_te, names, _ = mdata.load_arrays("cifar10", str(tmp_path))
    assert x_tr.shape == (20, 3, 32, 32) and x_te.shape == (6, 3, 32, 32)
    assert names[0] == "airplane" and len(names) == 10
    assert (x_tr[0, 0] == 10).all() and (x_tr[0, 1] == 20).all() and (x_tr[0, 2] == 30).all()
    assert y_tr.dtype == np.int64 and y_tr.max() < 10


def test_data_cifar100_from_archive_and_corrupt_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("MR2_DATA", raising=False)
    src = tmp_path / "src" / "cifar-100-python"
    src.mkdir(parents=True)
    for split, n in (("train", 300), ("test", 100)):
        batch = _cifar_batch(n, 100, b"fine_labels", n)
        # every class in every split: load_dataset refuses a class without images in a split
        batch[b"fine_labels"] = [i % 100 for i in range(n)]
        with open(src / split, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    with open(src / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, fh, protocol=2)
    root = tmp_path / "data"
    root.mkdir()
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="cifar-100-python")
    data = mdata.load_dataset("cifar100", data_dir=root, val_fraction=0.25)
    assert data.num_classes == 100 and data.in_channels == 3 and data.image_size == 32
    assert len(data.y_train) + len(data.y_val) == 300 and len(data.y_test) == 100
    (root / "cifar-100-python" / "test").write_bytes(b"garbage")
    mdata.load_arrays.cache_clear()
    with pytest.raises(ValueError, match="corrupt CIFAR batch.*extract cifar-100-python.tar.gz"):
        mdata.load_arrays("cifar100", str(root))


def test_data_cifar_missing_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("MR2_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    refuse = lambda *a, **k: (_ for _ in ()).throw(ImportError())  # noqa: E731 - no torchvision here
    monkeypatch.setattr(mdata.sources, "_torchvision_download", refuse)
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz.*pip install torchvision"):
        mdata.load_arrays("cifar10", str(tmp_path / "nothing"))


def _write_folder(root, mode, size=(12, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("cat", "dog", "eel"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(
                    root / split / cls / f"{i}.png"
                )


@pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("L", 1)])
def test_data_image_folder(tmp_path, mode, channels):
    _write_folder(tmp_path / "imgs", mode)
    data = mdata.load_dataset(
        "folder", data_dir=tmp_path / "imgs", channels=channels, image_size=8, val_fraction=0.2
    )
    assert data.class_names == ("cat", "dog", "eel")
    assert data.x_train.shape[1:] == (channels, 8, 8)
    assert len(data.y_train) + len(data.y_val) == 15 and data.y_test.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.bincount(data.y_val).tolist() == [1, 1, 1]


def test_data_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="train/ and test/"):
        mdata.load_dataset("folder", data_dir=tmp_path)
    _write_folder(tmp_path / "imgs", "RGB")
    (tmp_path / "imgs" / "test" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="unreadable image"):
        mdata.load_arrays("folder", str(tmp_path / "imgs"), 3, None)


def test_data_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="dataset='mnist': expected one of.*fashion-mnist.*digits"):
        mdata.load_dataset("mnist")


def test_data_digits_always_available():
    data = mdata.load_dataset("digits", val_fraction=0.1, split_seed=0)
    assert data.num_classes == 10 and data.image_size == 8 and data.in_channels == 1
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    assert int(data.x_train.max()) == 255


def test_data_stratified_split_exact_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    keep, held = mdata.stratified_split(labels, 0.1, np.random.default_rng(1))
    assert np.bincount(labels[held]).tolist() == [1, 2, 3, 4]
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 100
    keep2, held2 = mdata.stratified_split(labels, 0.1, np.random.default_rng(1))
    np.testing.assert_array_equal(held, held2)
    _, held3 = mdata.stratified_split(labels, 0.1, np.random.default_rng(2))
    assert not np.array_equal(held, held3)


def test_data_batches_shard_like_distributed_sampler():
    n, world = 23, 3
    shards = [
        torch.cat(
            mdata.batch_indices(n, 4, generator=torch.Generator().manual_seed(5), rank=r, world_size=world)
        )
        for r in range(world)
    ]
    assert {len(s) for s in shards} == {8}  # padded to 24, 8 per rank
    assert set(torch.cat(shards).tolist()) == set(range(n))
    again = torch.cat(
        mdata.batch_indices(n, 4, generator=torch.Generator().manual_seed(5), rank=1, world_size=world)
    )
    assert torch.equal(again, shards[1])
    assert [len(b) for b in mdata.batch_indices(10, 4, generator=None, drop_last=True)] == [4, 4]


def test_data_augment_seeded_and_valid():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    a = mdata.augment(x, crop_padding=2, hflip=True, generator=torch.Generator().manual_seed(0))
    b = mdata.augment(x, crop_padding=2, hflip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    flipped = mdata.augment(x, crop_padding=0, hflip=True, generator=torch.Generator().manual_seed(3))
    for i in range(2):  # each image is itself or its mirror
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    # a crop at offset (dy, dx) of the zero-padded image: every pixel is 0 or an original value
    assert set(a.unique().tolist()) <= set(x.unique().tolist()) | {0}
