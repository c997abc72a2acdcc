"""Progress bars only on a terminal (mr2_core.progress): a log redirected to a file has no carriage
returns and keeps its per-epoch lines; on a terminal the bars are drawn, and ``--no-progress`` hides all
of them, the image-folder reader's included.

The end-to-end checks run ``mr2 train`` in a subprocess with its output in a file or on a pseudo
terminal, on a tiny image folder (2 classes, 8x8 pixels) and one epoch: a few seconds each.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import pytest

from mr2_core import progress

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # per training subprocess (seconds of CPU on an idle machine; minutes on a busy one)
EPOCH_LINE = "epoch 1/1:"


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_bars_only_on_a_terminal_and_never_when_hidden(monkeypatch):
    monkeypatch.delenv(progress.NO_PROGRESS_ENV, raising=False)
    assert progress.bars_wanted(True, _Stream(tty=True))
    assert not progress.bars_wanted(True, _Stream(tty=False))
    assert not progress.bars_wanted(False, _Stream(tty=True))
    monkeypatch.setenv(progress.NO_PROGRESS_ENV, "0")  # "0" means not hidden
    assert progress.bars_wanted(True, _Stream(tty=True))
    with progress.bars_hidden():
        assert not progress.bars_wanted(True, _Stream(tty=True))
    assert os.environ[progress.NO_PROGRESS_ENV] == "0"  # restored
    with progress.bars_hidden(False):
        assert progress.bars_wanted(True, _Stream(tty=True))


def test_a_bar_on_a_file_writes_nothing_and_a_terminal_bar_draws(monkeypatch):
    monkeypatch.delenv(progress.NO_PROGRESS_ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    for tty in (False, True):
        out = _Stream(tty=tty)
        assert list(progress.progress_bar(range(3), file=out, mininterval=0)) == [0, 1, 2]
        assert ("\r" in out.getvalue()) == tty, repr(out.getvalue())


def _image_folder(root: Path, side: int = 8) -> Path:
    """root/{train,test}/{dark,light}/*.png: two classes told apart by their brightness."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        for name, level in (("dark", 60), ("light", 190)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(level, 25, (side, side)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mr2", "train", "--preset", "digits-smoke", "--loss", "ce", "--seeds", "0",
        "--epochs", "1", "--data-dir", str(data), "--set", "dataset=folder", "--set", "image_channels=1",
        "--set", "val_fraction=0.25", "--set", "log_every=1", "--out", str(out), "--threads", "1", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", progress.NO_PROGRESS_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run_on_terminal(argv: list[str], log: Path) -> tuple[int, str, str]:
    """Run with stderr on a pseudo terminal (where tqdm draws) and stdout in ``log``."""
    master, slave = pty.openpty()
    # a new pseudo terminal is 0 columns wide, where tqdm draws empty bars: give it a real size
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=slave, env=_env(), cwd=log.parent)
        os.close(slave)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rc = proc.wait(timeout=TIMEOUT_S)
        reader.join(timeout=10)
    os.close(master)
    return rc, log.read_text(), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    pytest.importorskip("PIL")
    return _image_folder(tmp_path_factory.mktemp("images"))


@pytest.mark.slow
def test_a_log_redirected_to_a_file_reads_line_by_line(folder, tmp_path):
    log = tmp_path / "train.log"
    with open(log, "w") as fh:
        proc = subprocess.run(_train_argv(folder, tmp_path / "runs"), stdout=fh, stderr=subprocess.STDOUT,
                              env=_env(), cwd=tmp_path, timeout=TIMEOUT_S)  # fmt: skip
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text, f"carriage returns in a redirected log:\n{text!r}"
    assert EPOCH_LINE in text, text


@pytest.mark.slow
def test_terminal_bars_and_no_progress(folder, tmp_path):
    rc, out, term = _run_on_terminal(_train_argv(folder, tmp_path / "a"), tmp_path / "a.log")
    assert rc == 0, out + term
    assert "\r" in term, f"no progress bar drawn on a terminal:\n{term!r}"
    assert "reading train" in term  # the image-folder reader's bar
    assert EPOCH_LINE in out
    rc, out, term = _run_on_terminal(_train_argv(folder, tmp_path / "b", "--no-progress"), tmp_path / "b.log")
    assert rc == 0, out + term
    assert "\r" not in term and "reading" not in term, f"--no-progress drew a bar:\n{term!r}"
    assert EPOCH_LINE in out  # the per-epoch lines stay
