"""Training runs and studies: one typed config per run, presets, resumable run directories.

* ``mr2.train.config``: ``TrainConfig`` (validated when made), ``apply_overrides`` for ``--set``;
* ``mr2.train.presets``: the named studies (``PRESETS``, ``get_preset``);
* ``mr2.train.runtime``: processes, devices, mixed precision, the optimiser and its schedule;
* ``mr2.train.sync_bn``: batch norm over the global batch under DDP (``sync_bn``);
* ``mr2.train.evaluation``: predictions and per-class numbers on a split;
* ``mr2.train.rundir``: a run's folder: its files, the finished-run and same-config checks, its lock;
* ``mr2.train.weights``: weights across runs (a backbone from another run, the WiSE-FT merge);
* ``mr2.train.session``: a run's state, built or resumed (``open_session``), validated, checkpointed,
  and its final metrics;
* ``mr2.train.loop``: one run (``train_run``): epochs (``train_epoch``), selection, checkpoints, metrics;
* ``mr2.train.study``: every run of a preset (``run_study``), in one process or a pool.
* ``mr2.train.custom``: your own ``Dataset``s and ``nn.Module`` with the toolkit's losses
  (``train_model``), into a run folder ``mr2 report`` reads;
* ``mr2.train.run_metrics``: the ``metrics.json`` of your own loop (``write_run_metrics``).
"""

from mr2.train.config import (
    OPTIMIZERS,
    RESUME_FREE_FIELDS,
    SCHEDULES,
    SELECT_METRICS,
    TrainConfig,
    apply_overrides,
    validate_config,
)
from mr2.train.custom import train_model
from mr2.train.loop import CHECKPOINT_VERSION, TrainingDiverged, train_run
from mr2.train.presets import ALL_LOSSES, PRESETS, Preset, get_preset
from mr2.train.run_metrics import run_metrics, write_run_metrics
from mr2.train.runtime import is_main_process
from mr2.train.study import run_dir_for, run_study

__all__ = [
    "TrainConfig",
    "Preset",
    "PRESETS",
    "ALL_LOSSES",
    "TrainingDiverged",
    "get_preset",
    "train_run",
    "train_model",
    "run_metrics",
    "write_run_metrics",
    "run_study",
    "run_dir_for",
    "apply_overrides",
    "validate_config",
    "OPTIMIZERS",
    "SCHEDULES",
    "SELECT_METRICS",
    "RESUME_FREE_FIELDS",
    "CHECKPOINT_VERSION",
    "is_main_process",
]
