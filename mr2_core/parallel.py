"""Independent tasks in parallel: the one mechanism behind the sims sweeps and the training studies.

joblib drives every backend (``BACKENDS``):

* ``loky``: local worker processes. Each worker asks Linux to SIGTERM it when the process that started
  it dies, so that a sweep or study killed by SIGKILL (which no handler sees) leaves no orphan;
  without it loky's workers and their resource trackers outlive it by their 300 s idle timeout.
* ``sequential``: in this process.
* ``dask``: tasks on the ``distributed.Client`` that is open (``dask_client``): a local cluster, or one
  started by hand, by SLURM or on Kubernetes (docs/cluster.md). ``resources`` (e.g. ``{"GPU": 1}``)
  sends the tasks only to workers that declare them (``dask worker --resources GPU=1``), one task per
  unit.

The caller hands over a function, the items (consumed lazily, so a sweep can lock each setting just
before it is computed) and a callback that receives each result in this process as it arrives.
An exception (a failed task, the callback's, Ctrl-C) aborts the rest: joblib kills the loky workers
and cancels the dask tasks that have not run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mr2_core.checks import bad

__all__ = ["BACKENDS", "run_tasks", "die_with_parent", "dask_client", "open_client"]

BACKENDS = ("loky", "sequential", "dask")
CONNECT_TIMEOUT_S = 30  # how long to wait for a scheduler named by address


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when ``parent`` (the process that started it) dies, even by
    SIGKILL; exit at once when it is already gone. No-op off Linux (the SIGTERM handling still works)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl (e.g. another libc)
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_tasks(
    func: Callable[[Any], Any],
    items: Iterable[Any],
    on_result: Callable[[Any], None],
    *,
    backend: str = "loky",
    n_jobs: int = 1,
    resources: dict[str, float] | None = None,
) -> None:
    """Call ``on_result(func(item))`` in this process for every item, in the order the tasks finish.

    Args:
        func: a picklable function of one item (run in a worker process, or here when sequential).
        items: the tasks' arguments, consumed lazily.
        on_result: receives each result as it arrives.
        backend: one of ``BACKENDS``; ``dask`` needs an open ``distributed.Client``.
        n_jobs: tasks in flight (loky: worker processes); ``-1`` with dask: every worker thread.
        resources: dask worker resources each task holds (e.g. ``{"GPU": 1}``); dask only.
    """
    if backend not in BACKENDS:
        raise bad("backend", backend, f"one of {BACKENDS}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not (n_jobs >= 1 or n_jobs == -1):
        raise bad("n_jobs", n_jobs, "an integer >= 1 (or -1 with dask)")
    if resources and backend != "dask":
        raise bad("resources", resources, f"None with backend {backend!r} (worker resources are dask's)")
    if backend == "sequential" or (backend == "loky" and n_jobs == 1):
        for item in items:
            on_result(func(item))
        return
    from joblib import Parallel, delayed, parallel_config

    if backend == "loky":
        if n_jobs == -1:
            raise bad("n_jobs", n_jobs, "an integer >= 1 with backend 'loky'")
        options: dict[str, Any] = {"initializer": die_with_parent, "initargs": (os.getpid(),)}
    else:
        open_client()  # a clear error when none is open
        options = {"resources": dict(resources)} if resources else {}
    with parallel_config(backend=backend, n_jobs=n_jobs, **options):
        # batch_size=1: one task per item (a study's run is one dask task, seen and retried alone)
        stream = Parallel(return_as="generator_unordered", batch_size=1)(delayed(func)(i) for i in items)
        try:
            for result in stream:
                on_result(result)
        finally:
            # on an error, Ctrl-C or SIGTERM, closing the generator makes joblib abort: it kills the
            # loky workers and cancels the queued dask tasks
            stream.close()


def open_client() -> Any:
    """The ``distributed.Client`` this process has open; ValueError when there is none."""
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        raise bad("backend", "dask", "an open distributed.Client (mr2_core.parallel.dask_client)") from None


@contextlib.contextmanager
def dask_client(scheduler: str | None, n_workers: int = 2) -> Iterator[Any]:
    """A ``distributed.Client`` for the ``with`` block, closed after it.

    Args:
        scheduler: the address of a running scheduler (``tcp://host:8786``), or None for a local
            cluster of ``n_workers`` worker processes with one thread each (they die with this process).
        n_workers: worker processes of the local cluster.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise bad("scheduler", scheduler, "a scheduler address such as tcp://host:8786")
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    else:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            # a local worker still busy in torch when the cluster closes is killed after 4 s, and its
            # nanny logs a warning for each: expected here, not worth a user's attention
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                nanny.setLevel(level)
