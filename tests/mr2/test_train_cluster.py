"""Training studies on a Dask cluster (``mr2 train --backend dask --scheduler ADDR``).

An external ``dask scheduler`` and two ``dask worker`` processes on the loopback (subprocesses, as a user
starts them by hand) train ``digits-smoke`` at two seeds: every run's metrics equal the local study's; a
second send after one run's folder is deleted trains only that run; a worker SIGKILLed mid-run is
survived: its run is retried on the other worker, resumes from its checkpoint and ends with the local
run's numbers. ``mr2 report`` and ``mr2 figures`` read the study the cluster wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a scheduler, two workers and three sends: ~90 s of CPU
pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

REPO = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
}
START_TIMEOUT_S = 180  # scheduler and workers up (imports on a busy 2-core box)
SEND_TIMEOUT_S = 600  # one `mr2 train` send (2-3 min seen on the 2-core box at load 20)
# metrics.json fields that record when and with which code a run was made, not what it computed
NOT_COMPUTED = {"train_time_s", "code_version"}
STUDY = ["--preset", "digits-smoke", "--seeds", "0", "1", "--threads", "1"]  # progress lines on stdout
KILL_EPOCHS = 20  # the killed run's epochs: long enough to SIGKILL its worker after a checkpoint


def _metrics(run: Path) -> dict:
    record = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in record.items() if k not in NOT_COMPUTED}


def _runs(study: Path) -> list[Path]:
    return sorted(p.parent for p in study.glob("*/seed*/metrics.json"))


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGKILL each process this test started and its children (nothing else)."""
    for proc in procs:
        if proc.poll() is not None:
            continue
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, {worker pid: Popen}) of a scheduler and two one-thread workers."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    spec = folder / "scheduler.json"
    log = (folder / "cluster.log").open("w")
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=folder, env=ENV, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    try:
        # port 0: the scheduler picks a free port and writes its address to the scheduler file
        start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
              "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(spec))  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not spec.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert spec.is_file(), f"the scheduler did not start: {(folder / 'cluster.log').read_text()}"
        workers = {}
        for name in ("w0", "w1"):  # no nanny: the worker process is the one a kill ends
            proc = start("distributed.cli.dask_worker", "--scheduler-file", str(spec), "--name", name,
                         "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1", "--dashboard-address",
                         "127.0.0.1:0", "--local-directory", str(folder / name))  # fmt: skip
            workers[proc.pid] = proc
        with Client(scheduler_file=str(spec), timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            address = client.scheduler.address
        yield address, workers
    finally:
        _stop(procs)
        log.close()


def _send(address: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    # --out relative to the submitting process (the workers run elsewhere): the study names it in full
    cmd = [sys.executable, "-m", "mr2", "train", *STUDY, "--out", out.name, "--backend", "dask",
           "--scheduler", address, *extra]  # fmt: skip
    return subprocess.run(
        cmd, cwd=out.parent, env=ENV, capture_output=True, text=True, timeout=SEND_TIMEOUT_S
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local study (in this process, one thread per run, as the cluster's runs)."""
    import torch

    from mr2.train import run_study

    runs = tmp_path_factory.mktemp("local")
    before = torch.get_num_threads()
    try:
        run_study("digits-smoke", runs=runs, seeds=(0, 1), threads=1, progress=False)
        overrides = {"epochs": KILL_EPOCHS}
        run_study("digits-smoke", runs=runs, losses=("ce",), seeds=(0,), overrides=overrides,
                  study="killed", threads=1, progress=False)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return runs


def test_a_cluster_study_equals_the_local_one_and_a_resend_trains_only_what_is_missing(
    cluster, local, tmp_path
):
    address, _ = cluster
    out = tmp_path / "runs"
    sent = _send(address, out)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"sending 4 runs to {address} (2 workers)" in sent.stdout
    assert sent.stdout.count("threads 1;") == 4  # a progress line per run, as it finishes
    ours, theirs = _runs(out / "digits-smoke"), _runs(local / "digits-smoke")
    assert [p.relative_to(out) for p in ours] == [p.relative_to(local) for p in theirs]
    assert len(ours) == 4
    for a, b in zip(ours, theirs, strict=True):
        assert _metrics(a) == _metrics(b), f"{a} differs from the local run {b}"
    assert not list((out / "digits-smoke").glob(".storage-check*")), "the storage check left files"

    shutil.rmtree(out / "digits-smoke" / "mr2" / "seed1")
    again = _send(address, out)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = [line for line in again.stdout.splitlines() if line.startswith(("ce ", "mr2 "))]
    status = {tuple(line.split()[:2]): line.split()[2] for line in lines}
    assert status == {("ce", "0"): "skipped", ("mr2", "0"): "skipped", ("ce", "1"): "skipped",
                      ("mr2", "1"): "done"}  # fmt: skip
    run = out / "digits-smoke" / "mr2" / "seed1"
    assert _metrics(run) == _metrics(local / "digits-smoke" / "mr2" / "seed1")

    # the report and the figures read the folder the cluster wrote, as they read a local one
    study = str(out / "digits-smoke")
    assert _cli(["report", study, "--out", str(tmp_path / "report"), "--no-plots"]) == 0
    assert any((tmp_path / "report").iterdir())
    figs = tmp_path / "figures"
    argv = [
        "figures",
        "--only",
        "1,2",
        "--runs",
        study,
        "--results",
        str(tmp_path / "results"),
        "--out",
        str(figs),
    ]
    assert _cli(argv) == 0
    assert (figs / "fig1_class_accuracy.png").is_file() and (figs / "fig2_spread_vs_error.png").is_file()


def _cli(argv: list[str]) -> int:
    """``mr2 ARGV`` in this process (no second interpreter to start); its signal handlers restored."""
    from mr2_cli import cli

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return cli.main(argv)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_worker_killed_mid_run_is_survived(cluster, local, tmp_path):
    address, workers = cluster
    out = tmp_path / "runs"
    run = out / "killed" / "ce" / "seed0"
    cmd = [sys.executable, "-m", "mr2", "train", "--preset", "digits-smoke", "--loss", "ce", "--seeds", "0",
           "--study", "killed", "--set", f"epochs={KILL_EPOCHS}", "--threads", "1", "--no-progress",
           "--out", str(out), "--backend", "dask", "--scheduler", address]  # fmt: skip
    send = subprocess.Popen(
        cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + SEND_TIMEOUT_S
        while not (run / "checkpoint.pt").is_file() and time.monotonic() < deadline and send.poll() is None:
            time.sleep(0.02)
        assert (run / "checkpoint.pt").is_file(), "the run never checkpointed"
        owner = json.loads((run / ".lock").read_text())["pid"]
        assert owner in workers, (
            f"the run is trained by pid {owner}, not by one of the workers {list(workers)}"
        )
        unfinished = not (run / "metrics.json").exists()
        os.kill(owner, signal.SIGKILL)
        workers[owner].wait(timeout=30)
        assert unfinished, "the run ended before the kill: nothing was resumed"
        stdout, stderr = send.communicate(timeout=SEND_TIMEOUT_S)
    finally:
        _stop([send])
    assert send.returncode == 0, stdout + stderr
    assert "ce            0 done" in stdout
    assert _metrics(run) == _metrics(local / "killed" / "ce" / "seed0")
    epochs = (run / "log.csv").read_text().strip().splitlines()[1:]
    assert len(epochs) == KILL_EPOCHS  # the retry resumed: each epoch logged once
