"""Shared pytest set-up: headless plotting, a bounded thread count on the 2-core CI machine, and the
fixtures several test modules use."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture
def one_torch_thread():
    """Tiny nets run fastest on one thread; two threads on a shared 2-core box mostly spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_system_fmnist(monkeypatch, tmp_path):
    """Only what a test writes can be found: no MR2_DATA, no system copy, no torchvision download."""
    from mr2.data import sources

    monkeypatch.delenv("MR2_DATA", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FMNIST_DIR", tmp_path / "no-system-copy")

    def no_download(*args, **kwargs):
        raise ImportError("torchvision hidden by the test")

    monkeypatch.setattr(sources, "_torchvision_download", no_download)
