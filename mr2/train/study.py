"""Studies: every (loss, seed) of a preset, in one process, a pool of local processes or on a Dask
cluster (``mr2.train.cluster``); finished runs are read back, not retrained, and a run that another
process is training is skipped (its ``RUN/.lock``)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch

from mr2.train.cluster import RunTask, check_cluster, gpu_resources, run_slot
from mr2.train.config import TrainConfig, study_overrides
from mr2.train.loop import TrainingDiverged, train_run
from mr2.train.presets import Preset, get_preset
from mr2.train.rundir import MODEL_FILE, check_resume_overwrite
from mr2_core.checks import bad, check_workers
from mr2_core.contracts import METRICS_FILE
from mr2_core.io import check_writable_dir
from mr2_core.locks import Busy
from mr2_core.parallel import BACKENDS, run_tasks

__all__ = ["run_study", "run_dir_for"]


def run_dir_for(runs: str | os.PathLike, cfg: TrainConfig) -> Path:
    """``RUNS/<study>/<loss>/seed<k>``."""
    return Path(runs) / cfg.study / cfg.run_name / f"seed{cfg.seed}"


def _resolve_checkpoint(
    cfg: TrainConfig, runs: str | os.PathLike, resume: bool, progress: bool, threads: int | None
) -> TrainConfig:
    """Turn ``init_checkpoint="@<preset>/<method>/seed<k>"`` into that run's ``model.pt`` under
    ``runs``, training the run first (with its preset's config) when it has not been made yet."""
    ref = cfg.init_checkpoint
    if ref is None or not ref.startswith("@"):
        return cfg
    preset, sep, rest = ref[1:].partition("/")
    method, _, seed_part = rest.partition("/")
    if not sep or not seed_part.startswith("seed") or not seed_part[4:].isdigit():
        raise bad("init_checkpoint", ref, "'@<preset>/<method>/seed<k>' or a file path")
    source = get_preset(preset).config_for(method, int(seed_part[4:]))
    if not source.save_model:
        source = dataclasses.replace(source, save_model=True)
    run_dir = run_dir_for(runs, source)
    path = run_dir / MODEL_FILE
    if not path.is_file():
        if progress:
            print(f"[{cfg.study}] making the backbone it starts from: {run_dir}", flush=True)
        if threads:
            torch.set_num_threads(threads)
        train_run(source, run_dir, resume=resume, progress=progress)
    return dataclasses.replace(cfg, init_checkpoint=str(path))


def _run_one(cfg: TrainConfig, run_dir: str, resume: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    finished = (Path(run_dir) / METRICS_FILE).exists() and not overwrite
    head = {"loss": cfg.run_name, "seed": cfg.seed, "run_dir": run_dir}
    try:
        metrics = train_run(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress)
    except TrainingDiverged as exc:
        return {**head, "status": "diverged", "error": str(exc)}
    except Busy as exc:  # another process trains it: leave it to that one and move on
        return {**head, "status": "busy", "error": str(exc)}
    return {**head, "status": "skipped" if finished else "done", **(metrics or {})}


def _run_task(task: RunTask) -> dict[str, Any]:
    """A pool worker's task: one run, with its host and torch thread count added to its record."""
    import socket

    with run_slot(task.threads) as threads:
        record = _run_one(task.cfg, task.run_dir, task.resume, task.overwrite, False)
    return {**record, "host": socket.gethostname(), "threads": threads}


def run_study(
    preset: str | Preset,
    *,
    runs: str | os.PathLike = "runs",
    losses: tuple[str, ...] | list[str] | None = None,
    seeds: tuple[int, ...] | list[int] | None = None,
    overrides: dict[str, Any] | None = None,
    study: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    jobs: int = 1,
    threads: int | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run every (loss, seed) of a preset; finished runs are read back, not retrained.

    Args:
        preset: a name in ``PRESETS`` or a ``Preset``.
        runs: the runs folder; each run goes to ``runs/<study>/<loss>/seed<k>``.
        losses, seeds: subsets to run (default: the preset's).
        overrides: config fields (for every run), ``loss.<option>`` (for every method whose loss
            takes the option; an error when none does) or ``<method>.<option>`` (that method's loss
            only), as text or typed values (``study_overrides``, ``apply_overrides``).
        study: the study folder name (default: the preset's name).
        resume, overwrite, progress: as in ``train_run``.
        jobs: runs trained at once, each in its own process (CPU studies: one per core); with
            ``backend='dask'`` and no cluster, the worker processes of the local cluster started (an
            existing cluster trains as many runs at once as it has worker threads).
        threads: torch threads per run (default: torch's own in-process; cores // jobs in local
            workers; a Dask worker's cores // its threads). Pass it for results that do not depend on
            the machine.
        backend: ``loky`` (local processes; in this process when ``jobs`` is 1), ``sequential`` (in
            this process) or ``dask``: each run is a task on the Dask cluster at ``scheduler``, else
            on the ``distributed.Client`` already open, else on a local cluster of ``jobs`` workers.
            The study folder must be storage every worker sees (checked first; docs/cluster.md).
        scheduler: a Dask scheduler address (``tcp://host:8786``); with ``backend='dask'`` only.

    Returns:
        One record per run: ``loss, seed, run_dir, status`` (``done``, ``skipped``, ``diverged``, or
        ``busy``: another process holds the run's lock) and the metrics (or ``error``); runs trained by
        pool workers add ``host`` and ``threads``. A diverged or busy run does not stop the others.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    asked = tuple(losses or p.losses)
    losses = tuple(dict.fromkeys(asked))  # a method named twice runs once (a copy would find it busy)
    if len(losses) < len(asked):
        twice = sorted({m for m in asked if asked.count(m) > 1})
        print(f"[{p.name}] note: {', '.join(twice)} named more than once; each runs once", file=sys.stderr)
    explicit_seeds = seeds is not None
    seeds = tuple(p.seeds if seeds is None else seeds)
    check_workers(jobs, threads)
    check_resume_overwrite(resume, overwrite)
    if backend not in BACKENDS:
        raise bad("backend", backend, f"one of {BACKENDS}")
    if scheduler is not None and backend != "dask":
        raise bad("scheduler", scheduler, "None unless backend='dask'")
    check_writable_dir(runs, "runs")  # before any data is loaded
    if backend == "dask":  # workers have their own working folders: name the shared one in full
        runs = Path(runs).absolute()
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise bad("jobs", jobs, "1 under torchrun (the ranks train each run together)")
    # each method's loss, and the overrides that apply to it (loss.<opt> only where its loss takes it)
    method_loss = {m: (overrides or {}).get("loss", p.per_loss.get(m, {}).get("loss", m)) for m in losses}
    per_method_overrides = study_overrides(overrides or {}, method_loss)
    configs = []
    # seeds of each method: the ones asked for, else the preset's (some methods may have more)
    per_method = {m: (seeds if explicit_seeds else p.method_seeds(m)) for m in losses}
    # seed-major: a study stopped part-way has every method at the same seeds (paired comparisons)
    for seed in sorted({s for ss in per_method.values() for s in ss}):
        for loss in losses:
            if seed not in per_method[loss]:
                continue
            cfg = p.config_for(loss, seed, **per_method_overrides[loss])
            if study:
                cfg = dataclasses.replace(cfg, study=study)
            # config_for and replace validate: every bad name is reported before the first run starts
            configs.append((cfg, str(run_dir_for(runs, cfg))))
    configs = [(_resolve_checkpoint(cfg, runs, resume, progress, threads), d) for cfg, d in configs]
    if backend == "sequential" or (backend == "loky" and jobs == 1):
        if threads:
            torch.set_num_threads(threads)
        return [_run_one(cfg, d, resume, overwrite, progress) for cfg, d in configs]
    if backend == "loky":
        per_run = threads or max(1, (os.cpu_count() or 1) // jobs)
        tasks = [RunTask(cfg, d, resume, overwrite, per_run) for cfg, d in configs]
        return _run_pool(tasks, progress, backend="loky", n_jobs=jobs)
    return _run_on_dask(configs, resume, overwrite, progress, jobs, threads, scheduler)


def _run_on_dask(
    configs: list[tuple[TrainConfig, str]],
    resume: bool,
    overwrite: bool,
    progress: bool,
    jobs: int,
    threads: int | None,
    scheduler: str | None,
) -> list[dict[str, Any]]:
    """Send every run to a Dask cluster as one task; records in the order of ``configs``."""
    from mr2_core.parallel import dask_client, open_client

    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            client = stack.enter_context(dask_client(scheduler))
        else:
            try:
                client = open_client()
            except ValueError:
                client = stack.enter_context(dask_client(None, n_workers=jobs))
        resources = gpu_resources([cfg for cfg, _ in configs])
        notices = []
        for folder in sorted({Path(d).parents[1] for _, d in configs}):  # RUNS/<study>
            notices += check_cluster(client, folder, resources)
        if progress:
            for line in dict.fromkeys(notices):
                print(f"[dask] {line}", flush=True)
            n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
            where = f"{client.scheduler.address} ({n_workers} workers)"
            print(f"[dask] sending {len(configs)} runs to {where}", flush=True)
        # a run that is not there yet resumes from its own checkpoint when its task is retried (its
        # worker died mid-run); one left unfinished before this send needs ``resume``, as locally
        tasks = [RunTask(cfg, d, resume or not Path(d).exists(), overwrite, threads) for cfg, d in configs]
        return _run_pool(tasks, progress, backend="dask", n_jobs=-1, resources=resources)


def _run_pool(
    tasks: list[RunTask],
    progress: bool,
    *,
    backend: str,
    n_jobs: int,
    resources: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Run ``tasks`` on pool workers (``mr2_core.parallel``); a line per run as it finishes; records
    in the order of ``tasks``. An error or interruption stops the workers (loky) or cancels the
    queued runs (dask); a run's last checkpoint stays (it is written atomically)."""
    index = {t.run_dir: i for i, t in enumerate(tasks)}
    records: list[dict[str, Any]] = [{} for _ in tasks]

    def arrived(rec: dict[str, Any]) -> None:
        i = index[rec["run_dir"]]
        records[i] = rec
        if progress:
            cfg = tasks[i].cfg
            acc = rec.get("accuracy")
            shown = f"accuracy {acc:.4f}" if acc is not None else rec.get("error", "")
            n = sum(bool(r) for r in records)
            print(
                f"[{cfg.study}] {cfg.run_name} seed {cfg.seed}: {rec['status']} {shown} "
                f"({rec['host']}, threads {rec['threads']}; {n}/{len(tasks)})",
                flush=True,
            )

    run_tasks(_run_task, tasks, arrived, backend=backend, n_jobs=n_jobs, resources=resources)
    return records
