"""A training session: one run's data, model, loss and optimiser, built or resumed, and what can be
done with it: an epoch (``mr2.train.loop.train_epoch``), a validation, a checkpoint and the final
metrics. The training loop (``train_run``), the GPU fast path (``fast``) and the benchmark
(``mr2.bench_train``) all use these public functions, so the benchmark times the code a run executes.

* ``open_session``: build the run (data, model, loss, optimiser) and resume its checkpoint
  (``load_checkpoint``: plain data only, and only for the same config and data) or record its
  config (``config.json``);
* ``validate``, ``evaluate_split``: per-class numbers of the model (or its WiSE-FT merge) on a split;
* ``save_checkpoint``: everything a resumed run needs, written atomically, and ``log.csv``;
* ``final_metrics``: the test numbers of the model each selection rule picks (``metrics.json``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from mr2 import data as mdata
from mr2.models import build_model
from mr2.train.config import TrainConfig
from mr2.train.evaluation import evaluate, predict
from mr2.train.rundir import RunPaths, config_record, incompatible
from mr2.train.runtime import (
    Dist,
    amp_dtype,
    environment,
    init_distributed,
    make_optimizer,
    resolve_device,
    rng_state,
    set_rng_state,
)
from mr2.train.sync_bn import convert_sync_batchnorm, resolve_sync_bn
from mr2.train.weights import cpu_state, interpolate_states, load_backbone, load_plain
from mr2_core.checks import one_line, summarise
from mr2_core.contracts import SELECTION_RULES
from mr2_core.io import code_version, torch_save, write_csv, write_json
from mr2_core.seeding import seed_everything

__all__ = [
    "Session",
    "open_session",
    "load_checkpoint",
    "save_checkpoint",
    "build_feature_cache",
    "validate",
    "evaluate_split",
    "evaluated",
    "final_metrics",
    "data_record",
    "last_margins",
    "CHECKPOINT_VERSION",
    "DATA_KEYS",
]

CHECKPOINT_VERSION = 2  # 2: one selected model per rule (SELECTION_RULES) and the initial weights
# what a resumed run's data must match (the checkpoint's and config.json's "data" record)
DATA_KEYS = ("source", "n_train", "n_val", "n_test", "class_names", "class_counts")


@dataclass
class Session:
    """Everything a run holds while it trains (built by ``open_session``)."""

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
    last_margins: torch.Tensor | None = None  # MR2's margins of the last step (kept by the checkpoint)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def channels_last(self) -> bool:
        return self.cfg.channels_last


# ------------------------------------------------------------------------------ opening a run
def open_session(
    cfg: TrainConfig,
    paths: RunPaths,
    resume: bool = False,
    feature_cache: bool | None = None,
    dist_info: Dist | None = None,
) -> Session:
    """Build the run (data, model, loss, optimiser) and resume its checkpoint (``resume`` and one
    exists) or record its config. ``feature_cache`` as in ``train_run``; ``dist_info``: the caller's
    ``init_distributed``, made once per run (None: made here)."""
    dist_info = dist_info or init_distributed(cfg.device)
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
        load_checkpoint(session)
    elif dist_info.main:
        record = {
            "config": config_record(cfg),
            "code_version": code_version(),
            "environment": environment(device, dist_info),
            "data": data_record(data),
        }
        write_json(paths.config, record)
    return session


def data_record(data: mdata.ImageData) -> dict[str, Any]:
    """What the run trains on, as config.json and the checkpoint record it (``DATA_KEYS``)."""
    sizes = {"n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test)}
    return {
        "source": data.source, **sizes, "class_names": list(data.class_names),
        "class_counts": data.class_counts().tolist(),
    }  # fmt: skip


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


def load_checkpoint(s: Session) -> None:
    path = s.paths.checkpoint
    fix = "pass --overwrite to train this run again from the start (its saved epochs are lost)"
    # plain data only (weights_only): a checkpoint received with a run folder cannot run code
    ckpt = load_plain(path, str(path), "checkpoint", fix, map_location=s.device)
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        found = ckpt.get("version") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: checkpoint format {found!r}, expected {CHECKPOINT_VERSION}; {fix}")
    _check_resumable(s, ckpt, fix)
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
        s.last_margins = ckpt.get("margins")
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a field missing or of another shape
        raise ValueError(f"{path}: checkpoint does not fit this run ({one_line(exc)}); {fix}") from None
    if s.dist.main and s.log_rows:  # a kill between the checkpoint and the log write lost log rows
        import pandas as pd

        write_csv(s.paths.log, pd.DataFrame(s.log_rows))


def _check_resumable(s: Session, ckpt: dict[str, Any], fix: str) -> None:
    """Refuse to continue a checkpoint under another config or on other data (one line naming what
    differs). The data record is the checkpoint's, or config.json's for a checkpoint made before it
    kept one."""
    path = s.paths.checkpoint
    saved = ckpt.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: checkpoint records no config; {fix}")
    diff = incompatible(saved, s.cfg, s.paths.root)
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(s.cfg, k, None)!r}" for k in diff[:6])
        raise ValueError(
            f"{path}: made with another config ({shown}); resume with the settings it was made with, or {fix}"
        )
    data = ckpt.get("data")
    if data is None and s.paths.config.is_file():
        from mr2.train.rundir import read_run_json

        data = read_run_json(s.paths.config, fix).get("data")
    if not isinstance(data, dict):
        return  # a checkpoint that predates the record and no config.json: nothing to compare
    now = data_record(s.data)
    diff = [k for k in DATA_KEYS if k in data and data[k] != now[k]]
    if diff:
        shown = ", ".join(f"{k}: {summarise(data[k])} -> {summarise(now[k])}" for k in diff[:3])
        raise ValueError(
            f"{path}: made on other data ({shown}); point --data-dir at the data it was made on, or {fix}"
        )


def build_feature_cache(s: Session) -> None:
    """A frozen backbone's features of the training and validation images, computed once."""
    t0 = time.perf_counter()
    # a frozen backbone is always in evaluation mode: these are the features the head sees in training
    for name, x in (("train", s.x_train), ("val", s.x_val)):
        _, s.cache[name] = predict(
            s.model, x, s.data, s.cfg, s.device, s.amp_dtype, s.channels_last, want_features=True
        )
    s.elapsed += time.perf_counter() - t0  # the cache is part of the training time


def evaluated(s: Session, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """The model that evaluation sees: the trained weights (``state``, or the model as it stands), or
    their WiSE-FT merge (1 - a) w_init + a w with the initial weights when ``merge_alpha`` = a is set
    (Wortsman et al. 2022; integer buffers such as batch counts are taken from the trained weights)."""
    if state is not None:
        s.model.load_state_dict(state)
    if s.cfg.merge_alpha is None:
        return s.model
    s.eval_model.load_state_dict(interpolate_states(s.init_state, s.model.state_dict(), s.cfg.merge_alpha))
    return s.eval_model


def evaluate_split(s: Session, model: torch.nn.Module, split: str, feature_stats: bool = False):
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


def validate(s: Session) -> dict[str, Any]:
    return evaluate_split(s, evaluated(s), "val").metrics


def save_checkpoint(s: Session, epoch: int) -> None:
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
        "data": data_record(s.data),
        "margins": last_margins(s),
    }
    torch_save(s.paths.checkpoint, state)
    import pandas as pd

    write_csv(s.paths.log, pd.DataFrame(s.log_rows))


# ------------------------------------------------------------------------------ final metrics
def last_margins(s: Session) -> torch.Tensor | None:
    """MR2's margins (K,) of the last training step, on the host; those the checkpoint kept when this
    process has not trained a step (a run resumed from its final checkpoint); None for other losses."""
    margins = getattr(s.loss_fn, "last", {}).get("margins")
    if torch.is_tensor(margins) and margins.numel() > 1:
        s.last_margins = margins.detach().float().cpu()
    return s.last_margins


def _selected_state(s: Session, rule: str) -> tuple[int, dict[str, torch.Tensor]]:
    if rule == "last":
        return s.cfg.epochs, cpu_state(s.model)
    return s.best[rule]["epoch"], s.best[rule]["state"]


def final_metrics(s: Session) -> dict[str, Any]:
    """Test numbers of the model each selection rule picks (the configured rule's at the top level),
    and the bound's a_k from the configured rule's training features. Every split is evaluated sharded
    over the ranks with summed counts, so every rank returns the same dict."""
    cfg, data = s.cfg, s.data
    margins = last_margins(s)
    trained = {rule: _selected_state(s, rule) for rule in SELECTION_RULES}  # before any state is loaded
    selections = {}
    for rule in SELECTION_RULES:
        if rule == cfg.select_metric:
            continue
        epoch, state = trained[rule]
        selections[rule] = {"selected_epoch": epoch, **evaluate_split(s, evaluated(s, state), "test").metrics}
    # the configured rule last, so the model ends (and model.pt is saved) in its selected state
    epoch, state = trained[cfg.select_metric]
    model = evaluated(s, state)
    tested = evaluate_split(s, model, "test")
    test = tested.metrics
    selections[cfg.select_metric] = {"selected_epoch": epoch, **test}
    val = evaluate_split(s, model, "val").metrics
    stats = evaluate_split(s, model, "train", feature_stats=True).feature_stats
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
    if margins is not None:  # MR2: the margins of the last step
        m = margins
        metrics.update(margins=m.tolist(), margin_min=float(m.min()), margin_max=float(m.max()))
    if cfg.save_model and s.dist.main:
        torch_save(s.paths.model, cpu_state(model))
    return metrics
