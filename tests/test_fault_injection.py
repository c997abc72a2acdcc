"""Fault injection: corrupt files, bad values, unwritable outputs, overflow, interruptions and two
processes on the same work (docs/reliability.md lists every check).

Each case asserts either a ONE-LINE error that names the thing and the fix, with no traceback, or a
correct recovery. The command line runs as a subprocess (``python -m mr2``) where what is checked is the
process itself (the fixture run, the checks that come before any import, signals); the variants of one
check run ``mr2_cli.cli.main`` in this process, which is the same code without an interpreter start (about
2 s of CPU each for torch), so the module stays fast: tiny data (scikit-learn digits, 200 images, one
epoch; a few hundred fake Fashion-MNIST images), one trained run shared by the checkpoint cases.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import mr2
from mr2 import data as mdata
from mr2_cli import cli
from mr2_core.io import atomic_open, check_writable_dir, clean_tmp, write_json
from mr2_core.locks import lock_owner, try_lock
from sims.config import EvalConfig, LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.sweep import cache_path, lock_path, run_sweep
from theory import optimal_margins

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
    "MPLBACKEND": "Agg",
}
TINY = ["--set", "max_train_samples=200", "--set", "epochs=1", "--no-progress"]  # one epoch, 200 images
DIGITS = ["train", "--preset", "digits-smoke", "--loss", "ce", "--seeds", "0", *TINY]
RTOL_BF16 = 1e-2  # bfloat16 keeps about 3 significant digits
CLI_TIMEOUT_S = 180


# ------------------------------------------------------------------------------------------ helpers
def mr2_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m mr2 ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mr2", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def cli_here(argv: list[str], capsys) -> tuple[int, str, str]:
    """``mr2_cli.cli.main(argv)`` in this process: (exit status, stdout, stderr). An exception that escapes
    main (a traceback for the user) fails the test. The signal handlers main installs are restored."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        rc = cli.main(argv)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line_error(err: str, command: str, *needles: str) -> str:
    """``err`` is one line ``mr2 COMMAND: error: ...`` holding every needle, without a traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"mr2 {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    return lines[0]


def run_dir(runs: Path) -> Path:
    return runs / "digits-smoke" / "ce" / "seed0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished run (digits, 200 images, one epoch) through the real command line; its RUNS folder."""
    runs = tmp_path_factory.mktemp("trained") / "runs"
    proc = mr2_cli(*DIGITS, "--out", str(runs), cwd=runs.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (run_dir(runs) / "metrics.json").is_file() and not (run_dir(runs) / ".lock").exists()
    return runs


@pytest.fixture
def copy_of(trained, tmp_path) -> Path:
    """A private copy of the trained RUNS folder, to break."""
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    return runs


def _unfinished(runs: Path) -> Path:
    """The run as if interrupted after its checkpoint was written (no metrics.json)."""
    (run_dir(runs) / "metrics.json").unlink()
    return run_dir(runs) / "checkpoint.pt"


# --------------------------------------------------------------------------- 1. corrupt files
def test_truncated_checkpoint_names_the_file_and_overwrite(copy_of, tmp_path):
    ckpt = _unfinished(copy_of)
    ckpt.write_bytes(ckpt.read_bytes()[:20_000])
    proc = mr2_cli(*DIGITS, "--out", str(copy_of), "--resume", cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "train", str(ckpt), "corrupt or truncated checkpoint", "--overwrite")


def test_text_checkpoint_then_overwrite_recovers(copy_of, capsys):
    ckpt = _unfinished(copy_of)
    ckpt.write_text("1 2 3\nnot a checkpoint\n")
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of), "--resume"], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", str(ckpt), "--overwrite")
    # without --resume the unfinished run is not touched either
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of)], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "unfinished run", "--resume", "--overwrite")
    rc, out, err = cli_here([*DIGITS, "--out", str(copy_of), "--overwrite"], capsys)
    assert rc == 0 and "Traceback" not in err
    metrics = json.loads((run_dir(copy_of) / "metrics.json").read_text())
    assert np.isfinite(metrics["accuracy"]) and len(metrics["per_class_accuracy"]) == 10


def test_corrupt_metrics_json_recovers_from_the_checkpoint(copy_of, trained, capsys):
    metrics = run_dir(copy_of) / "metrics.json"
    metrics.write_text(metrics.read_text()[:100])  # cut short, as by a full disk
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of)], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", str(metrics), "corrupt JSON", "--resume")
    metrics.unlink()  # what the message says to do
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of), "--resume"], capsys)
    assert rc == 0, err
    again = json.loads(metrics.read_text())
    first = json.loads((run_dir(trained) / "metrics.json").read_text())
    assert again["per_class_accuracy"] == first["per_class_accuracy"]  # the same model, re-evaluated


def test_corrupt_config_json_says_overwrite(copy_of, capsys):
    config = run_dir(copy_of) / "config.json"
    config.write_text("{")
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of)], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", str(config), "--overwrite")


@pytest.mark.parametrize("damage", ["truncated", "text", "missing"])
def test_init_checkpoint_messages(trained, tmp_path, capsys, damage):
    src = run_dir(trained) / "checkpoint.pt"
    bad_file = tmp_path / f"{damage}.pt"
    if damage == "truncated":
        bad_file.write_bytes(src.read_bytes()[:20_000])
    elif damage == "text":
        bad_file.write_text("hello")
    argv = [*DIGITS, "--out", str(tmp_path / "runs"), "--set", f"init_checkpoint={bad_file}"]
    rc, _, err = cli_here(argv, capsys)
    assert rc == 2
    line = assert_one_line_error(err, "train", f"init_checkpoint='{bad_file}'", "model.pt", "checkpoint.pt")
    assert "weights_only" not in line  # no advice to load untrusted pickles


def _settings() -> list[Setting]:
    mix = [MixtureConfig(sigmas=(1.0, r), n_per_class=(6, 6), d=1) for r in (0.5, 2.0)]
    return [Setting(m, LearnerConfig(), SearchConfig(grid_size=5), EvalConfig(), n_seeds=2) for m in mix]


def test_truncated_sims_cache_is_recomputed_with_a_notice(tmp_path):
    settings = _settings()[:1]
    first = run_sweep(settings, tmp_path, backend="sequential", progress=False)
    path = cache_path(tmp_path, settings[0])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a zip cut in half: BadZipFile
    notices: list[str] = []
    again = run_sweep(settings, tmp_path, backend="sequential", progress=False, notice=notices.append)
    assert again.computed == [settings[0].key]
    assert len(notices) == 1 and str(path) in notices[0] and "recomputing" in notices[0]
    np.testing.assert_array_equal(again.results[0].errors, first.results[0].errors)


N_TRAIN, N_TEST, SIDE = 300, 100, 28  # a tiny Fashion-MNIST-shaped set


def _write_fmnist(folder: Path, **replace: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, SIDE, SIDE), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, SIDE, SIDE), dtype=np.uint8),
        "test_labels": (np.arange(N_TEST) % 10).astype(np.uint8),
        **replace,
    }
    for key, stem in mdata.FMNIST_FILES.items():
        mdata.write_idx(folder / f"{stem}.gz", arrays[key])
    return folder


def _fmnist_train(data_dir: Path, out: Path) -> list[str]:
    return ["train", "--preset", "fmnist-smoke", "--data-dir", str(data_dir), "--out", str(out), *TINY]


def test_idx_with_damaged_deflate_stream(tmp_path, no_system_fmnist, capsys):
    folder = _write_fmnist(tmp_path / "fm")
    path = folder / f"{mdata.FMNIST_FILES['train_labels']}.gz"
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF  # the first byte after the gzip header: the deflate stream's first block header
    path.write_bytes(bytes(raw))
    with pytest.raises(gzip.zlib.error):  # what an unguarded reader raises
        gzip.decompress(bytes(raw))
    rc, _, err = cli_here(_fmnist_train(folder, tmp_path / "runs"), capsys)
    assert rc == 2
    assert_one_line_error(
        err, "train", str(path), "unreadable IDX", "apt-get install -y dataset-fashion-mnist"
    )


# ------------------------------------------------------------------ 2. unwritable or wrong --out
OUT_COMMANDS = {
    "train": ["train", "--preset", "digits-smoke"],
    "simulate": ["simulate", "--preset", "all", "--quick"],
    "figures": ["figures", "--quick"],
    "report": ["report", "no-such-study"],
    "derive": ["derive"],
    "demo": ["demo", "--tiny"],
}


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_out_is_an_existing_file(tmp_path, command):
    (tmp_path / "taken").write_text("a file, not a folder")
    proc = mr2_cli(*OUT_COMMANDS[command], "--out", "taken", cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, command, "--out='taken'", "existing file", "pass another --out")


def test_out_below_a_file_and_figures_results(tmp_path):
    (tmp_path / "taken").write_text("x")
    proc = mr2_cli("train", "--preset", "digits-smoke", "--out", "taken/runs", cwd=tmp_path)
    assert_one_line_error(proc.stderr, "train", "--out='taken/runs'", f"{tmp_path / 'taken'} is not a folder")
    proc = mr2_cli("figures", "--out", "figs", "--results", "taken", cwd=tmp_path)
    assert_one_line_error(proc.stderr, "figures", "--results='taken'", "existing file")
    assert not (tmp_path / "figs").exists()  # nothing was made before the check


def test_train_checks_out_before_loading_data(tmp_path, capsys, monkeypatch):
    (tmp_path / "taken").write_text("x")

    def must_not_load(*args, **kwargs):
        raise AssertionError("data loaded before --out was checked")

    monkeypatch.setattr(mdata.dataset, "load_arrays", must_not_load)
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path / "taken")], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "existing file")


def test_read_only_out_is_refused(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    # root may write anywhere: stand in for a read-only folder by what os.access reports
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != ro and real_access(p, mode))
    with pytest.raises(
        ValueError, match=r"^--out='.*ro': expected a folder this user can write into.*read-only"
    ):
        check_writable_dir(ro, "--out")
    with pytest.raises(ValueError, match=r"^--out='.*ro/sub'.*can be created, but .*ro is read-only"):
        check_writable_dir(ro / "sub", "--out")
    assert check_writable_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_through_the_command_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = mr2_cli("derive", "--out", str(ro / "derive"), cwd=tmp_path)
    finally:
        ro.chmod(0o755)
    assert_one_line_error(proc.stderr, "derive", "read-only")


# ------------------------------------------------------------------------- 3. --threads and --jobs
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["train", "--preset", "digits-smoke", "--threads", "-1"],
            "--threads=-1: expected an integer in [1, 1024]",
        ),
        (
            ["train", "--preset", "digits-smoke", "--threads", "0"],
            "--threads=0: expected an integer in [1, 1024]",
        ),
        (
            ["train", "--preset", "digits-smoke", "--threads", "100000"],
            "--threads=100000: expected an integer in",
        ),
        (["train", "--preset", "digits-smoke", "--jobs", "0"], "--jobs=0: expected an integer in [1, 256]"),
        (["simulate", "--preset", "all", "--jobs", "0"], "--jobs=0: expected an integer >= 1"),
    ],
)
def test_bad_threads_and_jobs(tmp_path, argv, needle):
    proc = mr2_cli(*argv, "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, argv[0], needle)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 4. data validation
@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("negative-labels", ["train-labels-idx1-ubyte.gz", "int8", "[-1, 8]", "0..9"]),
        ("sizes", ["1x28x28", "1x24x24", "one image size"]),
        ("float-images", ["train-images-idx3-ubyte.gz", "float32", "uint8"]),
        ("no-training-images", ["no training images"]),
        ("classes-missing", ["no training images of class(es) Sandal, Shirt, Sneaker, Bag, Ankle boot"]),
    ],
)
def test_bad_datasets_are_refused_at_load_time(tmp_path, no_system_fmnist, capsys, case, needles):
    rng = np.random.default_rng(1)
    replace = {
        "negative-labels": {"train_labels": (np.arange(N_TRAIN) % 10 - 1).astype(np.int8)},
        "sizes": {"test_images": rng.integers(0, 256, (N_TEST, 24, 24), dtype=np.uint8)},
        "float-images": {"train_images": rng.random((N_TRAIN, SIDE, SIDE), dtype=np.float32)},
        "no-training-images": {
            "train_images": np.zeros((0, SIDE, SIDE), np.uint8),
            "train_labels": np.zeros(0, np.uint8),
        },
        "classes-missing": {"train_labels": (np.arange(N_TRAIN) % 5).astype(np.uint8)},
    }[case]
    folder = _write_fmnist(tmp_path / case, **replace)
    rc, _, err = cli_here(_fmnist_train(folder, tmp_path / "runs"), capsys)
    assert rc == 2
    assert_one_line_error(err, "train", str(folder), *needles)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("float", "training images of type float64; expected uint8"),
        ("negative", "training labels in [-1, 1]; expected class indices 0..2"),
        ("sizes", "training images are 1x8x8 (C x H x W) but test images are 1x6x6"),
        ("no-test", "no test images"),
        ("no-validation", "no validation images of class(es) c2; raise val_fraction"),
        ("no-test-class", "no test images of class(es) c1"),
    ],
)
def test_every_source_is_checked(monkeypatch, case, needle):
    """The checks of load_dataset hold for any source (CIFAR, image folders), not only Fashion-MNIST."""
    x = np.zeros((40, 1, 8, 8), np.uint8)
    y = np.arange(40) % 3
    xt, yt = np.zeros((9, 1, 8, 8), np.uint8), np.arange(9) % 3
    if case == "float":
        x = x.astype(np.float64)
    elif case == "negative":
        y = y - 1
    elif case == "sizes":
        xt = np.zeros((9, 1, 6, 6), np.uint8)
    elif case == "no-test":
        xt, yt = xt[:0], yt[:0]
    elif case == "no-validation":
        y[y == 2] = 0
        y[-1] = 2  # one image of class 2: it stays in training, none for validation
    elif case == "no-test-class":
        yt[yt == 1] = 0
    arrays = (x, y, xt, yt, ("c0", "c1", "c2"), "fake-source")
    monkeypatch.setattr(mdata.dataset, "load_arrays", lambda *a, **k: arrays)
    with pytest.raises(ValueError, match="^fake-source: .*" + re.escape(needle)):
        mdata.load_dataset("folder", data_dir="x", val_fraction=0.2)


def test_incomplete_mr2_data_is_refused(tmp_path, no_system_fmnist, monkeypatch, capsys):
    partial = tmp_path / "partial"
    mdata.write_idx(partial / f"{mdata.FMNIST_FILES['train_images']}.gz", np.zeros((3, SIDE, SIDE), np.uint8))
    _write_fmnist(tmp_path / "no-system-copy")  # a complete system copy it must not fall back to
    monkeypatch.setenv("MR2_DATA", str(partial))
    argv = ["train", "--preset", "fmnist-smoke", "--out", str(tmp_path / "runs"), *TINY]
    rc, _, err = cli_here(argv, capsys)
    assert rc == 2
    assert_one_line_error(
        err, "train", str(partial), "incomplete Fashion-MNIST", "train-labels-idx1-ubyte", "MR2_DATA"
    )


def test_fashion_mnist_labels_are_int64(tmp_path, no_system_fmnist):
    data = mdata.load_dataset("fashion-mnist", data_dir=_write_fmnist(tmp_path / "fm"))
    assert data.y_train.dtype == data.y_val.dtype == data.y_test.dtype == torch.int64
    assert data.class_counts().tolist() == [27] * 10  # 30 per class, 3 held out for validation


# ------------------------------------------------------------ 5. leftovers, interruptions, locks
def test_atomic_write_cleans_old_leftovers_of_its_target(tmp_path):
    target = tmp_path / "result.json"
    old = tmp_path / ".result.json.abcd1234.tmp"  # as left by a killed writer
    fresh = tmp_path / ".result.json.efgh5678.tmp"  # a writer still at work
    other = tmp_path / ".other.json.abcd1234.tmp"  # another target's
    for p in (old, fresh, other):
        p.write_text("partial")
    hours_ago = time.time() - 7200
    for p in (old, other):
        os.utime(p, (hours_ago, hours_ago))
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert not old.exists() and fresh.exists() and other.exists()
    assert sorted(clean_tmp(tmp_path, older_than_s=0)) == sorted([fresh, other])  # e.g. under a lock
    with atomic_open(target) as fh:  # the writer's own temporary file is never touched
        fh.write("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_run_lock_busy_then_stale(copy_of, capsys):
    run = run_dir(copy_of)
    leftover = run / ".checkpoint.pt.abcd1234.tmp"
    leftover.write_bytes(b"half a checkpoint")
    lock = try_lock(run / ".lock")  # this process plays the other trainer
    assert lock is not None
    try:
        rc, out, err = cli_here([*DIGITS, "--out", str(copy_of)], capsys)
    finally:
        lock.release()
    assert rc == 1 and "Traceback" not in err
    assert "busy" in out and f"pid {os.getpid()}" in out and "run again once it has finished" in out
    assert leftover.exists()  # the holder's folder is left alone
    # a lock file left by a process that died: taken over, and its leftovers cleaned
    (run / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": "gone", "since": "yesterday"}))
    rc, out, err = cli_here([*DIGITS, "--out", str(copy_of)], capsys)
    assert rc == 0 and "skipped" in out, out + err
    assert not (run / ".lock").exists() and not leftover.exists()


def test_two_sweeps_share_a_setting_through_its_lock(tmp_path):
    a, b = _settings()
    held = try_lock(lock_path(tmp_path, a))  # another sweep is computing a
    assert held is not None and "pid" in lock_owner(lock_path(tmp_path, a))
    release = threading.Timer(0.5, held.release)  # ... and dies without writing it
    notices: list[str] = []
    release.start()
    try:
        res = run_sweep([a, b], tmp_path, backend="sequential", progress=False, notice=notices.append)
    finally:
        release.cancel()
        held.release()
    assert sorted(res.computed) == sorted([a.key, b.key])  # b at once; a after the other let go
    assert any(f"pid {os.getpid()}" in n and "waiting" in n for n in notices), notices
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cache_path(tmp_path, s).name for s in (a, b))
    # this time the other sweep finishes a while we wait: its result is read back, not recomputed
    blob = cache_path(tmp_path, a).read_bytes()
    cache_path(tmp_path, a).unlink()
    held = try_lock(lock_path(tmp_path, a))

    def finish() -> None:
        with atomic_open(cache_path(tmp_path, a), "wb") as fh:
            fh.write(blob)
        held.release()

    threading.Timer(0.3, finish).start()
    again = run_sweep([a], tmp_path, backend="sequential", progress=False, notice=notices.append)
    assert again.computed == [] and again.reused == [a.key]
    np.testing.assert_array_equal(again.results[0].errors, res.results[0].errors)


def test_interrupted_train_says_resume(monkeypatch, tmp_path, capsys):
    import mr2.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mr2.train, "run_study", interrupted)
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path)], capsys)
    assert rc == 130 and "Traceback" not in err
    assert "interrupted" in err and "--resume" in err


def test_sigterm_stops_simulate_and_its_workers(tmp_path):
    psutil = pytest.importorskip("psutil")
    cmd = [sys.executable, "-m", "mr2", "simulate", "--preset", "all", "--out", "sims", "--jobs", "2"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers: list = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [c for c in parent.children(recursive=True) if "popen_loky" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert len(workers) >= 2, "the loky workers never started"
        children = parent.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in err and "interrupted" in err and "run the same command again" in err
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"still running after the command ended: {[p.cmdline() for p in alive]}"
    assert not list((tmp_path / "sims" / "cache").glob("*.lock"))  # every setting's lock released


def test_sigkill_of_a_study_takes_its_workers_with_it(tmp_path):
    """No handler sees SIGKILL: the training workers die with their parent (Linux parent-death
    signal) instead of training the queued runs on their own."""
    psutil = pytest.importorskip("psutil")
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    cmd = [
        sys.executable,
        "-m",
        "mr2",
        *DIGITS,
        "--seeds",
        "0",
        "1",
        "--out",
        "runs",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--no-progress",
        "--set",
        "epochs=5000",
    ]  # fmt: skip (killed long before)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers: list = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [c for c in parent.children() if "popen_loky" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert len(workers) >= 2, "the training workers never started"
        time.sleep(2.0)  # past their initialiser
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(workers, timeout=30)
    for orphan in alive:  # do not leave them training if the check fails
        orphan.kill()
    assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"


# -------------------------------------------------------------------- 6. already fixed, still held
@pytest.mark.parametrize("value", ["lr=nan", "lr=inf", "lr=abc", "weight_decay=x", "momentum=x"])
def test_bad_set_values(tmp_path, capsys, value):
    key, _, raw = value.partition("=")
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path), "--set", value], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", f"{key}='{raw}'", "expected a finite real number")


def test_bad_set_value_through_the_command_line(tmp_path):
    proc = mr2_cli(*DIGITS, "--out", "runs", "--set", "lr=nan", cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "train", "lr='nan'", "finite")
    assert not (tmp_path / "runs" / "digits-smoke").exists()


@pytest.mark.parametrize("study", ["../escape", "a/b"])
def test_study_names_cannot_leave_the_runs_folder(tmp_path, capsys, study):
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path / "runs"), "--study", study], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", f"study='{study}'", "no '/' or '..'")
    assert not (tmp_path / "escape").exists()


def test_report_errors(trained, tmp_path, capsys):
    study = trained / "digits-smoke"
    out = ["--out", str(tmp_path / "report"), "--no-plots"]
    rc, _, err = cli_here(["report", str(study), *out, "--baseline", "nope"], capsys)
    assert rc == 2
    assert_one_line_error(err, "report", "nope")
    rc, _, err = cli_here(["report", str(study), *out, "--ci", "bca", "--n-boot", "5"], capsys)
    assert rc == 2
    assert_one_line_error(err, "report", "n_boot", "5")
    broken = tmp_path / "study"
    shutil.copytree(study, broken)
    metrics = broken / "ce" / "seed0" / "metrics.json"
    record = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**record, "per_class_accuracy": record["per_class_accuracy"][:9]}))
    rc, _, err = cli_here(["report", str(broken), *out], capsys)
    assert rc == 2
    assert_one_line_error(err, "report", str(metrics), "expected a list of 9")


def test_mr2_loss_with_overflowing_features_stays_finite():
    g = torch.Generator().manual_seed(0)
    loss = mr2.make_loss("mr2", 5, norm_p=5.0)
    value = loss(torch.randn(8, 5, generator=g), torch.randn(8, 16, generator=g) * 3e7, torch.arange(8) % 5)
    assert torch.isfinite(value)
    for name, buf in loss.state_dict().items():
        if buf.is_floating_point():
            assert torch.isfinite(buf).all(), f"{name}: {buf}"
    assert int(loss.state_dict()["observations"].sum()) == 5  # every class observed once, none skipped


def test_margins_in_bfloat16_and_at_zero_spread():
    spread = np.array([1.0, 8.0, 27.0, 64.0])
    cube = spread ** (1 / 3)
    expected = len(spread) * cube / cube.sum()  # the sum budget, p = 2: gamma_k ∝ a_k^(1/3), mean 1
    got = optimal_margins(torch.tensor(spread, dtype=torch.bfloat16))
    assert got.dtype == torch.bfloat16
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=RTOL_BF16)
    a = torch.tensor([0.0, 8.0, 27.0], dtype=torch.float64, requires_grad=True)
    optimal_margins(a)[1].backward()
    assert torch.isfinite(a.grad).all(), a.grad


# ------------------------------------------------- 7. the reliability review (issue 24), finding by finding
class _RunsCode:
    """Unpickling this writes a marker file: what a checkpoint received from someone else could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_f1_checkpoint_with_code_is_refused_unrun(copy_of, tmp_path, capsys):
    ckpt = _unfinished(copy_of)
    marker = tmp_path / "code-ran"
    torch.save({"version": 2, "model": {}, "payload": _RunsCode(marker)}, ckpt)
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of), "--resume"], capsys)
    assert rc == 2
    line = assert_one_line_error(err, "train", str(ckpt), "refused", "--overwrite")
    assert not marker.exists(), "loading the checkpoint ran the code it holds"
    assert "weights_only" not in line
    # the same file as init_checkpoint: refused too
    rc, _, err = cli_here(
        [*DIGITS, "--out", str(tmp_path / "r2"), "--set", f"init_checkpoint={ckpt}"], capsys
    )
    assert rc == 2 and not marker.exists()
    assert_one_line_error(err, "train", "init_checkpoint=", "refused")


def test_f1_every_torch_load_is_weights_only():
    calls = []
    for path in [*REPO.joinpath("mr2").rglob("*.py"), *REPO.joinpath("mr2_cli").rglob("*.py")]:
        text = path.read_text()
        calls += [(path.name, m.group(0)) for m in re.finditer(r"torch\.load\([^)]*\)", text)]
    assert calls, "no torch.load found: the check would pass vacuously"
    unsafe = [c for c in calls if "weights_only=True" not in c[1]]
    assert not unsafe, unsafe


@pytest.mark.parametrize(
    ("text", "value"), [("false", False), ("FALSE", False), ("0", False), ("True", True)]
)
def test_f2_set_bool_loss_option_is_a_bool(text, value):
    cfg = mr2.train.get_preset("digits-smoke").config_for("ce", 0, **{"loss.check_values": text})
    assert cfg.loss_options["check_values"] is value


def test_f2_config_json_records_a_real_bool(tmp_path, capsys):
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path), "--set", "loss.check_values=false"], capsys)
    assert rc == 0, err
    record = json.loads((run_dir(tmp_path) / "config.json").read_text())
    assert record["config"]["loss_options"] == {"check_values": False}


def test_f2_bad_bool_is_refused(tmp_path, capsys):
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path), "--set", "loss.check_values=no"], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "loss.check_values='no'", "true or false")


def test_f4_resume_without_config_json_refuses_another_config(copy_of, capsys):
    _unfinished(copy_of)
    (run_dir(copy_of) / "config.json").unlink()
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of), "--resume", "--set", "lr=0.123"], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "checkpoint.pt", "another config", "lr: 0.05 -> 0.123", "--overwrite")


def test_f4_resume_on_other_data_is_refused(tmp_path, no_system_fmnist, capsys):
    first = _write_fmnist(tmp_path / "a")
    rng = np.random.default_rng(5)
    labels = np.concatenate([np.arange(200) % 10, np.zeros(100, np.int64)]).astype(np.uint8)
    other = _write_fmnist(
        tmp_path / "b",
        train_labels=labels,
        train_images=rng.integers(0, 256, (N_TRAIN, SIDE, SIDE), dtype=np.uint8),
    )
    runs = tmp_path / "runs"
    rc, _, err = cli_here(_fmnist_train(first, runs), capsys)
    assert rc == 0, err
    (runs / "fmnist-smoke").joinpath("ce", "seed0", "metrics.json").unlink(missing_ok=True)
    for metrics in runs.rglob("metrics.json"):
        metrics.unlink()
    rc, _, err = cli_here([*_fmnist_train(other, runs), "--resume"], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "checkpoint.pt", "other data", "--data-dir", "--overwrite")


def test_f5_sigterm_swallowed_in_a_weakref_callback_still_stops(monkeypatch, tmp_path, capsys):
    import mr2.train

    def work_with_a_callback(*args, **kwargs):
        class Thing:
            pass

        def callback(_ref):
            signal.raise_signal(signal.SIGTERM)
            for _ in range(1000):  # the Python handler runs here, inside the callback: swallowed
                pass

        thing = Thing()
        ref = weakref.ref(thing, callback)  # noqa: F841
        del thing
        for _ in range(300):  # more work after the signal: it must stop, not run to its end
            time.sleep(0.01)
        finished.append(True)
        return []

    finished: list[bool] = []
    monkeypatch.setattr(mr2.train, "run_study", work_with_a_callback)
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path)], capsys)
    assert rc == 128 + signal.SIGTERM, err
    assert "interrupted" in err and "Exception ignored" not in err
    assert not finished, "the command went on working after SIGTERM"


@pytest.fixture(scope="module")
def trained_mr2(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("trained-mr2") / "runs"
    rc = cli.main([*DIGITS[:4], "mr2", *DIGITS[5:], "--out", str(runs)])
    assert rc == 0
    return runs


def test_f6_resume_from_the_final_checkpoint_keeps_margins_and_the_log(trained_mr2, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(trained_mr2, runs)
    run = runs / "digits-smoke" / "mr2" / "seed0"
    first = json.loads((run / "metrics.json").read_text())
    log = (run / "log.csv").read_text()
    assert len(first["margins"]) == 10 and first["margin_min"] < first["margin_max"]
    (run / "metrics.json").unlink()
    (run / "log.csv").write_text(log.splitlines()[0] + "\n")  # killed between checkpoint and log write
    argv = [*DIGITS[:4], "mr2", *DIGITS[5:], "--out", str(runs), "--resume"]
    rc, _, err = cli_here(argv, capsys)
    assert rc == 0, err
    again = json.loads((run / "metrics.json").read_text())
    for key in ("margins", "margin_min", "margin_max", "per_class_accuracy"):
        assert again.get(key) == first[key], key
    assert (run / "log.csv").read_text() == log


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("seed=3", ["seed='3'", "--seeds"]),
        ("method=x", ["method='x'", "--loss"]),
        ("study=x", ["study='x'", "--study"]),
        ("loss_options={}", ["loss_options='{}'", "loss.<option>=VALUE"]),
    ],
)
def test_f7_set_of_ordinary_keys_is_one_line(tmp_path, capsys, item, needles):
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path), "--set", item], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", *needles)


@pytest.mark.parametrize("shape", [(28, 20), (20, 28), (28, 5), (2, 40)])
def test_f8_non_square_idx_images_are_refused(tmp_path, no_system_fmnist, capsys, shape):
    rng = np.random.default_rng(2)
    folder = _write_fmnist(
        tmp_path / "fm",
        train_images=rng.integers(0, 256, (N_TRAIN, *shape), dtype=np.uint8),
        test_images=rng.integers(0, 256, (N_TEST, *shape), dtype=np.uint8),
    )
    rc, _, err = cli_here(_fmnist_train(folder, tmp_path / "runs"), capsys)
    assert rc == 2
    assert_one_line_error(err, "train", str(folder), f"{shape[0]}x{shape[1]} pixels", "square")


def _png(path: Path, side: int = 4, claimed: tuple[int, int] | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (side, side), 128).save(path)
    if claimed:  # rewrite the header's size (and its CRC): a small file that claims a huge image
        raw = bytearray(path.read_bytes())
        raw[16:24] = struct.pack(">II", *claimed)
        raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
        path.write_bytes(bytes(raw))


def test_f9_decompression_bomb_is_one_line(tmp_path, capsys):
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(6):
                _png(root / split / cls / f"{i}.png")
    bomb = root / "train" / "b" / "9.png"
    _png(bomb, claimed=(20000, 20000))
    argv = [*DIGITS, "--out", str(tmp_path / "runs"), "--set", "dataset=folder", "--data-dir", str(root)]
    rc, _, err = cli_here(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, "train", str(bomb), "decompression bomb", "delete or replace it")


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("lr=1e39", "lr=1e+39: expected a number in (0, 1000]"),
        ("weight_decay=1e39", "weight_decay=1e+39: expected a number in [0, 10]"),
        ("hidden=10000000000", "hidden=10000000000: expected an integer in [1, 65536]"),
        ("width=100000000", "width=100000000: expected an integer in [1, 1024]"),
        ("input_size=2000", "input_size=2000: expected an integer in [1, 512]"),
        ("epochs=1e3", "epochs='1e3': expected an integer"),
    ],
)
def test_f10_upper_bounds(tmp_path, capsys, item, needle):
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path / "runs"), "--set", item], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", needle)
    assert not (tmp_path / "runs").exists()


def test_f11_resume_with_overwrite_is_refused(copy_of, capsys):
    _unfinished(copy_of)
    ckpt = run_dir(copy_of) / "checkpoint.pt"
    before = ckpt.read_bytes()
    rc, _, err = cli_here([*DIGITS, "--out", str(copy_of), "--resume", "--overwrite"], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "--overwrite", "not with --resume")
    assert ckpt.read_bytes() == before  # the saved epochs are kept


def test_f12_empty_out_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli_here([*DIGITS, "--out", ""], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "--out=''", "current folder")
    assert list(tmp_path.iterdir()) == []


def test_f13_a_method_named_twice_runs_once(copy_of, capsys):
    argv = [*DIGITS[:4], "ce", "ce", *DIGITS[5:], "--out", str(copy_of), "--jobs", "2", "--threads", "1"]
    rc, out, err = cli_here(argv, capsys)
    assert rc == 0, out + err
    assert "busy" not in out and "ce named more than once" in err
    assert "1 runs" in out


def test_f15_huge_seed_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    argv = [*DIGITS[:6], "99999999999999999999999", *DIGITS[7:], "--out", str(tmp_path / "runs")]
    rc, _, err = cli_here(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "seed=99999999999999999999999", "an integer in [0, 4294967295]")
    assert not (tmp_path / "runs").exists()


def test_f15_unwritable_out_and_full_disk_name_path_and_fix(tmp_path, capsys, monkeypatch):
    rc, _, err = cli_here([*DIGITS, "--out", "/proc/x"], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "/proc/x", "--out")
    import mr2.train.session

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(mr2.train.session, "write_json", full)  # the run's first file: config.json
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path / "runs")], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "config.json", "No space left", "free space")


def test_f15_init_checkpoint_of_another_width_is_one_line(tmp_path, capsys):
    from mr2.models import build_model

    other = build_model("small-cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=32)
    path = tmp_path / "model.pt"
    torch.save(other.state_dict(), path)
    rc, _, err = cli_here(
        [*DIGITS, "--out", str(tmp_path / "runs"), "--set", f"init_checkpoint={path}"], capsys
    )
    assert rc == 2
    assert_one_line_error(err, "train", f"init_checkpoint='{path}'", "another width or architecture")


def test_f15_train_without_preset_says_so(tmp_path, capsys):
    rc, out, err = cli_here(["train", "--out", str(tmp_path)], capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "--preset", "--list")


def test_f15_checkpoint_that_is_a_folder(copy_of, capsys):
    ckpt = _unfinished(copy_of)
    ckpt.unlink()
    ckpt.mkdir()
    for extra in ([], ["--resume"], ["--overwrite"]):
        rc, _, err = cli_here([*DIGITS, "--out", str(copy_of), *extra], capsys)
        assert rc == 2
        line = assert_one_line_error(err, "train", str(ckpt), "a folder")
        assert "shared" not in line
    assert ckpt.is_dir()  # a folder is the user's to delete


def test_f15_failed_run_leaves_no_empty_folders(tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = [*DIGITS, "--out", str(runs), "--set", "dataset=folder", "--data-dir", str(tmp_path / "none")]
    rc, _, err = cli_here(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, "train", "data_dir=")
    assert not runs.exists(), sorted(map(str, runs.rglob("*")))


@pytest.mark.parametrize("name", ["mr2", "mr2-rep", "mr2-official"])
def test_f16_mr2_with_huge_features_is_finite_or_a_clear_error_never_nan(name):
    g = torch.Generator().manual_seed(0)
    logits, feats, y = torch.randn(8, 5, generator=g), torch.randn(8, 16, generator=g), torch.arange(8) % 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the statistics' overflow warning (tested above)
        for scale in (1e19, 3e19):  # squared distances beyond float32: computed in float64
            value = mr2.make_loss(name, 5)(logits, feats * scale, y)
            assert torch.isfinite(value), (scale, value)
        # the term itself beyond float32: no finite value is right, so a clear error
        with pytest.raises(ValueError, match=r"^features: max \|h\| = .* too large .*loss\.double\(\)"):
            mr2.make_loss(name, 5)(logits, feats * 1e25, y)
        assert torch.isfinite(mr2.make_loss("mr2-logit", 5)(logits, feats * 1e25, y))  # no such term


# --------------------------------------------------------------- 8. validation once (house issue 21)
def test_check_scalar_types_bounds_and_names():
    from mr2_core.checks import check_scalar

    assert check_scalar(3, "n", "int", low=1, high=3) == 3
    assert check_scalar(np.int64(2), "n", "int") == 2
    assert check_scalar(1, "x", "real", low=0, high=1, closed="right") == 1.0
    cases = [
        ((True, "--jobs", "int"), {}, "--jobs=True: expected an integer"),
        ((2.0, "n", "int"), {}, "n=2.0: expected an integer"),
        (("0.1", "lr", "real"), {}, "lr='0.1': expected a finite real number"),
        ((float("inf"), "lr", "real"), {}, "lr=inf: expected a finite real number"),
        ((0, "lr", "real"), {"low": 0, "closed": "right"}, "lr=0: expected a number in (0, inf)"),
        ((1, "m", "real"), {"low": 0, "high": 1, "closed": "left"}, "m=1: expected a number in [0, 1)"),
        ((0, "n", "int"), {"low": 1}, "n=0: expected an integer >= 1"),
        ((5, "n", "int"), {"low": 1, "high": 4}, "n=5: expected an integer in [1, 4]"),
        ((1, "flag", "bool"), {}, "flag=1: expected true or false"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            check_scalar(*args, **kwargs)


def test_jobs_true_is_not_one_job(tmp_path):
    with pytest.raises(ValueError, match="^jobs=True: expected an integer"):
        mr2.train.run_study("digits-smoke", runs=tmp_path, jobs=True, progress=False)


def test_config_is_frozen_after_validation():
    cfg = mr2.train.get_preset("digits-smoke").config
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = float("nan")


def test_typed_flags_are_not_parsed_back(tmp_path, capsys, monkeypatch):
    """--data-dir 123 is a folder named 123, not the number 123."""
    import mr2.train.study

    seen = []
    monkeypatch.setattr(mr2.train.study, "train_run", lambda cfg, *a, **k: seen.append(cfg) or {})
    rc, _, err = cli_here([*DIGITS, "--out", str(tmp_path), "--data-dir", "123"], capsys)
    assert rc == 0, err
    assert seen[0].data_dir == "123"


def test_loss_options_reach_only_the_methods_that_take_them(tmp_path, capsys, monkeypatch):
    import mr2.train.study

    seen = {}
    monkeypatch.setattr(
        mr2.train.study, "train_run", lambda cfg, *a, **k: seen.update({cfg.run_name: cfg}) or {}
    )
    base = ["train", "--preset", "digits-smoke", "--loss", "ce", "mr2", "mr2-official", "--seeds", "0",
            "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    rc, _, err = cli_here(
        [*base, "--set", "loss.statistic=separation", "--set", "loss.label_smoothing=0.1"], capsys
    )
    assert rc == 0, err
    assert seen["ce"].loss_options == {"label_smoothing": 0.1}
    assert seen["mr2"].loss_options == {"statistic": "separation"}
    assert seen["mr2-official"].loss_options == {}  # the released code fixes its statistic
    seen.clear()
    rc, _, err = cli_here([*base, "--set", "loss.lambda_rep=0.3", "--set", "mr2.lambda_rep=0.5"], capsys)
    assert rc == 0, err
    assert seen["mr2"].loss_options == {"lambda_rep": 0.5}
    assert seen["mr2-official"].loss_options == {"lambda_rep": 0.3} and seen["ce"].loss_options == {}
    for item, needles in [
        ("loss.nope=1", ["loss.nope='1'", "none takes 'nope'"]),
        ("ce.statistic=separation", ["loss.statistic='separation'", "an option of loss 'ce'"]),
        ("focal.gamma=1", ["override='focal.gamma'", "ce, mr2, mr2-official"]),
    ]:
        rc, _, err = cli_here([*base, "--set", item], capsys)
        assert rc == 2
        assert_one_line_error(err, "train", *needles)
