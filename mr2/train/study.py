"""Studies: every (loss, seed) of a preset, in one process or a pool of processes; finished runs are
read back, not retrained, and a run that another process is training is skipped (its ``RUN/.lock``)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch

from mr2_core.checks import bad, check_workers
from mr2_core.io import check_writable_dir
from mr2_core.locks import Busy
from mr2.train.config import TrainConfig, study_overrides
from mr2.train.loop import TrainingDiverged, train_run
from mr2.train.presets import Preset, get_preset
from mr2.train.rundir import MODEL_FILE, check_resume_overwrite

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
    finished = (Path(run_dir) / "metrics.json").exists() and not overwrite
    head = {"loss": cfg.run_name, "seed": cfg.seed, "run_dir": run_dir}
    try:
        metrics = train_run(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress)
    except TrainingDiverged as exc:
        return {**head, "status": "diverged", "error": str(exc)}
    except Busy as exc:  # another process trains it: leave it to that one and move on
        return {**head, "status": "busy", "error": str(exc)}
    return {**head, "status": "skipped" if finished else "done", **(metrics or {})}


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this worker when the study's process dies, even by SIGKILL (which no
    handler sees): otherwise the orphaned workers go on training the queued runs. No-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl (e.g. another libc): the SIGTERM handling still works
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _worker_init(threads: int, parent: int) -> None:
    _die_with_parent(parent)
    torch.set_num_threads(threads)


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
        jobs: runs trained at once, each in its own process (CPU studies: one per core).
        threads: torch threads per run (default: torch's own in-process; cores // jobs in workers).

    Returns:
        One record per run: ``loss, seed, run_dir, status`` (``done``, ``skipped``, ``diverged``, or
        ``busy``: another process holds the run's lock) and the metrics (or ``error``). A diverged or
        busy run does not stop the others.
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
    check_writable_dir(runs, "runs")  # before any data is loaded
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
    if jobs == 1:
        if threads:
            torch.set_num_threads(threads)
        return [_run_one(cfg, d, resume, overwrite, progress) for cfg, d in configs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    per_job = threads or max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    init = (per_job, os.getpid())  # threads per worker; the parent whose death ends the worker
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=init) as pool:
        try:
            futures = [pool.submit(_run_one, cfg, d, resume, overwrite, False) for cfg, d in configs]
            records = []
            for fut, (cfg, _) in zip(futures, configs, strict=True):
                rec = fut.result()
                if progress:
                    acc = rec.get("accuracy")
                    shown = f"accuracy {acc:.4f}" if acc is not None else rec.get("error", "")
                    print(
                        f"[{cfg.study}] {cfg.run_name} seed {cfg.seed}: {rec['status']} {shown}", flush=True
                    )
                records.append(rec)
        except BaseException:  # Ctrl-C, SIGTERM, a failed run: stop the workers, do not wait for them
            _stop_workers(pool)
            raise
    return records


def _stop_workers(pool: Any) -> None:
    """Terminate the running runs and cancel the queued ones (a run's last checkpoint stays: it is
    written atomically), so that no worker outlives an interrupted study."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle to them
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)
