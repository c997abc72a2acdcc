"""A resumable, parallel sweep over settings with a per-setting cache.

Each setting's :class:`sims.search.SettingResult` is written to ``CACHE/<key>-v<N>.npz`` by the
parent process, atomically (``mr2_core.io.atomic_open``), as soon as it arrives. A rerun loads the
settings whose file exists and computes only the others, so an interrupted sweep loses at most the
settings in flight. The key is a hash of the whole setting, so a changed setting is recomputed, and
so is a corrupt or truncated file (with a notice).

Two sweeps on the same cache share the work: a process locks each setting (``CACHE/<key>.lock``,
``mr2_core.locks``) just before it computes it, skips the settings another live process holds, and at
the end waits for those and reads their results (computing them itself when that process died).
An interrupted sweep (Ctrl-C, SIGTERM through ``mr2``) stops its worker processes.

Backends (``mr2_core.parallel``, joblib): ``loky`` (local processes, the default; they die with the
sweep, even a SIGKILLed one), ``sequential`` (in process), or ``dask`` (the ``distributed.Client`` the
caller has opened, e.g. on a cluster; results still come back to this process, which writes the
cache, so workers need no shared disk).
"""

from __future__ import annotations

import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mr2_core.checks import bad
from mr2_core.io import atomic_open, clean_tmp
from mr2_core.locks import FileLock, lock_owner, try_lock
from mr2_core.parallel import BACKENDS, run_tasks
from sims.config import Setting
from sims.search import SettingResult, run_setting

__all__ = ["SweepResult", "run_sweep", "BACKENDS", "cache_path", "lock_path"]


@dataclass
class SweepResult:
    """Results in the order of the settings, and which were computed now or read from the cache."""

    results: list[SettingResult]
    computed: list[str] = field(default_factory=list)  # setting keys computed in this call
    reused: list[str] = field(default_factory=list)  # setting keys read from the cache


# Bump when a change to the learner, the search or the stored arrays makes old cache files wrong:
# the setting's key only hashes its configuration, not the code that ran it.
CACHE_VERSION = 1


def cache_path(cache_dir: str | os.PathLike, setting: Setting) -> Path:
    return Path(cache_dir) / f"{setting.key}-v{CACHE_VERSION}.npz"


def lock_path(cache_dir: str | os.PathLike, setting: Setting) -> Path:
    """The lock file of a setting, held by the process computing it."""
    return Path(cache_dir) / f"{setting.key}-v{CACHE_VERSION}.lock"


POLL_S = 1.0  # how often a sweep looks whether another process has finished a setting it waits for


def _notice(message: str) -> None:
    print(f"[sims] {message}", file=sys.stderr, flush=True)


def _load(path: Path, setting: Setting, notice: Callable[[str], None]) -> SettingResult | None:
    """The cached result, or None when missing or unreadable (a corrupt file is recomputed)."""
    if not path.exists():
        return None
    try:
        res = SettingResult.from_bytes(path.read_bytes())
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        # truncated zip, bytes that are not a .npz, an array missing: any of them means "recompute"
        notice(f"{path}: corrupt cache file ({type(exc).__name__}: {exc}); recomputing this setting")
        return None
    if res.setting.key != setting.key:
        notice(f"{path}: holds another setting ({res.setting.key}); recomputing this setting")
        return None
    return res


def _task(setting: Setting, threads: int) -> SettingResult:
    import torch

    torch.set_num_threads(threads)  # one BLAS thread per worker: n_jobs workers fill n_jobs cores
    return run_setting(setting)


def run_sweep(
    settings: Sequence[Setting],
    cache_dir: str | os.PathLike,
    *,
    n_jobs: int = 1,
    backend: str = "loky",
    progress: bool = True,
    on_result: Callable[[SettingResult], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep.

    Args:
        settings: the settings; duplicates (same key) are computed once.
        cache_dir: folder of the per-setting cache files.
        n_jobs: parallel workers (loky processes or dask tasks in flight); >= 1.
        backend: one of ``BACKENDS``; ``dask`` needs an open ``distributed.Client``.
        progress: show a tqdm bar over settings.
        on_result: called in this process after each new result is cached (used by tests to
            interrupt a sweep half-way).
        notice: receives one-line notices (a corrupt cache file recomputed, settings another process
            is computing); default: printed to stderr.

    Returns:
        :class:`SweepResult`.
    """
    if backend not in BACKENDS:
        raise bad("backend", backend, f"one of {BACKENDS}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise bad("n_jobs", n_jobs, "an integer >= 1")
    from mr2_core.progress import progress_bar

    say = notice or _notice
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    unique: dict[str, Setting] = {}
    for s in settings:
        unique.setdefault(s.key, s)
    done: dict[str, SettingResult] = {}
    reused = []
    for key, s in unique.items():
        res = _load(cache_path(cache, s), s, say)
        if res is not None:
            done[key] = res
            reused.append(key)
    todo = [s for k, s in unique.items() if k not in done]
    # the costliest settings first, so that the last worker is not left alone with a big one
    todo.sort(key=lambda s: -_cost(s))
    computed: list[str] = []
    held: dict[str, FileLock] = {}
    bar = progress_bar(
        total=len(unique), initial=len(done), desc="sims sweep", unit="setting", progress=progress
    )

    def claim(candidates: Iterable[Setting], busy: dict[str, Setting]) -> Iterator[Setting]:
        """The candidates this process locks, lazily (just before each is computed); those another
        process holds go to ``busy`` (key -> setting, with their owner), those it has finished
        meanwhile are read back."""
        for s in candidates:
            lock = try_lock(lock_path(cache, s))
            if lock is None:
                busy[s.key] = s
                owners.setdefault(s.key, lock_owner(lock_path(cache, s)))
                continue
            res = _load(cache_path(cache, s), s, lambda message: None)  # a corrupt file was reported
            if res is not None:  # another process finished it since we looked
                lock.release()
                done[s.key] = res
                reused.append(s.key)
                bar.update(1)
                continue
            clean_tmp(cache_path(cache, s), older_than_s=0)  # leftovers of a killed writer
            held[s.key] = lock
            yield s

    def store(res: SettingResult) -> None:
        _store(cache, res, done, computed, bar, on_result)
        lock = held.pop(res.setting.key, None)
        if lock is not None:
            lock.release()

    threads = 1 if n_jobs > 1 else max(1, os.cpu_count() or 1)
    owners: dict[str, str] = {}  # setting key -> who held its lock when this process found it busy
    try:
        pending = todo
        while pending:
            busy: dict[str, Setting] = {}
            if pending is todo:
                _compute(claim(pending, busy), backend, n_jobs, threads, store)
            elif ready := list(claim(pending, busy)):  # released by a process that did not finish them
                _compute(iter(ready), backend, n_jobs, threads, store)
            if busy and pending is todo:
                who = "; ".join(sorted({owners[k] for k in busy}))
                say(f"{len(busy)} setting(s) are being computed by {who}; waiting for their results")
            if busy:
                time.sleep(POLL_S)
            pending = list(busy.values())
    finally:
        for lock in held.values():
            lock.release()
        bar.close()
    return SweepResult(results=[done[s.key] for s in settings], computed=computed, reused=reused)


def _compute(
    settings: Iterator[Setting],
    backend: str,
    n_jobs: int,
    threads: int,
    store: Callable[[SettingResult], None],
) -> None:
    """Run ``_task`` on each setting (consumed lazily) and ``store`` each result as it arrives
    (``mr2_core.parallel``: loky workers die with this process, even when it is SIGKILLed)."""
    from functools import partial

    run_tasks(partial(_task, threads=threads), settings, store, backend=backend, n_jobs=n_jobs)


def _store(cache: Path, res: SettingResult, done: dict, computed: list, bar, on_result) -> None:
    key = res.setting.key
    with atomic_open(cache_path(cache, res.setting), "wb") as fh:
        fh.write(res.to_bytes())
    done[key] = res
    computed.append(key)
    bar.update(1)
    if on_result is not None:
        on_result(res)


def _cost(s: Setting) -> float:
    """A rough relative cost (models x samples x parameters^2) for scheduling."""
    m = s.mixture
    n = sum(m.n_per_class)
    cands = s.search.grid_size if m.K == 2 else s.search.beta_grid + 4 * m.K * s.search.refine_rounds
    return s.n_seeds * cands * n * (m.K * (m.d + 1)) ** 2
