"""mr2_core.parallel (the pool behind sweeps and studies) and mr2.train.cluster's checks of a cluster.

Reliability finding 17: ``kill -9`` of ``mr2 simulate --jobs 2`` left its two loky workers and their
resource trackers running for loky's 300 s idle timeout; its workers now die with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mr2.train.cluster import _probe_storage, check_cluster, gpu_resources
from mr2.train.config import TrainConfig
from mr2_core.locks import try_lock
from mr2_core.parallel import run_tasks

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
ORPHAN_GRACE_S = 10  # how long the killed sweep's processes may take to exit (was 300 s)


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("backend,n_jobs", [("sequential", 1), ("loky", 1), ("loky", 2)])
def test_every_result_arrives_once(backend, n_jobs):
    got: list[int] = []
    run_tasks(_square, iter(range(6)), got.append, backend=backend, n_jobs=n_jobs)
    assert sorted(got) == [x * x for x in range(6)]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"backend": "spark"}, "backend='spark'"),
        ({"n_jobs": 0}, "n_jobs=0"),
        ({"n_jobs": -1}, "n_jobs=-1"),
        ({"resources": {"GPU": 1}}, "resources="),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=f"^{needle}"):
        run_tasks(_square, [1, 2], print, **{"backend": "loky", "n_jobs": 2, **kwargs})


def test_dask_without_a_client_says_so():
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="^backend='dask': expected an open distributed.Client"):
        run_tasks(_square, [1], print, backend="dask", n_jobs=1)


def test_sigkill_of_a_sweep_takes_its_loky_workers_and_trackers_with_it(tmp_path):
    psutil = pytest.importorskip("psutil")
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    cmd = [sys.executable, "-m", "mr2", "simulate", "--preset", "all", "--out", "sims", "--jobs", "2",
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: list = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        workers: list = []
        while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
            workers = [c for c in parent.children() if "popen_loky" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert len(workers) >= 2, "the loky workers never started"
        time.sleep(2.0)  # past their initialiser
        family = parent.children(recursive=True)  # the workers and the resource tracker(s)
        proc.kill()
        proc.wait(timeout=30)
        t0 = time.monotonic()
        _, alive = psutil.wait_procs(family, timeout=ORPHAN_GRACE_S)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in family:  # nothing this test started keeps running if a check fails
            if p.is_running():
                p.kill()
    assert not alive, f"orphans after {waited:.0f} s: {[' '.join(p.cmdline())[:80] for p in alive]}"


# -------------------------------------------------------------------------------- cluster checks
def test_gpu_runs_hold_a_gpu():
    assert gpu_resources([TrainConfig(device="cpu"), TrainConfig(device="auto")]) is None
    assert gpu_resources([TrainConfig(device="cpu"), TrainConfig(device="cuda:1")]) == {"GPU": 1}


def test_the_storage_probe(tmp_path):
    probe, lock = tmp_path / "probe", tmp_path / "probe.lock"
    assert "does not see" in _probe_storage(str(probe), "t", str(lock))
    probe.write_text("other")
    assert "sees another file" in _probe_storage(str(probe), "t", str(lock))
    probe.write_text("t")
    assert "do not hold across machines" in _probe_storage(str(probe), "t", str(lock))  # nobody holds it
    with try_lock(lock):  # held here, as the submitting process holds it
        assert _probe_storage(str(probe), "t", str(lock)) == "ok"


class _FakeClient:
    """What check_cluster asks of a distributed.Client; ``run`` calls the function here, once per
    worker, or reports ``answer`` for worker 'w1'."""

    def __init__(self, workers: dict, answer: str | None = None):
        self.workers, self.answer = workers, answer
        self.scheduler = SimpleNamespace(address="tcp://127.0.0.1:1")

    def wait_for_workers(self, n, timeout):
        if not self.workers:
            raise TimeoutError

    def scheduler_info(self, n_workers):
        return {"workers": self.workers}

    def run(self, func, *args):
        return {w: (self.answer if self.answer and w == "w1" else func(*args)) for w in self.workers}


def test_check_cluster_passes_and_refuses(tmp_path):
    folder = tmp_path / "runs" / "study"
    one = {"w0": {"nthreads": 1, "resources": {}}}
    assert check_cluster(_FakeClient(one), folder, None) == []
    assert [p.name for p in folder.iterdir()] == []  # the probe files are gone
    two = {"w0": {"nthreads": 4, "resources": {"GPU": 1}}, "w1": {"nthreads": 1, "resources": {}}}
    notices = check_cluster(_FakeClient(two), folder, {"GPU": 1})
    assert len(notices) == 1 and "one run at a time" in notices[0]
    with pytest.raises(ValueError, match="^device='cuda': expected a Dask worker with the resource GPU"):
        check_cluster(_FakeClient(one), folder, {"GPU": 1})
    with pytest.raises(ValueError, match="^scheduler='tcp://127.0.0.1:1': expected a cluster with a worker"):
        check_cluster(_FakeClient({}), folder, None)
    with pytest.raises(
        ValueError, match=r"^runs=.*storage every Dask worker sees and locks; w1 does not see"
    ):
        check_cluster(_FakeClient(two, answer="does not see it"), folder, None)


def test_a_study_names_a_bad_backend_or_a_stray_scheduler(tmp_path):
    from mr2.train import run_study

    with pytest.raises(ValueError, match="^backend='spark': expected one of"):
        run_study("digits-smoke", runs=tmp_path, backend="spark", progress=False)
    with pytest.raises(ValueError, match="^scheduler='tcp://h:1': expected None unless backend='dask'"):
        run_study("digits-smoke", runs=tmp_path, scheduler="tcp://h:1", progress=False)
    assert not any(tmp_path.iterdir())  # refused before any run started
