"""A resumable, parallel sweep over settings with a per-setting cache.

Each setting's :class:`sims.search.SettingResult` is written to ``CACHE/<key>-v<N>.npz`` by the
parent process, atomically (``common.io.atomic_open``), as soon as it arrives. A rerun loads the
settings whose file exists and computes only the others, so an interrupted sweep loses at most the
settings in flight. The key is a hash of the whole setting, so a changed setting is recomputed.

Backends (joblib): ``loky`` (local processes, the default), ``sequential`` (in process), or ``dask``
(joblib's dask backend on the ``distributed.Client`` the caller has opened, e.g. on a cluster;
results still come back to this process, which writes the cache, so workers need no shared disk).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.checks import bad
from common.io import atomic_open
from sims.config import Setting
from sims.search import SettingResult, run_setting

__all__ = ["SweepResult", "run_sweep", "BACKENDS", "cache_path"]

BACKENDS = ("loky", "sequential", "dask")


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


def _load(path: Path, setting: Setting) -> SettingResult | None:
    """The cached result, or None when missing or unreadable (a corrupt file is recomputed)."""
    try:
        res = SettingResult.from_bytes(path.read_bytes())
    except (OSError, ValueError, KeyError):
        return None
    return res if res.setting.key == setting.key else None


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

    Returns:
        :class:`SweepResult`.
    """
    if backend not in BACKENDS:
        raise bad("backend", backend, f"one of {BACKENDS}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise bad("n_jobs", n_jobs, "an integer >= 1")
    from joblib import Parallel, delayed, parallel_config
    from tqdm.auto import tqdm

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    unique: dict[str, Setting] = {}
    for s in settings:
        unique.setdefault(s.key, s)
    done: dict[str, SettingResult] = {}
    reused = []
    for key, s in unique.items():
        res = _load(cache_path(cache, s), s)
        if res is not None:
            done[key] = res
            reused.append(key)
    todo = [s for k, s in unique.items() if k not in done]
    # the costliest settings first, so that the last worker is not left alone with a big one
    todo.sort(key=lambda s: -_cost(s))
    computed = []
    bar = tqdm(total=len(unique), initial=len(done), desc="sims sweep", unit="setting", disable=not progress)
    if todo:
        threads = 1 if n_jobs > 1 else max(1, os.cpu_count() or 1)
        if backend == "sequential" or (backend == "loky" and n_jobs == 1):
            stream = (_task(s, threads) for s in todo)
            for res in stream:
                _store(cache, res, done, computed, bar, on_result)
        else:
            with parallel_config(backend=backend, n_jobs=n_jobs):
                stream = Parallel(return_as="generator_unordered")(delayed(_task)(s, threads) for s in todo)
                for res in stream:
                    _store(cache, res, done, computed, bar, on_result)
    bar.close()
    return SweepResult(results=[done[s.key] for s in settings], computed=computed, reused=reused)


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
