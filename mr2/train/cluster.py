"""A study's runs as tasks on a pool of workers: local processes (loky) or a Dask cluster.

Each run is one task (``mr2_core.parallel``). The worker trains it into the study folder itself, so on a
cluster that folder must be storage every worker sees (NFS, Lustre, a shared volume) and on which the
runs' lock files (``RUN/.lock``, ``flock``) exclude each other across machines: ``check_cluster``
proves both before a run is sent, and refuses with one line naming the first worker that fails.

What a run's result depends on is fixed by its config and thread count, not by where it runs: the
submitting process sends the same configs a local study trains, and ``threads`` (torch threads per
run) is set in the worker before the run starts. Runs that ask for a GPU (``device='cuda[:N]'``) hold
one unit of the worker resource ``GPU``: they go only to workers started with ``--resources GPU=1``,
one run per GPU (docs/cluster.md).

A worker process trains one run at a time even when it has several task threads: torch's thread count
and random generators are global to a process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mr2.train.config import TrainConfig
from mr2_core.checks import bad
from mr2_core.io import write_text
from mr2_core.locks import hold_lock, try_lock

__all__ = ["RunTask", "run_slot", "gpu_resources", "check_cluster", "GPU_RESOURCE"]

GPU_RESOURCE = "GPU"  # the Dask worker resource a GPU run holds one unit of
WAIT_FOR_WORKERS_S = 30  # how long a study waits for the first worker of an empty cluster

_ONE_RUN_AT_A_TIME = threading.Lock()  # per worker process (see the module docstring)


@dataclass(frozen=True)
class RunTask:
    """One run as a task: what ``train_run`` needs, and the torch threads to set first (None: the
    worker's cores divided by its task threads)."""

    cfg: TrainConfig
    run_dir: str
    resume: bool
    overwrite: bool
    threads: int | None


def _worker_threads() -> int:
    """Cores per task slot of this Dask worker (or all cores outside Dask)."""
    slots = 1
    try:
        from distributed import get_worker

        slots = max(1, get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        pass
    return max(1, (os.cpu_count() or 1) // slots)


@contextlib.contextmanager
def run_slot(threads: int | None) -> Iterator[int]:
    """Hold this worker process's run slot (one run at a time) with torch set to ``threads`` threads
    (None: the worker's cores per task thread); yields the thread count."""
    import torch

    with _ONE_RUN_AT_A_TIME:
        threads = threads or _worker_threads()
        torch.set_num_threads(threads)
        yield threads


def gpu_resources(configs: list[TrainConfig]) -> dict[str, float] | None:
    """``{"GPU": 1}`` when a run asks for a GPU (``device`` 'cuda' or 'cuda:N'), else None.

    A study is sent with one set of resources: if any run asks for a GPU, every run holds one."""
    return {GPU_RESOURCE: 1} if any(str(c.device).startswith("cuda") for c in configs) else None


def _probe_storage(probe: str, token: str, lock_file: str) -> str:
    """Run on a worker: 'ok' when it reads ``probe`` holding ``token`` and cannot take ``lock_file``
    (which the submitting process holds); else what is wrong."""
    try:
        seen = Path(probe).read_text()
    except OSError:
        return f"does not see {probe} (the study folder is not on storage it shares)"
    if seen != token:
        return f"sees another file at {probe} (the path names another folder there)"
    try:
        lock = try_lock(lock_file)
    except OSError as exc:
        return f"cannot lock files in that folder ({exc.strerror or exc})"
    if lock is not None:
        lock.release()
        return "took a lock that the submitting process holds: locks there do not hold across machines"
    return "ok"


def check_cluster(client: Any, folder: Path, resources: dict[str, float] | None) -> list[str]:
    """Check that the cluster can train into ``folder`` (the study folder); notices to show.

    Raises ValueError naming the problem: no worker joined within ``WAIT_FOR_WORKERS_S``, no worker
    holds the ``resources`` the runs need, or a worker does not see ``folder`` or does not respect
    its file locks.
    """
    try:
        client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
    except TimeoutError:
        raise bad("scheduler", client.scheduler.address, "a cluster with a worker (none joined)") from None
    workers = client.scheduler_info(n_workers=-1)["workers"]
    notices = []
    for name, needed in (resources or {}).items():
        if not any(w.get("resources", {}).get(name, 0) >= needed for w in workers.values()):
            raise bad(
                "device", "cuda", f"a Dask worker with the resource {name} (dask worker --resources {name}=1)"
            )
    multi = sorted(a for a, w in workers.items() if w.get("nthreads", 1) > 1)
    if multi:
        notices.append(
            f"{len(multi)} worker(s) have several threads (e.g. {multi[0]}); each trains one run at a time "
            "(start workers with --nthreads 1 and one process per run slot)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = folder / f".storage-check-{token}"
    write_text(probe, token)
    try:
        with hold_lock(folder / f".storage-check-{token}.lock", "the storage check") as held:
            answers = client.run(_probe_storage, str(probe), token, str(held.path))
    finally:
        probe.unlink(missing_ok=True)
    for worker, answer in sorted(answers.items()):
        if answer != "ok":
            expected = f"storage every Dask worker sees and locks; {worker} {answer}"
            raise bad("runs", str(folder.parent), expected)
    return notices
