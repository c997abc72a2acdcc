"""Training runs and studies: one typed config per run, presets, resumable run directories.

A run directory ``RUNS/<study>/<loss>/seed<k>/`` holds (docs/CONTRACTS.md):

* ``config.json``: the config, the code version (git hash) and the environment;
* ``log.csv``: one row per epoch (training loss and accuracy, validation per-class numbers, lr, time);
* ``checkpoint.pt``: written atomically after every epoch (model, optimiser, loss statistics, RNG
  states, the best model so far), so an interrupted run resumes and ends with the same numbers;
* ``metrics.json``: test numbers of the model selected on the validation split, per class, and the
  bound's a_k = ||mu_k||² + s_k² from that model's training features.

Multi-GPU: launch with ``torchrun --nproc_per_node=N -m mr2 train ...``; each rank takes every N-th
index of a shared permutation (``mr2.data.batch_indices``), the model is wrapped in DDP and the losses
all-reduce their class statistics themselves. Rank 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from common.checks import bad
from common.contracts import LOSSES
from common.io import code_version, read_json, torch_save, write_csv, write_json
from common.seeding import seed_everything
from mr2 import data as mdata
from mr2.metrics import class_feature_stats, class_summary, confusion_matrix, per_class_accuracy
from mr2.models import build_model

__all__ = [
    "TrainConfig",
    "Preset",
    "PRESETS",
    "TrainingDiverged",
    "get_preset",
    "train_run",
    "run_study",
    "run_dir_for",
    "apply_overrides",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")
SELECT_METRICS = ("accuracy", "worst_class_accuracy", "last")
# config fields that may differ when a run is resumed: they do not change the numbers
RESUME_FREE_FIELDS = frozenset({"data_dir", "log_every", "device"})
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """Everything that defines one training run. Units in comments."""

    study: str = "custom"  # name of the study folder under RUNS/
    # data
    dataset: str = "fashion-mnist"  # one of mr2.data.DATASET_NAMES
    data_dir: str | None = None  # looked at first (see mr2.data); required for "folder"
    val_fraction: float = 0.1  # of each class's training images, held out for model selection
    split_seed: int | None = None  # seed of the validation split; None: the run's seed
    max_train_samples: int | None = None  # images kept for training (stratified); None: all
    image_channels: int = 3  # "folder" only: 1 (grey) or 3 (RGB)
    image_size: int | None = None  # "folder" only: resize to this side (pixels)
    input_size: int | None = None  # resize batches to this side (pixels) before the model; None: as stored
    # model
    model: str = "small-cnn"  # small-cnn | resnet18 | torchvision:<arch> | timm:<arch>
    width: int | None = None  # channels of the first stage; None: the model's default (32 / 64)
    hidden: int = 128  # small-cnn feature size (dimensions)
    pretrained: bool = False  # torchvision/timm weights (need a cache or a network)
    freeze_backbone: bool = False  # linear probe: train the head on fixed features
    head: str = "linear"  # linear | cosine (LDAM's normalised head: pair it with loss.s=30)
    # loss
    loss: str = "ce"  # one of mr2.losses.LOSS_NAMES
    loss_options: dict[str, Any] = field(default_factory=dict)  # keyword options of make_loss
    difficulty_from_val: bool = True  # cdb: class difficulty from the validation split (the authors' way)
    # optimisation
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # images per step, summed over all ranks
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw
    lr: float = 0.05  # peak learning rate (per step, not scaled by batch size)
    momentum: float = 0.9  # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4  # L2 coefficient (decoupled for AdamW)
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr (epochs, fractional allowed)
    schedule: str = "cosine"  # after warm-up: cosine to 0 | constant
    crop_padding: int = 0  # random-crop augmentation: zero padding on each side (pixels); 0: off
    hflip: bool = False  # random horizontal flips
    # evaluation and selection
    select_metric: str = (
        "accuracy"  # validation metric that picks the epoch: accuracy | worst_class_accuracy | last
    )
    eval_batch_size: int = 1024  # images per evaluation step
    # run
    seed: int = 0  # weights, shuffling, augmentation, validation split (unless split_seed)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast (bf16 where supported, else fp16 + grad scaling); GPU only
    channels_last: bool = True  # channels-last memory format (about 2x faster small convs on CPU too)
    deterministic: bool = False  # ask torch for deterministic kernels (slower on GPU)
    log_every: int = 20  # steps between NaN checks and progress-bar updates


@dataclass(frozen=True)
class Preset:
    """A named study: a base config, the losses and seeds to run, and per-loss overrides
    (config fields or ``loss.<option>``, as in ``apply_overrides``)."""

    name: str
    description: str
    config: TrainConfig
    losses: tuple[str, ...]
    seeds: tuple[int, ...]
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config_for(self, loss: str, seed: int, **overrides: Any) -> TrainConfig:
        cfg = dataclasses.replace(self.config, study=self.name, loss=loss, seed=seed)
        return apply_overrides(cfg, {**self.per_loss.get(loss, {}), **overrides})


ALL_LOSSES = LOSSES
# LDAM as its authors run it: cosine head, logits scaled by s = 30 (on balanced data all margins = 0.5)
LDAM_COSINE = {"head": "cosine", "loss.s": 30.0}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="digits-smoke",
            description="scikit-learn digits (8x8), a tiny CNN, seconds on a CPU: tests and a fallback",
            config=TrainConfig(
                dataset="digits", model="small-cnn", width=8, hidden=32, epochs=8, batch_size=64,
                lr=0.05, weight_decay=5e-4, val_fraction=0.1, split_seed=0,
            ),
            losses=("ce", "mr2"),
            seeds=(0, 1),
        ),
        Preset(
            name="fmnist-smoke",
            description="Fashion-MNIST, small CNN, 20k images x 3 epochs: < 3 min on 2 cores, acc >= 0.80",
            config=TrainConfig(
                dataset="fashion-mnist", model="small-cnn", width=16, hidden=64, max_train_samples=20_000,
                epochs=3, batch_size=128, lr=0.05, weight_decay=5e-4, split_seed=0,
            ),
            losses=("ce",),
            seeds=(0,),
        ),
        Preset(
            name="fmnist-verify",
            description="the CPU verification study: 7 methods x 5 seeds, small CNN on Fashion-MNIST",
            config=TrainConfig(
                dataset="fashion-mnist", model="small-cnn", width=12, hidden=64, epochs=8, batch_size=128,
                lr=0.05, weight_decay=5e-4, crop_padding=2, hflip=True, split_seed=0,
            ),
            losses=ALL_LOSSES,
            seeds=(0, 1, 2, 3, 4),
            per_loss={"ldam": LDAM_COSINE},
        ),
        Preset(
            name="fmnist-gpu",
            description="ResNet-18 (CIFAR stem) on Fashion-MNIST for one GPU: AMP, channels-last, 30 epochs",
            config=TrainConfig(
                dataset="fashion-mnist", model="resnet18", epochs=30, batch_size=256, lr=0.1,
                weight_decay=5e-4, warmup_epochs=1.0, crop_padding=2, hflip=True, split_seed=0,
                eval_batch_size=2048,
            ),
            losses=("ce", "mr2", "mr2-logit", "mr2-rep", "focal", "ldam", "cdb"),
            seeds=(0, 1, 2),
            per_loss={"ldam": LDAM_COSINE},
        ),
    )
}  # fmt: skip


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise bad("preset", name, f"one of {sorted(PRESETS)}")
    return PRESETS[name]


def _parse_value(text: str, current: Any, name: str) -> Any:
    import ast

    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise bad(name, text, "true or false")
        return text.lower() in ("true", "1")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word is a string


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return ``cfg`` with fields replaced; keys ``loss.<opt>`` set ``loss_options[<opt>]``.

    String values (from the command line) are parsed: numbers, booleans, None, lists.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes: dict[str, Any] = {}
    loss_opts = dict(cfg.loss_options)
    for key, value in overrides.items():
        if key.startswith("loss."):
            opt = key[len("loss.") :]
            loss_opts[opt] = _parse_value(value, None, key) if isinstance(value, str) else value
        elif key in fields:
            cur = getattr(cfg, key)
            if isinstance(value, str) and not isinstance(cur, str):
                value = _parse_value(value, cur, key)
            changes[key] = value
        else:
            raise bad("override", key, f"a config field ({', '.join(sorted(fields))}) or loss.<option>")
    return dataclasses.replace(cfg, **changes, loss_options=loss_opts)


def validate_config(cfg: TrainConfig) -> None:
    """Check names and ranges before any data is loaded (bad input -> ValueError naming it)."""
    from mr2.losses import LOSS_NAMES

    if cfg.dataset not in mdata.DATASET_NAMES:
        raise bad("dataset", cfg.dataset, f"one of {list(mdata.DATASET_NAMES)}")
    if cfg.loss not in LOSS_NAMES:
        raise bad("loss", cfg.loss, f"one of {list(LOSS_NAMES)}")
    for name, allowed in (
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
        ("select_metric", SELECT_METRICS),
    ):
        if getattr(cfg, name) not in allowed:
            raise bad(name, getattr(cfg, name), f"one of {list(allowed)}")
    for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad(name, v, "a positive integer")
    if not (isinstance(cfg.seed, int) and cfg.seed >= 0):
        raise bad("seed", cfg.seed, "a non-negative integer")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise bad("lr", cfg.lr, "a finite learning rate > 0")
    if cfg.weight_decay < 0 or cfg.warmup_epochs < 0 or cfg.crop_padding < 0:
        raise bad("weight_decay/warmup_epochs/crop_padding", cfg, "non-negative values")
    if not isinstance(cfg.loss_options, dict):
        raise bad("loss_options", cfg.loss_options, "a dict of keyword options for make_loss")


# --------------------------------------------------------------------------------------- devices
@dataclass(frozen=True)
class _Dist:
    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(0, 1, 0)
    import torch.distributed as dist

    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and device_pref != "cpu"
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(pref: str, dist_info: _Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise bad("device", pref, "'cpu' or 'auto' (no CUDA device is available here)")
        if dist_info.world_size > 1:
            return torch.device("cuda", dist_info.local_rank)
    try:
        return torch.device(pref)
    except RuntimeError:
        raise bad("device", pref, "auto, cpu, cuda or cuda:N") from None


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ----------------------------------------------------------------------------------- evaluation
def _prepare_batch(
    x: torch.Tensor, data: mdata.ImageData, cfg: TrainConfig, channels_last: bool
) -> torch.Tensor:
    x = mdata.normalize(x, data.mean, data.std)
    if cfg.input_size is not None and cfg.input_size != x.shape[-1]:
        x = F.interpolate(x, size=(cfg.input_size, cfg.input_size), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def _predict(model, x, data, cfg, device, amp_dtype, channels_last, want_features=False):
    """Predicted classes (N,) and, optionally, features (N, d) float32, in evaluation mode."""
    was_training = model.training
    model.eval()
    preds, feats = [], []
    for idx in mdata.batch_indices(len(x), cfg.eval_batch_size, generator=None):
        xb = _prepare_batch(x[idx], data, cfg, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits, f = model(xb)
        preds.append(logits.float().argmax(1))
        if want_features:
            feats.append(f.float())
    model.train(was_training)
    return torch.cat(preds), (torch.cat(feats) if want_features else None)


@torch.no_grad()
def _predict_from_features(model, feats, cfg, device, amp_dtype):
    """Predicted classes (N,) from cached backbone features, head only, in evaluation mode."""
    was_training = model.training
    model.eval()
    preds = []
    for idx in mdata.batch_indices(len(feats), cfg.eval_batch_size, generator=None):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            preds.append(model.head(feats[idx]).float().argmax(1))
    model.train(was_training)
    return torch.cat(preds)


def _split_metrics(preds: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, Any]:
    pcs = per_class_accuracy(preds, targets, k)
    out = {"accuracy": float((preds == targets).double().mean()), "per_class_accuracy": pcs.tolist()}
    out.update(class_summary(pcs))
    return out


# ---------------------------------------------------------------------------------- run helpers
def run_dir_for(runs: str | os.PathLike, cfg: TrainConfig) -> Path:
    """``RUNS/<study>/<loss>/seed<k>``."""
    return Path(runs) / cfg.study / cfg.loss / f"seed{cfg.seed}"


def _config_record(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _incompatible(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    now = _config_record(cfg)
    keys = (set(saved) | set(now)) - RESUME_FREE_FIELDS
    return sorted(k for k in keys if saved.get(k) != now.get(k))


def _lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning rate at a global step: linear warm-up, then cosine to 0 or constant."""
    warm = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warm) / max(1.0, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    # independent streams per (seed, epoch, purpose): resuming at any epoch redraws the same batches
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _environment(device: torch.device, dist_info: _Dist) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "world_size": dist_info.world_size,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ------------------------------------------------------------------------------------ the run
def _diverged(cfg: TrainConfig, ckpt_path: Path, epoch: int, step: int, what: str) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint (after epoch {epoch}) is kept in {ckpt_path}"
        if epoch > 0
        else "no epoch had finished, so there is no checkpoint"
    )
    return TrainingDiverged(
        f"{what} in epoch {epoch + 1}, by step {step + 1} (loss {cfg.loss}, lr={cfg.lr}); training "
        f"stopped and {kept}. Lower lr or check the loss options {cfg.loss_options}."
    )


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
        ValueError: bad config, or ``run_dir`` holds a run of another config.
        TrainingDiverged: the loss became NaN/inf; the last good checkpoint stays in ``run_dir``.
    """
    validate_config(cfg)
    run_dir = Path(run_dir)
    cfg_path, ckpt_path, metrics_path, log_path = (
        run_dir / "config.json", run_dir / "checkpoint.pt", run_dir / "metrics.json", run_dir / "log.csv",
    )  # fmt: skip
    if overwrite:
        for p in (cfg_path, ckpt_path, metrics_path, log_path):
            p.unlink(missing_ok=True)
    if cfg_path.exists():
        saved = read_json(cfg_path).get("config", {})
        diff = _incompatible(saved, cfg)
        if diff:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(cfg, k, None)!r}" for k in diff[:6])
            raise ValueError(
                f"run_dir={str(run_dir)!r} holds a run with another config ({shown}); use another --out "
                "or --study, or pass --overwrite to discard it"
            )
        if metrics_path.exists():
            return read_json(metrics_path)
        if ckpt_path.exists() and not resume:
            raise ValueError(
                f"run_dir={str(run_dir)!r} holds an unfinished run (checkpoint.pt); pass --resume to "
                "continue it or --overwrite to start again"
            )

    dist_info = _init_distributed(cfg.device)
    device = _resolve_device(cfg.device, dist_info)
    amp_dtype = _amp_dtype(device, cfg.amp)
    channels_last = cfg.channels_last
    seed_everything(cfg.seed, deterministic=cfg.deterministic)

    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    data = mdata.load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, val_fraction=cfg.val_fraction, split_seed=split_seed,
        max_train_samples=cfg.max_train_samples, channels=cfg.image_channels, image_size=cfg.image_size,
    )  # fmt: skip
    k = data.num_classes
    side = cfg.input_size or data.image_size
    model = build_model(
        cfg.model, num_classes=k, in_channels=data.in_channels, image_size=side, width=cfg.width,
        hidden=cfg.hidden, pretrained=cfg.pretrained, freeze_backbone=cfg.freeze_backbone, head=cfg.head,
    ).to(device)  # fmt: skip
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    from mr2.losses import make_loss

    loss_fn = make_loss(cfg.loss, k, class_counts=data.class_counts(), **cfg.loss_options).to(device)
    optimizer = _make_optimizer(model.parameters(), cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    net = model
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    per_rank_batch = max(1, cfg.batch_size // dist_info.world_size)
    shard = -(-len(x_train) // dist_info.world_size)
    steps_per_epoch = -(-shard // per_rank_batch)
    cacheable = cfg.freeze_backbone and not (cfg.crop_padding or cfg.hflip) and dist_info.world_size == 1
    if feature_cache and not cacheable:
        raise ValueError(
            f"feature_cache=True needs freeze_backbone=True, no augmentation (crop_padding=0, hflip=False) "
            f"and one process; got freeze_backbone={cfg.freeze_backbone}, crop_padding={cfg.crop_padding}, "
            f"hflip={cfg.hflip}, world_size={dist_info.world_size}"
        )
    use_cache = cacheable if feature_cache is None else bool(feature_cache)

    start_epoch, log_rows, elapsed = 0, [], 0.0
    best = {"epoch": -1, "value": -math.inf, "state": None}
    if ckpt_path.exists() and resume:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{ckpt_path}: checkpoint format {ckpt.get('version')!r}; pass --overwrite")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loss_fn.load_state_dict(ckpt["loss"])
        scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"], device)
        start_epoch, log_rows, elapsed, best = ckpt["epoch"], ckpt["log"], ckpt["train_time_s"], ckpt["best"]
    elif dist_info.main:
        sizes = {"n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test)}
        record = {
            "config": _config_record(cfg),
            "code_version": code_version(),
            "environment": _environment(device, dist_info),
            "data": {"source": data.source, **sizes, "class_names": list(data.class_names)},
        }
        write_json(cfg_path, record)

    from tqdm.auto import tqdm

    show = progress and dist_info.main
    cache: dict[str, torch.Tensor] = {}
    if use_cache and start_epoch < cfg.epochs:
        t0 = time.perf_counter()
        # a frozen backbone is always in evaluation mode: these are the features the head sees in training
        for name, x in (("train", x_train), ("val", x_val)):
            _, cache[name] = _predict(
                model, x, data, cfg, device, amp_dtype, channels_last, want_features=True
            )
        elapsed += time.perf_counter() - t0  # the cache is part of the training time
    epochs_done_now = 0
    for epoch in range(start_epoch, cfg.epochs):
        if epoch_budget is not None and epochs_done_now >= epoch_budget:
            return None
        t0 = time.perf_counter()
        loss_fn.on_epoch_start(epoch)
        if cfg.difficulty_from_val and hasattr(loss_fn, "set_class_accuracy") and log_rows:
            loss_fn.set_class_accuracy([log_rows[-1][f"val_class{j}_accuracy"] for j in range(k)])
        model.train()
        batches = mdata.batch_indices(
            len(x_train), per_rank_batch, generator=_epoch_generator(cfg.seed, epoch, 0),
            rank=dist_info.rank, world_size=dist_info.world_size,
        )  # fmt: skip
        aug_gen = _epoch_generator(cfg.seed, epoch, 1 + dist_info.rank)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        checked_sum, n_correct, n_seen = 0.0, torch.zeros((), device=device, dtype=torch.long), 0
        bar = tqdm(
            batches, desc=f"{cfg.loss} s{cfg.seed} ep {epoch + 1}/{cfg.epochs}", disable=not show, leave=False
        )
        for step, idx in enumerate(bar):
            lr = _lr_at(epoch * steps_per_epoch + step, steps_per_epoch, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            yb = y_train[idx]
            if cache:  # frozen backbone: its features are fixed, only the head trains
                feats = cache["train"][idx]
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model.head(feats)
            else:
                xb = x_train[idx]
                if cfg.crop_padding or cfg.hflip:
                    xb = mdata.augment(xb, crop_padding=cfg.crop_padding, hflip=cfg.hflip, generator=aug_gen)
                xb = _prepare_batch(xb, data, cfg, channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits, feats = net(xb)
            try:
                loss = loss_fn(logits.float(), feats.float(), yb)
            except ValueError as exc:  # the loss refuses NaN/inf logits or features: the net diverged
                if bool(torch.isfinite(logits).all()) and bool(torch.isfinite(feats).all()):
                    raise
                raise _diverged(cfg, ckpt_path, epoch, step, f"the network output NaN/inf ({exc})") from None
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach()
            n_correct += (logits.detach().argmax(1) == yb).sum()
            n_seen += len(yb)
            if (step + 1) % cfg.log_every == 0 or step + 1 == len(batches):
                total_t = loss_sum.clone()
                if dist_info.world_size > 1:  # every rank sees a NaN on any rank, and stops with it
                    import torch.distributed as dist

                    dist.all_reduce(total_t)
                total = float(total_t)  # one device sync per log_every steps
                if not math.isfinite(total):
                    raise _diverged(cfg, ckpt_path, epoch, step, f"loss became {total}")
                if show:
                    bar.set_postfix(loss=f"{(total - checked_sum) / cfg.log_every:.4f}", lr=f"{lr:.3g}")
                checked_sum = total
        bar.close()

        if cache:
            preds = _predict_from_features(model, cache["val"], cfg, device, amp_dtype)
        else:
            preds, _ = _predict(model, x_val, data, cfg, device, amp_dtype, channels_last)
        val = _split_metrics(preds, y_val, k)
        elapsed += time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(loss_sum) / len(batches),
            "train_accuracy": float(n_correct) / n_seen,
            "val_accuracy": val["accuracy"],
            "val_worst_class_accuracy": val["worst_class_accuracy"],
            "val_class_accuracy_std": val["class_accuracy_std"],
            "time_s": elapsed,
            **{f"val_class{j}_accuracy": a for j, a in enumerate(val["per_class_accuracy"])},
        }
        for name, value in getattr(loss_fn, "last", {}).items():
            if torch.is_tensor(value) and value.numel() != 1:
                continue
            row[f"loss_{name}"] = float(value)
        log_rows.append(row)
        value = val[cfg.select_metric] if cfg.select_metric != "last" else epoch
        if value > best["value"] or cfg.select_metric == "last":
            best = {
                "epoch": epoch + 1,
                "value": value,
                "state": {n: t.detach().cpu().clone() for n, t in model.state_dict().items()},
            }
        if dist_info.main:
            state = {
                "version": CHECKPOINT_VERSION,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "loss": loss_fn.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(device),
                "log": log_rows,
                "train_time_s": elapsed,
                "best": best,
                "config": _config_record(cfg),
            }
            torch_save(ckpt_path, state)
            import pandas as pd

            write_csv(log_path, pd.DataFrame(log_rows))
        if show:
            tqdm.write(
                f"[{cfg.study}/{cfg.loss}/seed{cfg.seed}] epoch {epoch + 1}/{cfg.epochs}: "
                f"loss {row['train_loss']:.4f}, val acc {val['accuracy']:.4f}, "
                f"worst {val['worst_class_accuracy']:.4f}, {elapsed:.0f}s"
            )
        epochs_done_now += 1

    # the selected model: test numbers and the bound's a_k from its training features
    model.load_state_dict(best["state"])
    preds, _ = _predict(model, data.x_test.to(device), data, cfg, device, amp_dtype, channels_last)
    y_test = data.y_test.to(device)
    test = _split_metrics(preds, y_test, k)
    if cache:
        val_preds = _predict_from_features(model, cache["val"], cfg, device, amp_dtype)
        feats = cache["train"]
    else:
        val_preds, _ = _predict(model, x_val, data, cfg, device, amp_dtype, channels_last)
        _, feats = _predict(model, x_train, data, cfg, device, amp_dtype, channels_last, want_features=True)
    val = _split_metrics(val_preds, y_val, k)
    stats = class_feature_stats(feats, y_train, k)
    metrics = {
        **test,
        "class_spread": stats["spread"].tolist(),
        "class_mean_norm2": stats["mean_norm2"].tolist(),
        "class_within_spread": stats["within"].tolist(),
        "confusion_matrix": confusion_matrix(preds, y_test, k).cpu().tolist(),
        "val_accuracy": val["accuracy"],
        "val_per_class_accuracy": val["per_class_accuracy"],
        "selected_epoch": best["epoch"],
        "select_metric": cfg.select_metric,
        "dataset": cfg.dataset,
        "class_names": list(data.class_names),
        "loss": cfg.loss,
        "seed": cfg.seed,
        "study": cfg.study,
        "model": cfg.model,
        "epochs": cfg.epochs,
        "train_time_s": elapsed,
        "device": str(device),
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "feature_cache": bool(use_cache),
        "code_version": code_version(),
    }
    if dist_info.main:
        write_json(metrics_path, metrics)
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return metrics


def _run_one(cfg: TrainConfig, run_dir: str, resume: bool, overwrite: bool, progress: bool) -> dict[str, Any]:
    finished = (Path(run_dir) / "metrics.json").exists() and not overwrite
    head = {"loss": cfg.loss, "seed": cfg.seed, "run_dir": run_dir}
    try:
        metrics = train_run(cfg, run_dir, resume=resume, overwrite=overwrite, progress=progress)
    except TrainingDiverged as exc:
        return {**head, "status": "diverged", "error": str(exc)}
    return {**head, "status": "skipped" if finished else "done", **(metrics or {})}


def _worker_init(threads: int) -> None:
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
        overrides: config fields or ``loss.<option>`` (see ``apply_overrides``), for every run.
        study: the study folder name (default: the preset's name).
        resume, overwrite, progress: as in ``train_run``.
        jobs: runs trained at once, each in its own process (CPU studies: one per core).
        threads: torch threads per run (default: torch's own in-process; cores // jobs in workers).

    Returns:
        One record per run: ``loss, seed, run_dir, status`` (``done``, ``skipped`` or ``diverged``)
        and the metrics (or ``error``). A diverged run does not stop the others.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    losses = tuple(losses or p.losses)
    seeds = tuple(p.seeds if seeds is None else seeds)
    if not isinstance(jobs, int) or jobs < 1:
        raise bad("jobs", jobs, "a positive integer")
    configs = []
    # seed-major: a study stopped part-way has every method at the same seeds (paired comparisons)
    for seed in seeds:
        for loss in losses:
            cfg = p.config_for(loss, seed, **(overrides or {}))
            if study:
                cfg = dataclasses.replace(cfg, study=study)
            validate_config(cfg)  # every bad name is reported before the first run starts
            configs.append((cfg, str(run_dir_for(runs, cfg))))
    if jobs == 1:
        if threads:
            torch.set_num_threads(threads)
        return [_run_one(cfg, d, resume, overwrite, progress) for cfg, d in configs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    per_job = threads or max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(per_job,)) as pool:
        futures = [pool.submit(_run_one, cfg, d, resume, overwrite, False) for cfg, d in configs]
        records = []
        for fut, (cfg, _) in zip(futures, configs, strict=True):
            rec = fut.result()
            if progress:
                acc = rec.get("accuracy")
                shown = f"accuracy {acc:.4f}" if acc is not None else rec.get("error", "")
                print(f"[{cfg.study}] {cfg.loss} seed {cfg.seed}: {rec['status']} {shown}", flush=True)
            records.append(rec)
    return records
