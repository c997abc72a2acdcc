"""The typed config of one training run, validated once when it is made (units in comments).

``TrainConfig`` checks every field in ``__post_init__``, so a bad value fails where it is written
(``--set lr=abc``, a preset, a notebook) with a ``ValueError`` naming the field, the value and what
was expected, before any data is loaded. ``apply_overrides`` turns ``--set KEY=VALUE`` strings into a
new, validated config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mr2.data.sources import DATASET_NAMES
from mr2.data.splits import TRAIN_SUBSETS
from mr2.models import HEADS
from mr2_core.checks import bad, check_in, check_scalar
from mr2_core.contracts import LOSSES, SELECTION_RULES

__all__ = [
    "TrainConfig",
    "apply_overrides",
    "study_overrides",
    "parse_text",
    "validate_config",
    "LIMITS",
    "STUDY_KEYS",
    "OPTIMIZERS",
    "SCHEDULES",
    "SELECT_METRICS",
    "TRAIN_SUBSETS",
    "RESUME_FREE_FIELDS",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant", "step")
SELECT_METRICS = SELECTION_RULES  # best overall val accuracy, best worst-class val accuracy, last epoch
_SAFE_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]+")
# config fields that may differ when a run is resumed: they do not change the numbers
# (compile: how the steps run, like device; a run recorded before the field existed still matches)
RESUME_FREE_FIELDS = frozenset({"data_dir", "log_every", "device", "compile"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run. Units in comments.

    Frozen: it is validated once, when it is made (``dataclasses.replace`` makes a new one)."""

    study: str = "custom"  # name of the study folder under RUNS/
    method: str | None = None  # the run's folder and report name (e.g. "ce-drw"); None: the loss name
    # data
    dataset: str = "fashion-mnist"  # one of mr2.data.DATASET_NAMES
    data_dir: str | None = None  # looked at first (see mr2.data); required for "folder"
    val_fraction: float = 0.1  # of each class's training images, held out for model selection
    split_seed: int | None = None  # seed of the validation split; None: the run's seed
    max_train_samples: int | None = None  # images kept for training (stratified); None: all
    train_subset: str = (
        "all"  # all | first-half | second-half: disjoint stratified halves of the training split
    )
    imbalance_ratio: float | None = (
        None  # long-tailed training split: n_k = n_max r^(-k/(K-1)); None: as stored
    )
    image_channels: int = 3  # "folder" only: 1 (grey) or 3 (RGB)
    image_size: int | None = None  # "folder" only: resize to this side (pixels)
    input_size: int | None = None  # resize batches to this side (pixels) before the model; None: as stored
    # model
    model: str = "small-cnn"  # small-cnn | resnet18 | torchvision:<arch> | timm:<arch>
    width: int | None = None  # channels of the first stage; None: the model's default (32 / 64)
    hidden: int = 128  # small-cnn feature size (dimensions)
    pretrained: bool = False  # torchvision/timm weights (need a cache or a network)
    freeze_backbone: bool = False  # linear probe: train the head on fixed features
    head: str = "linear"  # linear | cosine (LDAM's: pair it with loss.s=30) | normalized (released MR2 code)
    init_checkpoint: str | None = None  # backbone weights to start from: a run's model.pt or checkpoint.pt
    init_head: bool | None = None  # also start the head from init_checkpoint (None, false: a fresh head)
    save_model: bool = False  # write the selected model's weights to RUN/model.pt (for init_checkpoint)
    # loss
    loss: str = "ce"  # one of mr2.losses.LOSS_NAMES
    loss_options: dict[str, Any] = field(default_factory=dict)  # keyword options of make_loss
    difficulty_from_val: bool = True  # cdb: class difficulty from the validation split (the authors' way)
    # optimisation
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # images per step, summed over all ranks
    optimizer: str = "sgd"  # sgd (Nesterov momentum unless nesterov=false) | adamw
    nesterov: bool | None = None  # SGD: Nesterov momentum; None: on when momentum > 0 (the default)
    lr: float = 0.05  # peak learning rate (per step, not scaled by batch size)
    momentum: float = 0.9  # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4  # L2 coefficient (decoupled for AdamW)
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr (epochs, fractional allowed)
    schedule: str = "cosine"  # after warm-up: cosine to 0 | constant | step (lr_steps)
    # schedule="step": [[fraction of training, multiplier of lr], ...] in increasing fraction; from
    # that fraction of the steps on the lr is lr * multiplier (LDAM-DRW: [[0.8, 0.01], [0.9, 1e-4]])
    lr_steps: list | None = None
    crop_padding: int = 0  # random-crop augmentation: zero padding on each side (pixels); 0: off
    hflip: bool = False  # random horizontal flips
    # evaluation and selection
    select_metric: str = (
        "accuracy"  # validation metric that picks the epoch: accuracy | worst_class_accuracy | last
    )
    eval_batch_size: int = 1024  # images per evaluation step
    merge_alpha: float | None = None  # evaluate the WiSE-FT merge (1 - a) w_init + a w_trained; None: off
    # run
    seed: int = 0  # weights, shuffling, augmentation, validation split (unless split_seed)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast (bf16 where supported, else fp16 + grad scaling); GPU only
    channels_last: bool = True  # channels-last memory format (about 2x faster small convs on CPU too)
    deterministic: bool = False  # ask torch for deterministic kernels (slower on GPU)
    # batch norm over the global batch under DDP; None: on when the model has batch norm and a rank gets
    # < 64 images per step (config.json records the value used)
    sync_bn: bool | None = None
    compile: bool = False  # torch.compile the network for the training steps (GPU; minutes to compile)
    log_every: int = 20  # steps between NaN checks and progress-bar updates

    def __post_init__(self) -> None:
        validate_config(self)

    @property
    def run_name(self) -> str:
        """The run's folder and report name: ``method``, or the loss name."""
        return self.method or self.loss


# Upper bounds (finding 10 of the reliability review): generous for this toolkit's datasets and models,
# but below what overflows a float32 step (lr, weight_decay) or asks the allocator for terabytes (a
# 1e10-unit layer, a 2000-pixel input). Each is (low, high, closed) for ``check_scalar``.
LIMITS: dict[str, tuple[float | None, float | None, str]] = {
    "epochs": (1, 100_000, "both"),  # passes over the training split
    "batch_size": (1, 1 << 20, "both"),  # images per step
    "eval_batch_size": (1, 1 << 20, "both"),  # images per evaluation step
    "log_every": (1, 10**9, "both"),  # steps
    "hidden": (1, 65_536, "both"),  # small-cnn feature dimensions
    "width": (1, 1024, "both"),  # channels of the first stage
    "seed": (0, 2**32 - 1, "both"),  # NumPy's and torch's seed range, with room for SeedSequence streams
    "split_seed": (0, 2**32 - 1, "both"),
    "crop_padding": (0, 256, "both"),  # pixels on each side
    "max_train_samples": (1, 10**9, "both"),  # images
    "image_size": (1, 512, "both"),  # pixels per side ("folder" datasets)
    "input_size": (1, 512, "both"),  # pixels per side: memory grows with batch_size * input_size^2
    "image_channels": (1, 3, "both"),
    "lr": (0.0, 1e3, "right"),  # (0, 1000]: 1e39 overflows float32
    "momentum": (0.0, 1.0, "left"),  # [0, 1)
    "weight_decay": (0.0, 10.0, "both"),  # L2 coefficient
    "warmup_epochs": (0.0, 100_000.0, "both"),  # epochs
    "val_fraction": (0.0, 1.0, "neither"),  # (0, 1): model selection needs a validation split
    "imbalance_ratio": (1.0, 1e6, "both"),  # n_max / n_min
    "merge_alpha": (0.0, 1.0, "both"),
}
_REALS = ("lr", "momentum", "weight_decay", "warmup_epochs", "val_fraction", "imbalance_ratio", "merge_alpha")
_FLAGS = ("pretrained", "freeze_backbone", "difficulty_from_val", "hflip", "amp", "channels_last",
          "deterministic", "save_model", "compile")  # fmt: skip


def validate_config(cfg: TrainConfig) -> None:
    """Check every field's type and range (bad input -> ValueError naming the field and the fix)."""
    for name in ("study", "dataset", "model", "head", "loss", "optimizer", "schedule", "select_metric"):
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            raise bad(name, getattr(cfg, name), "a non-empty string")
    for name in ("study", "method"):  # folder names: nothing that walks out of RUNS/
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, str) or not _SAFE_NAME.fullmatch(value)):
            raise bad(name, value, "a folder name of letters, digits, '.', '_' and '-' (no '/' or '..')")
    check_in("train_subset", cfg.train_subset, TRAIN_SUBSETS)
    check_in("head", cfg.head, HEADS)
    if cfg.init_checkpoint is not None and not isinstance(cfg.init_checkpoint, str):
        raise bad("init_checkpoint", cfg.init_checkpoint, "a path to a model.pt or checkpoint.pt, or None")
    check_in("dataset", cfg.dataset, DATASET_NAMES)
    if cfg.loss not in LOSSES:
        raise bad("loss", cfg.loss, f"one of {list(LOSSES)}")
    check_in("optimizer", cfg.optimizer, OPTIMIZERS)
    check_in("schedule", cfg.schedule, SCHEDULES)
    check_in("select_metric", cfg.select_metric, SELECT_METRICS)
    optional = {f.name for f in dataclasses.fields(cfg) if "None" in str(f.type)}
    for name, (low, high, closed) in LIMITS.items():
        value = getattr(cfg, name)
        if value is None and name in optional:
            continue
        check_scalar(value, name, "real" if name in _REALS else "int", low=low, high=high, closed=closed)
    if cfg.image_channels not in (1, 3):
        raise bad("image_channels", cfg.image_channels, "1 (grey) or 3 (RGB)")
    for name in _FLAGS:
        check_scalar(getattr(cfg, name), name, "bool")
    if cfg.init_head is not None and not isinstance(cfg.init_head, bool):
        raise bad("init_head", cfg.init_head, "true, false or none (a fresh head)")
    if cfg.init_head and cfg.init_checkpoint is None:
        raise bad("init_head", cfg.init_head, "false or none when init_checkpoint is None")
    if cfg.nesterov is not None and not isinstance(cfg.nesterov, bool):
        raise bad("nesterov", cfg.nesterov, "true, false or none (Nesterov when momentum > 0)")
    _check_lr_steps(cfg)
    if cfg.sync_bn is not None and not isinstance(cfg.sync_bn, bool):
        raise bad("sync_bn", cfg.sync_bn, "true, false or none (on under DDP for small per-rank batches)")
    if not isinstance(cfg.loss_options, dict):
        raise bad("loss_options", cfg.loss_options, "a dict of keyword options for make_loss")
    from mr2.losses import loss_option_types

    accepted = loss_option_types(cfg.loss)
    for opt, value in cfg.loss_options.items():
        if opt not in accepted:
            raise bad(f"loss.{opt}", value, f"an option of loss {cfg.loss!r}: one of {', '.join(accepted)}")
    if cfg.data_dir is not None and not isinstance(cfg.data_dir, str):
        raise bad("data_dir", cfg.data_dir, "a folder path (string) or None")
    if not isinstance(cfg.device, str):
        raise bad("device", cfg.device, "auto, cpu, cuda or cuda:N")


def _check_lr_steps(cfg: TrainConfig) -> None:
    expected = "a list of [fraction in (0, 1), multiplier > 0] pairs in increasing fraction"
    if cfg.schedule != "step":
        if cfg.lr_steps is not None:
            raise bad("lr_steps", cfg.lr_steps, "None unless schedule='step'")
        return
    steps = cfg.lr_steps
    if not isinstance(steps, (list, tuple)) or not steps:
        raise bad("lr_steps", steps, expected)
    last = 0.0
    for pair in steps:
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        if not ok or not (last < pair[0] < 1.0) or not (0.0 < pair[1] < math.inf):
            raise bad("lr_steps", steps, expected)
        last = pair[0]


# ------------------------------------------------------------------------------ --set KEY=VALUE
_ATOM_WORDS = {"bool": "true or false", "int": "an integer", "float": "a finite real number",
               "str": "a string", "None": "none", "list": "a JSON list"}  # fmt: skip
# what a study sets per run: an override of these would clash with it (use the flag instead)
STUDY_KEYS = {"seed": "--seeds", "method": "--loss", "study": "--study"}


def parse_text(name: str, text: str, annotation: str) -> Any:
    """``text`` (one ``--set`` value) parsed once against a declared type, the annotation's text
    (``"int | None"``, ``"float | str"``, ``"bool"``): ``none``/``null`` for None, ``true/false/1/0``
    (any case) for a bool, an integer for an int, a finite number for a float, else the text itself
    where a string is allowed. Anything else: a ValueError naming ``name``, the text and the type."""
    atoms = [a.strip() for a in annotation.split("|")]
    word = text.strip()
    if "None" in atoms and word.lower() in ("none", "null"):
        return None
    for atom in atoms:
        if atom == "bool" and word.lower() in ("true", "false", "1", "0"):
            return word.lower() in ("true", "1")
        if atom == "int":
            with contextlib.suppress(ValueError):
                return int(word)
        if atom == "float":
            with contextlib.suppress(ValueError):
                value = float(word)
                if math.isfinite(value):
                    return value
        if atom == "list":  # JSON, e.g. lr_steps=[[0.8, 0.01], [0.9, 1e-4]]: data, never code
            with contextlib.suppress(ValueError):
                value = json.loads(word)
                if isinstance(value, list):
                    return value
        if atom in ("str", "Any"):
            return text
    expected = [_ATOM_WORDS.get(a, a) for a in atoms]
    if atoms == ["bool"]:
        expected = ["true or false (also 1 or 0)"]
    raise bad(name, text, " or ".join(expected))


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Return ``cfg`` with fields replaced; keys ``loss.<opt>`` set ``loss_options[<opt>]``.

    A string value (``--set KEY=VALUE`` text) is parsed once against the field's declared type, or
    the option's as the loss declares it (``mr2.losses.loss_option_types``; ``parse_text``); any
    other value is taken as it is. The result is validated like every ``TrainConfig``.
    """
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key.startswith("loss.") or key == "loss_options":
            continue
        if key not in fields:
            raise bad("override", key, f"a config field ({', '.join(sorted(fields))}) or loss.<option>")
        changes[key] = parse_text(key, value, fields[key]) if isinstance(value, str) else value
    loss = changes.get("loss", cfg.loss)
    loss_opts = dict(cfg.loss_options)
    if "loss_options" in overrides:
        value = overrides["loss_options"]
        if not isinstance(value, dict):
            raise bad(
                "loss_options", value, "one --set loss.<option>=VALUE per option (e.g. loss.lambda_rep=0.2)"
            )
        loss_opts.update(value)
    from mr2.losses import loss_option_types

    for key, value in overrides.items():
        if key.startswith("loss."):
            opt = key[len("loss.") :]
            if isinstance(value, str):
                types = loss_option_types(loss) if loss in LOSSES else {}
                if opt not in types:
                    raise bad(key, value, f"an option of loss {loss!r}: one of {', '.join(types)}")
                value = parse_text(key, value, types[opt])
            loss_opts[opt] = value
    return dataclasses.replace(cfg, **changes, loss_options=loss_opts)


def study_overrides(overrides: dict[str, Any], methods: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each method's own overrides, from a study's: config fields go to every method;
    ``loss.<opt>`` to every method whose loss takes ``<opt>`` (a ValueError when none does);
    ``<method>.<opt>`` to that method only (it wins over ``loss.<opt>``).

    Args:
        overrides: ``--set`` keys and values (text or typed).
        methods: method name -> the loss it trains with, for the study's methods.
    """
    from mr2.losses import loss_option_types

    for key, value in overrides.items():
        if key in STUDY_KEYS:
            raise bad(key, value, f"no --set {key}: pass {STUDY_KEYS[key]} (the study sets it for each run)")
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    addressed: list[tuple[str, str, Any]] = []
    for key, value in overrides.items():
        head, dot, opt = key.partition(".")
        if not dot:
            for m in methods:
                out[m][key] = value
        elif head == "loss":
            takers = [m for m, loss in methods.items() if loss in LOSSES and opt in loss_option_types(loss)]
            if not takers:
                losses = ", ".join(sorted(set(methods.values())))
                raise bad(
                    key, value, f"an option of one of this study's losses ({losses}); none takes {opt!r}"
                )
            for m in takers:
                out[m][key] = value
        elif head in methods:
            addressed.append((head, opt, value))
        else:
            raise bad(
                "override", key,
                f"a config field, loss.<option>, or <method>.<option> for a method of this study "
                f"({', '.join(methods)})",
            )  # fmt: skip
    for method, opt, value in addressed:  # after loss.<opt>: the method's own value wins
        out[method][f"loss.{opt}"] = value
    return out
