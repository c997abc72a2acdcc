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
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mr2_core.checks import one_line
from mr2_core.contracts import (
    SELECTION_RULES,
)
from mr2_core.io import code_version, torch_save, write_csv, write_json
from mr2_core.seeding import seed_everything
from mr2 import data as mdata
from mr2.models import build_model
from mr2.train.config import TrainConfig, validate_config
from mr2.train.evaluation import evaluate, predict
from mr2.train.fast import EpochFeed, configure_value_checks, training_net
from mr2.train.rundir import (
    RunPaths,
    config_record,
    existing_result,
    run_lock,
)
from mr2.train.runtime import (
    Dist,
    amp_dtype,
    environment,
    init_distributed,
    lr_at,
    make_optimizer,
    resolve_device,
    rng_state,
    set_rng_state,
)
from mr2.train.sync_bn import convert_sync_batchnorm, resolve_sync_bn
from mr2.train.weights import cpu_state, interpolate_states, load_backbone

__all__ = ["train_run", "TrainingDiverged", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 2  # 2: one selected model per rule (SELECTION_RULES) and the initial weights


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Session:
    """Everything a run holds while it trains (built by ``_open``)."""

    cfg: TrainConfig
    paths: RunPaths
    dist: Dist
    device: torch.device
    amp_dtype: torch.dtype | None
    data: mdata.ImageData
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped in DDP under torch.distributed
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    per_rank_batch: int
    steps_per_epoch: int
    use_cache: bool
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
    start_epoch: int = 0
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds so far (resumed runs continue the count)
    # per selection rule (but "last", which is the model as it stands): the best epoch so far
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    init_state: dict[str, torch.Tensor] | None = None  # the weights before training, for merge_alpha
    eval_model: torch.nn.Module | None = None  # a copy that holds the merged weights, for merge_alpha

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def channels_last(self) -> bool:
        return self.cfg.channels_last


# ------------------------------------------------------------------------------ opening a run
def _open(cfg: TrainConfig, paths: RunPaths, resume: bool, feature_cache: bool | None) -> Session:
    """Build the run (data, model, loss, optimiser) and resume its checkpoint or record its config."""
    dist_info = init_distributed(cfg.device)
    device = resolve_device(cfg.device, dist_info)
    amp = amp_dtype(device, cfg.amp)
    seed_everything(cfg.seed, deterministic=cfg.deterministic)

    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    data = mdata.load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction, split_seed=split_seed,
        max_train_samples=cfg.max_train_samples, train_subset=cfg.train_subset,
        imbalance_ratio=cfg.imbalance_ratio, channels=cfg.image_channels, image_size=cfg.image_size,
    )  # fmt: skip
    k = data.num_classes
    side = cfg.input_size or data.image_size
    model = build_model(
        cfg.model, num_classes=k, in_channels=data.in_channels, image_size=side, width=cfg.width,
        hidden=cfg.hidden, pretrained=cfg.pretrained, freeze_backbone=cfg.freeze_backbone, head=cfg.head,
    ).to(device)  # fmt: skip
    if cfg.init_checkpoint is not None:
        load_backbone(model, cfg.init_checkpoint, head=bool(cfg.init_head))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    per_rank_batch = _per_rank_batch(cfg, dist_info)
    # the value used is recorded (config.json): with None the run resolves it for this launch
    cfg = dataclasses.replace(
        cfg, sync_bn=resolve_sync_bn(cfg.sync_bn, model, dist_info.world_size, per_rank_batch)
    )
    if cfg.sync_bn and dist_info.world_size > 1:
        model = convert_sync_batchnorm(model, device)  # before DDP and the optimiser
    from mr2.losses import make_loss

    loss_fn = make_loss(cfg.loss, k, class_counts=data.class_counts(), **cfg.loss_options).to(device)
    optimizer = make_optimizer(model.parameters(), cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    net = model
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    n_train = len(data.y_train)
    shard = -(-n_train // dist_info.world_size)
    cacheable = cfg.freeze_backbone and not (cfg.crop_padding or cfg.hflip) and dist_info.world_size == 1
    if feature_cache and not cacheable:
        raise ValueError(
            f"feature_cache=True needs freeze_backbone=True, no augmentation (crop_padding=0, hflip=False) "
            f"and one process; got freeze_backbone={cfg.freeze_backbone}, crop_padding={cfg.crop_padding}, "
            f"hflip={cfg.hflip}, world_size={dist_info.world_size}"
        )
    session = Session(
        cfg=cfg, paths=paths, dist=dist_info, device=device, amp_dtype=amp, data=data, model=model, net=net,
        loss_fn=loss_fn, optimizer=optimizer, scaler=scaler,
        x_train=data.x_train.to(device), y_train=data.y_train.to(device),
        x_val=data.x_val.to(device), y_val=data.y_val.to(device),
        per_rank_batch=per_rank_batch, steps_per_epoch=-(-shard // per_rank_batch),
        use_cache=cacheable if feature_cache is None else bool(feature_cache),
    )  # fmt: skip
    session.best = {rule: _no_selection() for rule in SELECTION_RULES if rule != "last"}
    if cfg.merge_alpha is not None:
        session.init_state = cpu_state(model)
        import copy

        session.eval_model = copy.deepcopy(model)
    if dist_info.broadcast_object(paths.checkpoint.exists() and resume):  # rank 0 decides
        if not paths.checkpoint.is_file():
            raise ValueError(
                f"run_dir={str(paths.root)!r}: rank {dist_info.rank} cannot see {paths.checkpoint.name}, "
                "which rank 0 resumes from; put --out on a filesystem that every node shares"
            )
        _load_checkpoint(session)
    elif dist_info.main:
        sizes = {"n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test)}
        record = {
            "config": config_record(cfg),
            "code_version": code_version(),
            "environment": environment(device, dist_info),
            "data": {
                "source": data.source, **sizes, "class_names": list(data.class_names),
                "class_counts": data.class_counts().tolist(),
            },
        }  # fmt: skip
        write_json(paths.config, record)
    return session


def _per_rank_batch(cfg: TrainConfig, dist_info: Dist) -> int:
    """Images per rank and step: ``batch_size`` / world size (the global batch is ``batch_size``)."""
    per_rank = max(1, cfg.batch_size // dist_info.world_size)
    if per_rank * dist_info.world_size != cfg.batch_size and dist_info.main:
        import warnings

        warnings.warn(
            f"batch_size={cfg.batch_size} is not a multiple of the world size {dist_info.world_size}: "
            f"each rank takes {per_rank} images per step, a global batch of "
            f"{per_rank * dist_info.world_size}",
            RuntimeWarning,
            stacklevel=3,
        )
    return per_rank


def _no_selection() -> dict[str, Any]:
    return {"epoch": -1, "value": -math.inf, "state": None}


def _load_checkpoint(s: Session) -> None:
    path = s.paths.checkpoint
    fix = "pass --overwrite to train this run again from the start (its saved epochs are lost)"
    try:
        ckpt = torch.load(path, map_location=s.device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickle garbage, a text file: all corrupt
        raise ValueError(f"{path}: corrupt or truncated checkpoint ({one_line(exc)}); {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        found = ckpt.get("version") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: checkpoint format {found!r}, expected {CHECKPOINT_VERSION}; {fix}")
    try:
        s.model.load_state_dict(ckpt["model"])
        s.init_state = ckpt.get("init_state", s.init_state)
        s.optimizer.load_state_dict(ckpt["optimizer"])
        s.loss_fn.load_state_dict(ckpt["loss"])
        s.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"], s.device)
        s.start_epoch, s.log_rows, s.elapsed, s.best = (
            ckpt["epoch"],
            ckpt["log"],
            ckpt["train_time_s"],
            ckpt["best"],
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a field missing or of another shape
        raise ValueError(f"{path}: checkpoint does not fit this run ({one_line(exc)}); {fix}") from None


def _build_feature_cache(s: Session) -> None:
    """A frozen backbone's features of the training and validation images, computed once."""
    t0 = time.perf_counter()
    # a frozen backbone is always in evaluation mode: these are the features the head sees in training
    for name, x in (("train", s.x_train), ("val", s.x_val)):
        _, s.cache[name] = predict(
            s.model, x, s.data, s.cfg, s.device, s.amp_dtype, s.channels_last, want_features=True
        )
    s.elapsed += time.perf_counter() - t0  # the cache is part of the training time


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


def _train_epoch(s: Session, epoch: int, show: bool) -> dict[str, Any]:
    """One pass over the training split; returns the epoch's training numbers for the log."""
    from tqdm.auto import tqdm

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
    bar = tqdm(
        batches, desc=f"{cfg.run_name} s{cfg.seed} ep {epoch + 1}/{cfg.epochs}", disable=not show, leave=False
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


def _evaluated(s: Session, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The model that evaluation sees: the trained weights (``state``, or the model as it stands), or
    their WiSE-FT merge (1 - a) w_init + a w with the initial weights when ``merge_alpha`` = a is set
    (Wortsman et al. 2022; integer buffers such as batch counts are taken from the trained weights)."""
    if state is not None:
        s.model.load_state_dict(state)
    if s.cfg.merge_alpha is None:
        return s.model
    s.eval_model.load_state_dict(interpolate_states(s.init_state, s.model.state_dict(), s.cfg.merge_alpha))
    return s.eval_model


def _evaluate(s: Session, model: torch.nn.Module, split: str, feature_stats: bool = False):
    """``evaluation.evaluate`` of ``model`` on the training, validation or test split, sharded over
    the ranks (a collective: every rank calls it, and every rank gets the same numbers)."""
    if split == "train":
        x, y = s.x_train, s.y_train
    elif split == "val":
        x, y = s.x_val, s.y_val
    else:
        x, y = s.data.x_test.to(s.device), s.data.y_test.to(s.device)
    return evaluate(
        model, x, y, s.data, s.cfg, s.device, s.amp_dtype, s.channels_last, s.dist,
        cached=s.cache.get(split), feature_stats=feature_stats,
    )  # fmt: skip


def _validate(s: Session) -> dict[str, Any]:
    return _evaluate(s, _evaluated(s), "val").metrics


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


def _save_checkpoint(s: Session, epoch: int) -> None:
    state = {
        "version": CHECKPOINT_VERSION,
        "epoch": epoch + 1,
        "model": s.model.state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "loss": s.loss_fn.state_dict(),
        "scaler": s.scaler.state_dict(),
        "rng": rng_state(s.device),
        "log": s.log_rows,
        "train_time_s": s.elapsed,
        "best": s.best,
        "init_state": s.init_state,
        "config": config_record(s.cfg),
    }
    torch_save(s.paths.checkpoint, state)
    import pandas as pd

    write_csv(s.paths.log, pd.DataFrame(s.log_rows))


# ------------------------------------------------------------------------------ final metrics
def _selected_state(s: Session, rule: str) -> tuple[int, dict[str, torch.Tensor]]:
    if rule == "last":
        return s.cfg.epochs, cpu_state(s.model)
    return s.best[rule]["epoch"], s.best[rule]["state"]


def _final_metrics(s: Session) -> dict[str, Any]:
    """Test numbers of the model each selection rule picks (the configured rule's at the top level),
    and the bound's a_k from the configured rule's training features. Every split is evaluated sharded
    over the ranks with summed counts, so every rank returns the same dict."""
    cfg, data = s.cfg, s.data
    margins = getattr(s.loss_fn, "last", {}).get("margins")
    trained = {rule: _selected_state(s, rule) for rule in SELECTION_RULES}  # before any state is loaded
    selections = {}
    for rule in SELECTION_RULES:
        if rule == cfg.select_metric:
            continue
        epoch, state = trained[rule]
        selections[rule] = {"selected_epoch": epoch, **_evaluate(s, _evaluated(s, state), "test").metrics}
    # the configured rule last, so the model ends (and model.pt is saved) in its selected state
    epoch, state = trained[cfg.select_metric]
    model = _evaluated(s, state)
    tested = _evaluate(s, model, "test")
    test = tested.metrics
    selections[cfg.select_metric] = {"selected_epoch": epoch, **test}
    val = _evaluate(s, model, "val").metrics
    stats = _evaluate(s, model, "train", feature_stats=True).feature_stats
    metrics = {
        **test,
        "class_spread": stats["spread"].tolist(),
        "class_mean_norm2": stats["mean_norm2"].tolist(),
        "class_within_spread": stats["within"].tolist(),
        "class_centred_spread": stats["centred"].tolist(),
        "class_separation": stats["separation"].tolist(),
        **({"class_oracle_share": stats["oracle"].tolist()} if "oracle" in stats else {}),
        "confusion_matrix": tested.confusion.tolist(),
        "val_accuracy": val["accuracy"],
        "val_per_class_accuracy": val["per_class_accuracy"],
        "selected_epoch": epoch,
        "select_metric": cfg.select_metric,
        "selections": {rule: selections[rule] for rule in SELECTION_RULES},
        "dataset": cfg.dataset,
        "class_names": list(data.class_names),
        "class_counts": data.class_counts().tolist(),
        "loss": cfg.run_name,
        "loss_fn": cfg.loss,
        "seed": cfg.seed,
        "study": cfg.study,
        "model": cfg.model,
        "epochs": cfg.epochs,
        "train_time_s": s.elapsed,
        # one name for the whole job: a rank's own device (cuda:N) would make the ranks' dicts differ
        "device": str(s.device) if s.dist.world_size == 1 else f"{s.device.type} x {s.dist.world_size}",
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "feature_cache": bool(s.use_cache),
        "merge_alpha": cfg.merge_alpha,
        "code_version": code_version(),
    }
    if torch.is_tensor(margins) and margins.numel() > 1:  # MR2: the margins of the last step
        m = margins.detach().float().cpu()
        metrics.update(margins=m.tolist(), margin_min=float(m.min()), margin_max=float(m.max()))
    if cfg.save_model and s.dist.main:
        torch_save(s.paths.model, cpu_state(model))
    return metrics


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
        progress: show tqdm bars (rank 0 only).
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
    validate_config(cfg)
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
    s = _open(cfg, paths, resume, feature_cache)
    show = progress and s.dist.main
    if s.use_cache and s.start_epoch < cfg.epochs:
        _build_feature_cache(s)
    epochs_done_now = 0
    for epoch in range(s.start_epoch, cfg.epochs):
        if epoch_budget is not None and epochs_done_now >= epoch_budget:
            s.dist.barrier()  # rank 0's checkpoint is written before any rank returns
            return None
        t0 = time.perf_counter()
        train = _synchronise(s, _train_epoch(s, epoch, show))
        val = _validate(s)  # the same numbers on every rank, so every rank selects the same epochs
        s.elapsed += _slowest(s, time.perf_counter() - t0)
        s.log_rows.append(_log_row(s, train, val))
        _select(s, epoch, val)
        if s.dist.main:
            _save_checkpoint(s, epoch)
        if show:
            from tqdm.auto import tqdm

            tqdm.write(
                f"[{cfg.study}/{cfg.run_name}/seed{cfg.seed}] epoch {epoch + 1}/{cfg.epochs}: "
                f"loss {train['train_loss']:.4f}, val acc {val['accuracy']:.4f}, "
                f"worst {val['worst_class_accuracy']:.4f}, {s.elapsed:.0f}s"
            )
        epochs_done_now += 1

    metrics = _final_metrics(s)
    if s.dist.main:
        write_json(paths.metrics, metrics)
    s.dist.barrier()
    return metrics
