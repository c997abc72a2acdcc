"""A run's folder: its files, whether it holds a finished run of the same config, and its lock.

``RUNS/<study>/<method>/seed<k>/`` holds ``config.json``, ``log.csv``, ``checkpoint.pt``,
``metrics.json`` (docs/CONTRACTS.md), ``model.pt`` with ``save_model``, and ``.lock`` while a process
trains it (``mr2_core.locks``: a second process gets ``Busy``, naming the first; a lock left by a killed
process is taken over).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mr2.train.config import RESUME_FREE_FIELDS, TrainConfig
from mr2_core.checks import bad
from mr2_core.contracts import CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, LOG_FILE, METRICS_FILE
from mr2_core.io import clean_tmp, read_json
from mr2_core.locks import hold_lock

__all__ = [
    "MODEL_FILE",
    "RunPaths",
    "check_resume_overwrite",
    "config_record",
    "incompatible",
    "existing_result",
    "read_run_json",
    "run_lock",
]

MODEL_FILE = "model.pt"  # the selected model's weights, with save_model=True


@dataclass(frozen=True)
class RunPaths:
    """The files of one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE


def check_resume_overwrite(resume: bool, overwrite: bool) -> None:
    """Refuse both at once: resume continues the saved epochs, overwrite discards them."""
    if resume and overwrite:
        raise bad(
            "--overwrite", overwrite,
            "not with --resume: --resume continues the saved epochs, --overwrite discards them; pass one",
        )  # fmt: skip


def config_record(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def incompatible(saved: dict[str, Any], cfg: TrainConfig, root: str | os.PathLike | None = None) -> list[str]:
    """The config fields that differ between a saved run and ``cfg`` (those a resume may change aside).
    With ``root``, the run's folder ``RUNS/<study>/<method>/seed<k>``, an ``init_checkpoint`` inside
    ``RUNS`` matches the saved path that ends in the same ``<study>/<method>/seed<k>/model.pt``: a runs
    folder that was moved or unpacked elsewhere resumes (its ``@<preset>/...`` starting points resolve
    to the new place)."""
    now = config_record(cfg)
    keys = (set(saved) | set(now)) - RESUME_FREE_FIELDS
    if cfg.sync_bn is None:  # "auto" matches the value the run resolved (config.json records that)
        keys.discard("sync_bn")
    if root is not None and _moved_checkpoint(saved.get("init_checkpoint"), now.get("init_checkpoint"), root):
        keys.discard("init_checkpoint")
    return sorted(k for k in keys if saved.get(k) != now.get(k))


def _moved_checkpoint(saved: Any, now: Any, root: str | os.PathLike) -> bool:
    """Whether ``now`` lies in the runs folder above ``root`` and ``saved`` names the same run file
    under another runs folder."""
    if not (isinstance(saved, str) and isinstance(now, str)):
        return False
    parents = Path(os.path.abspath(root)).parents
    if len(parents) < 3:
        return False
    try:
        rel = Path(os.path.abspath(now)).relative_to(parents[2])
    except ValueError:
        return False
    return len(rel.parts) == 4 and Path(saved).parts[-4:] == rel.parts


def existing_result(cfg: TrainConfig, paths: RunPaths, resume: bool, overwrite: bool) -> dict | None:
    """The metrics of a finished run of the same config, None for a run to (re)start or resume; a
    ValueError when the folder holds another config, or an unfinished run without ``resume``."""
    for p in (paths.config, paths.checkpoint, paths.metrics, paths.log, paths.model):
        if p.is_dir():  # neither --resume nor --overwrite can use it; deleting a folder is the user's call
            raise ValueError(
                f"{p}: a folder where the run's {p.name} file belongs; move or delete it, then run again"
            )
    if overwrite:
        for p in (paths.config, paths.checkpoint, paths.metrics, paths.log, paths.model):
            p.unlink(missing_ok=True)
    if not paths.config.exists():
        return None
    saved = read_run_json(paths.config, "pass --overwrite to train this run again").get("config", {})
    diff = incompatible(saved, cfg, paths.root)
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(cfg, k, None)!r}" for k in diff[:6])
        raise ValueError(
            f"run_dir={str(paths.root)!r} holds a run with another config ({shown}); use another --out "
            "or --study, or pass --overwrite to discard it"
        )
    if paths.metrics.exists():
        return read_run_json(
            paths.metrics, "delete it and run again with --resume: checkpoint.pt recomputes it"
        )
    if paths.checkpoint.exists() and not resume:
        raise ValueError(
            f"run_dir={str(paths.root)!r} holds an unfinished run (checkpoint.pt); pass --resume to "
            "continue it or --overwrite to start again"
        )
    return None


def read_run_json(path: Path, fix: str) -> dict[str, Any]:
    try:
        obj = read_json(path)
    except ValueError as exc:  # cut short by a crash or a full disk
        raise ValueError(f"{str(exc).split('; ')[0]}; {fix}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object; {fix}")
    return obj


@contextlib.contextmanager
def run_lock(paths: RunPaths):
    """Hold ``RUN/.lock`` while training (``mr2_core.locks.Busy`` when another process holds it). Under
    torchrun rank 0 holds it for every rank: the others would find it taken."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    made = [d for d in (paths.root, *paths.root.parents) if not d.exists()]  # folders the lock creates
    try:
        with hold_lock(paths.lock, f"run_dir={str(paths.root)!r}"):
            clean_tmp(paths.root, older_than_s=0)  # under the lock no other writer is mid-write here
            yield
    finally:
        for folder in made:  # a run that failed before writing anything leaves no empty seedK folders
            try:
                folder.rmdir()  # only an empty folder goes; the first that is not stops the walk
            except OSError:
                break
