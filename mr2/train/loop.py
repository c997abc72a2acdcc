"""One training run, resumable: open (or resume) the run directory, train epoch by epoch, select a
model on the validation split, checkpoint atomically, and write the final metrics.

A run directory ``RUNS/<study>/<loss>/seed<k>/`` holds (docs/CONTRACTS.md):

* ``config.json``: the config, the code version (git hash) and the environment;
* ``log.csv``: one row per epoch (training loss and accuracy, validation per-class numbers, lr, time);
* ``checkpoint.pt``: written atomically after every epoch (model, optimiser, loss statistics, RNG
  states, the best model so far), so an interrupted run resumes and ends with the same numbers;
* ``metrics.json``: test numbers of the model selected on the validation split, per class, and the
  bound's a_k = ||mu_k||² + s_k² from that model's training features;
* ``.lock`` while a process trains it (``mr2_core.locks``): a second process gets ``Busy``, naming the
  first; a lock left by a killed process is taken over.

Under torch.distributed (``torchrun``) every rank ends with the same model and the same numbers:
DDP averages the gradients, batch norm is synchronised (``sync_bn``) or its buffers are taken from
rank 0 after every epoch, evaluation is sharded over the ranks with summed counts (``evaluation``), so
every rank selects the same epochs; rank 0 writes the files and holds the lock.

The run's state and what is done with it apart from the epoch itself (build or resume, validate,
checkpoint, final metrics) are ``mr2.train.session``'s public functions; ``train_epoch`` is here.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from mr2.train.config import TrainConfig
from mr2.train.fast import EpochFeed, configure_value_checks, training_net
from mr2.train.rundir import RunPaths, check_resume_overwrite, existing_result, run_lock
from mr2.train.runtime import init_distributed, lr_at
from mr2.train.session import (
    CHECKPOINT_VERSION,
    Session,
    build_feature_cache,
    final_metrics,
    open_session,
    save_checkpoint,
    validate,
)
from mr2.train.weights import cpu_state
from mr2_core.checks import bad
from mr2_core.io import write_json
from mr2_core.progress import log_line, progress_bar

__all__ = ["train_run", "train_epoch", "TrainingDiverged", "CHECKPOINT_VERSION"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


# -------------------------------------------------------------------------------- one epoch
def _diverged(s: Session, epoch: int, step: int, what: str) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint (after epoch {epoch}) is kept in {s.paths.checkpoint}"
        if epoch > 0
        else "no epoch had finished, so there is no checkpoint"
    )
    return TrainingDiverged(
        f"{what} in epoch {epoch + 1}, by step {step + 1} (loss {s.cfg.loss}, lr={s.cfg.lr}); training "
        f"stopped and {kept}. Lower lr or check the loss options {s.cfg.loss_options}."
    )


def train_epoch(s: Session, epoch: int, show: bool = False) -> dict[str, Any]:
    """One pass over the training split; returns the epoch's training numbers for the log."""
    cfg, k = s.cfg, s.num_classes
    s.loss_fn.on_epoch_start(epoch)
    if cfg.difficulty_from_val and hasattr(s.loss_fn, "set_class_accuracy") and s.log_rows:
        s.loss_fn.set_class_accuracy([s.log_rows[-1][f"val_class{j}_accuracy"] for j in range(k)])
    s.model.train()
    # the epoch's batches and augmentation on the device, checks and compile for a GPU (fast.py)
    feed = EpochFeed(s, epoch)
    batches, net = feed.batches, training_net(s)
    configure_value_checks(s)
    loss_sum = torch.zeros((), device=s.device, dtype=torch.float64)
    checked_sum, checked_step = 0.0, 0
    n_correct, n_seen = torch.zeros((), device=s.device, dtype=torch.long), 0
    bar = progress_bar(
        batches, progress=show, desc=f"{cfg.run_name} s{cfg.seed} ep {epoch + 1}/{cfg.epochs}", leave=False
    )
    lr = cfg.lr
    autocast = {"dtype": s.amp_dtype, "enabled": s.amp_dtype is not None}
    for step, idx in enumerate(bar):
        lr = lr_at(epoch * s.steps_per_epoch + step, s.steps_per_epoch, cfg)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        yb = s.y_train.index_select(0, idx)
        if s.cache:  # frozen backbone: its features are fixed, only the head trains
            feats = s.cache["train"][idx]
            with torch.autocast(s.device.type, **autocast):
                logits = s.model.head(feats)
        else:
            xb = feed.images(step, idx)
            with torch.autocast(s.device.type, **autocast):
                logits, feats = net(xb)
        try:
            loss = s.loss_fn(logits.float(), feats.float(), yb)
        except ValueError as exc:  # the loss refuses NaN/inf logits or features: the net diverged
            if bool(torch.isfinite(logits).all()) and bool(torch.isfinite(feats).all()):
                raise
            raise _diverged(s, epoch, step, f"the network output NaN/inf ({exc})") from None
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        loss_sum += loss.detach()
        n_correct += (logits.detach().argmax(1) == yb).sum()
        n_seen += len(yb)
        if (step + 1) % cfg.log_every == 0 or step + 1 == len(batches):
            total_t = loss_sum.clone()
            if s.dist.world_size > 1:  # every rank sees a NaN on any rank, and stops with it
                import torch.distributed as dist

                dist.all_reduce(total_t)
            total = float(total_t)  # one device sync per log_every steps
            if not math.isfinite(total):
                raise _diverged(s, epoch, step, f"loss became {total}")
            if show:  # the mean loss of the steps since the last check, over every rank's batches
                mean = (total - checked_sum) / ((step + 1 - checked_step) * s.dist.world_size)
                bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.3g}")
            checked_sum, checked_step = total, step + 1
    bar.close()
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": float(loss_sum) / len(batches),
        "train_accuracy": float(n_correct) / n_seen,
    }


def _synchronise(s: Session, train: dict[str, Any]) -> dict[str, Any]:
    """After an epoch under DDP: every rank takes rank 0's model buffers (batch-norm running statistics
    differ per rank unless ``sync_bn``, since each rank normalised its own batch; DDP itself would
    broadcast them at the next forward), and the log's training numbers become the mean over the ranks
    (the ranks take equal batches, so that is the global batch's mean)."""
    if s.dist.world_size == 1:
        return train
    for buf in s.model.buffers():
        s.dist.broadcast(buf)
    keys = ("train_loss", "train_accuracy")
    t = torch.tensor([train[k] for k in keys], dtype=torch.float64, device=s.device)
    means = (s.dist.all_reduce(t) / s.dist.world_size).tolist()
    return {**train, **dict(zip(keys, means, strict=True))}


def _slowest(s: Session, seconds: float) -> float:
    """The longest of the ranks' times: the job's time, the same number on every rank."""
    if s.dist.world_size == 1:
        return seconds
    return float(s.dist.all_reduce(torch.tensor([seconds], dtype=torch.float64, device=s.device), "max"))


def _loss_scalars(s: Session) -> dict[str, float]:
    """The loss's last-step scalar components (``loss.last``), averaged over the ranks: with equal
    per-rank batches, the global batch's value (the objective DDP's averaged gradients descend)."""
    last = getattr(s.loss_fn, "last", {})
    scalars = {n: v for n, v in last.items() if not torch.is_tensor(v) or v.numel() == 1}
    if s.dist.world_size == 1 or not scalars:
        return {n: float(v) for n, v in scalars.items()}
    t = torch.tensor([float(v) for v in scalars.values()], dtype=torch.float64, device=s.device)
    return dict(zip(scalars, (s.dist.all_reduce(t) / s.dist.world_size).tolist(), strict=True))


def _log_row(s: Session, train: dict[str, Any], val: dict[str, Any]) -> dict[str, Any]:
    row = {
        **train,
        "val_accuracy": val["accuracy"],
        "val_worst_class_accuracy": val["worst_class_accuracy"],
        "val_class_accuracy_std": val["class_accuracy_std"],
        "time_s": s.elapsed,
        **{f"val_class{j}_accuracy": a for j, a in enumerate(val["per_class_accuracy"])},
    }
    for name, value in _loss_scalars(s).items():
        row[f"loss_{name}"] = value
    margins = getattr(s.loss_fn, "last", {}).get("margins")
    if torch.is_tensor(margins) and margins.numel() > 1:  # the realised spread of the class margins
        row["margin_min"], row["margin_max"] = (float(v) for v in torch.aminmax(margins.float()))
    return row


def _select(s: Session, epoch: int, val: dict[str, Any]) -> None:
    """For each selection rule, keep this epoch's weights if its validation metric improved (the
    ``last`` rule needs no copy: it is the model as it stands)."""
    state = None
    for rule, best in s.best.items():
        if val[rule] > best["value"]:
            state = state or cpu_state(s.model)
            s.best[rule] = {"epoch": epoch + 1, "value": val[rule], "state": state}


# ------------------------------------------------------------------------------------ the run
def train_run(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    epoch_budget: int | None = None,
    feature_cache: bool | None = None,
) -> dict[str, Any] | None:
    """Train one run into ``run_dir`` and return its ``metrics.json`` content.

    Args:
        cfg: the run's config.
        run_dir: its folder (created).
        resume: continue an unfinished run from its checkpoint (the config must match, except
            ``RESUME_FREE_FIELDS``). Without it an unfinished run directory is an error.
        overwrite: discard whatever ``run_dir`` holds and start again.
        progress: report progress (rank 0 only): a bar on a terminal (``mr2_core.progress``) and a
            line per epoch.
        epoch_budget: train at most this many epochs in this call, then return None with the
            checkpoint saved (for time-sliced runs; an interrupted run behaves the same).
        feature_cache: a frozen backbone's features of the training and validation images are
            computed once and the epochs train the head on them, instead of running the backbone
            every step. None (default): on when ``freeze_backbone`` is set, there is no augmentation
            (``crop_padding``, ``hflip``) and one process trains; False: never; True: insist (a
            ValueError when those conditions do not hold). ``metrics.json`` records which was used.

    Returns:
        The metrics dict, or None when ``epoch_budget`` stopped the run early. A finished run with
        the same config is not retrained: its metrics are read back.

    Raises:
        ValueError: bad config, ``run_dir`` holds a run of another config, or a corrupt checkpoint.
        TrainingDiverged: the loss became NaN/inf; the last good checkpoint stays in ``run_dir``.
        mr2_core.locks.Busy: another live process is training this run (the message names it).
    """
    if not isinstance(cfg, TrainConfig):  # a TrainConfig is validated (and frozen) when it is made
        raise bad("cfg", cfg, "a mr2.train.TrainConfig")
    check_resume_overwrite(resume, overwrite)
    paths = RunPaths(Path(run_dir))
    with run_lock(paths):
        return _train_locked(cfg, paths, resume, overwrite, progress, epoch_budget, feature_cache)


def _train_locked(
    cfg: TrainConfig,
    paths: RunPaths,
    resume: bool,
    overwrite: bool,
    progress: bool,
    epoch_budget: int | None,
    feature_cache: bool | None,
) -> dict[str, Any] | None:
    dist_info = init_distributed(cfg.device)
    # rank 0 looks at the folder and every rank follows its answer: ranks never race on the files
    try:
        outcome = ("ok", existing_result(cfg, paths, resume, overwrite)) if dist_info.main else None
    except ValueError as exc:
        outcome = ("error", str(exc))
    kind, finished = dist_info.broadcast_object(outcome)
    if kind == "error":
        raise ValueError(finished)
    if finished is not None:
        return finished
    s = open_session(cfg, paths, resume, feature_cache, dist_info)
    show = progress and s.dist.main
    if s.use_cache and s.start_epoch < cfg.epochs:
        build_feature_cache(s)
    epochs_done_now = 0
    for epoch in range(s.start_epoch, cfg.epochs):
        if epoch_budget is not None and epochs_done_now >= epoch_budget:
            s.dist.barrier()  # rank 0's checkpoint is written before any rank returns
            return None
        t0 = time.perf_counter()
        train = _synchronise(s, train_epoch(s, epoch, show))
        val = validate(s)  # the same numbers on every rank, so every rank selects the same epochs
        s.elapsed += _slowest(s, time.perf_counter() - t0)
        s.log_rows.append(_log_row(s, train, val))
        _select(s, epoch, val)
        if s.dist.main:
            save_checkpoint(s, epoch)
        if show:
            log_line(
                f"[{cfg.study}/{cfg.run_name}/seed{cfg.seed}] epoch {epoch + 1}/{cfg.epochs}: "
                f"loss {train['train_loss']:.4f}, val acc {val['accuracy']:.4f}, "
                f"worst {val['worst_class_accuracy']:.4f}, {s.elapsed:.0f}s"
            )
        epochs_done_now += 1

    metrics = final_metrics(s)
    if s.dist.main:
        write_json(paths.metrics, metrics)
    s.dist.barrier()
    return metrics
