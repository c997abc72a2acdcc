"""Named studies: a base config, the losses and seeds to run, and per-loss overrides.

``mr2 train --list`` prints them; ``run_study`` runs one. A preset's runs land in
``RUNS/<preset name>/<loss>/seed<k>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mr2.train.config import TrainConfig, apply_overrides
from mr2_core.checks import bad
from mr2_core.contracts import LOSSES, METHODS, method_overrides

__all__ = [
    "Preset",
    "PRESETS",
    "get_preset",
    "ALL_LOSSES",
    "MR2_SEPARATION",
    "LDAM_COSINE",
    "PROBE_METHODS",
    "BACKBONE_SEEDS",
]


@dataclass(frozen=True)
class Preset:
    """A named study: a base config, the methods and seeds to run, and per-method overrides
    (config fields or ``loss.<option>``, as in ``apply_overrides``).

    A method is a name of the registry ``mr2_core.contracts.METHODS``: the loss it trains with and
    its overrides (``"ce-drw"``: loss ``"ce"``, ``loss.drw_epoch=24``) come from there, and a probe
    preset (``freeze_backbone``) trains MR2's methods with the logit margins alone (``"mr2-logit"``:
    the representation term has no gradient on frozen features). ``per_loss`` adds a study's own
    overrides on top. Runs land in ``RUNS/<study>/<method>/seed<k>``. ``seeds_for`` gives a method
    more (or other) seeds than the preset's, e.g. the key comparison of a study.

    The placebo ``statistic="shuffled"`` draws its derangement from the run's seed (unless the
    overrides set ``loss.shuffle_seed``), so a mean over n seeds averages over n permutations.
    """

    name: str
    description: str
    config: TrainConfig
    losses: tuple[str, ...]  # the methods to run, in the report's order
    seeds: tuple[int, ...]
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds_for: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def config_for(self, method: str, seed: int, **overrides: Any) -> TrainConfig:
        base = method_overrides(method, probe=self.config.freeze_backbone) if method in METHODS else {}
        options = {**base, **self.per_loss.get(method, {}), **overrides}
        if options.get("loss.statistic") == "shuffled" and "loss.shuffle_seed" not in options:
            options["loss.shuffle_seed"] = seed  # one permutation per seed (class docstring)
        loss = options.pop("loss", method)
        if loss not in LOSSES:
            raise bad(
                f"{self.name}: method",
                method,
                f"a loss name ({', '.join(LOSSES)}) or a method whose overrides name its loss",
            )
        cfg = dataclasses.replace(
            self.config, study=self.name, loss=loss, method=None if method == loss else method, seed=seed
        )
        return apply_overrides(cfg, options)

    def method_seeds(self, method: str) -> tuple[int, ...]:
        return self.seeds_for.get(method, self.seeds)


ALL_LOSSES = LOSSES
# LDAM as its authors run it: cosine head (NormedLinear, class weights at norm 1), logits scaled by
# s = 30; on balanced data all margins = 0.5 (the registry's ldam-drw carries the same options)
LDAM_COSINE = {"head": "cosine", "loss.s": 30.0}
# scikit-learn digits (8x8) with a tiny CNN: seconds on a CPU, for tests and fallbacks
DIGITS = TrainConfig(
    dataset="digits", model="small-cnn", width=8, hidden=32, epochs=8, batch_size=64, lr=0.05,
    weight_decay=5e-4, val_fraction=0.1, split_seed=0,
)  # fmt: skip
# The verification protocol's base: the small CNN on 20k Fashion-MNIST images (stratified), 30 epochs,
# a 2-epoch linear warm-up for every method (the LDAM authors warm up; CE is no worse with it),
# crop and flip, deterministic kernels.
PROTOCOL = TrainConfig(
    dataset="fashion-mnist", model="small-cnn", width=12, hidden=64, max_train_samples=20_000, epochs=30,
    batch_size=128, lr=0.05, weight_decay=5e-4, warmup_epochs=2.0, crop_padding=2, hflip=True,
    split_seed=0, deterministic=True,
)  # fmt: skip
# 12 paired seeds: a paired SD of 1.1 points on the worst class makes a 1-point effect detectable at
# 80% power (mr2_core.stats.seeds_for_effect(1.1, 1.0) = 12)
KEY_SEEDS = tuple(range(12))
# the released MR2 code's configuration in fmnist-protocol: mr2-official (L5 statistics, 1000 statistic
# slots, EMA 0.999) with its head (a linear layer on normalised features), the same head with CE, and
# the released CIFAR script's configuration (registry: mr2-official-cifar). The old
# mr2-official-wise (a merge with RANDOM initial weights, not WiSE-FT) is no longer trained; its
# results stay readable (registered, labelled for what it is).
RELEASED_CODE = {"mr2-official": {"head": "normalized"}}
# the backbone of fmnist-pretrain's run (resolved under the runs folder, trained first when missing)
PRETRAINED = "@fmnist-pretrain/ce/seed0"
# backbones over which the probe studies are nested: fmnist-probe-b{b} starts from fmnist-pretrain's seed b
BACKBONE_SEEDS = (0, 1, 2, 3, 4)
# linear probes: each statistic and exponent against CE (trained as mr2-logit: Preset.config_for);
# exponent 1/3 is the theory's (sum budget), 1/2 the minimax rule's. mr2-additive: the margin form the
# bound is derived for (a ramp loss of the margin: subtract gamma_y from the target logit), beside
# MR2's temperature form (logits / gamma_y), which inverts what a larger margin does to a class's
# gradient.
PROBE_METHODS = {
    name: method_overrides(name, probe=True)
    for name in ("ce", "mr2", "mr2-centred", "mr2-spread", "mr2-separation", "mr2-shuffled", "mr2-e12",
                 "mr2-separation-e12", "mr2-additive", "mr2-separation-additive")
}  # fmt: skip
# the probe studies over backbones (issue 19/20.7): the published rule, its additive form, the
# separation heuristic in both forms, the oracle share, and the placebo
BACKBONE_PROBE_METHODS = ("ce", "mr2", "mr2-additive", "mr2-separation", "mr2-separation-additive",
                          "mr2-oracle-additive", "mr2-shuffled")  # fmt: skip
# MR2 with the separation statistic (spread over the squared distance to the nearest other class mean;
# a heuristic suggested by data, docs/losses.md), as a method of its own
MR2_SEPARATION = method_overrides("mr2-separation")
# fmnist-gpu: batch 512 at lr 0.2. The linear scaling rule (Goyal et al. 2017, "Accurate, large
# minibatch SGD"): lr proportional to the batch, from lr 0.1 at batch 256 (the usual CIFAR ResNet-18
# SGD recipe), with a linear warm-up (2 epochs) because a large step is unstable at the start.
GPU_BATCH = 512  # images per step
# linear probes on a frozen fmnist-pretrain backbone: second half of the training split, no augmentation
PROBE_CONFIG = dataclasses.replace(
    PROTOCOL, max_train_samples=None, train_subset="second-half", freeze_backbone=True, crop_padding=0,
    hflip=False, epochs=30, warmup_epochs=0.0, init_checkpoint=PRETRAINED,
)  # fmt: skip
# fine-tuning from a fmnist-pretrain backbone on the second half (its WiSE-FT merge: with that backbone)
FINETUNE_CONFIG = dataclasses.replace(
    PROTOCOL, max_train_samples=None, train_subset="second-half", epochs=10, lr=0.01, warmup_epochs=1.0,
    init_checkpoint=PRETRAINED,
)  # fmt: skip
# fmnist-lt100's added methods: the additive margin rules, LDAM-DRW with its authors' optimiser, and the
# global-average-pooled CNN (does CE's strength come from the flatten + FC layer's spatial layout?)
LT_EXTRA = ("mr2-oracle-additive", "mr2-separation-additive", "mr2-additive", "ldam-drw-authors", "ce-gap",
            "ldam-drw-gap")  # fmt: skip
LT_EXTRA_TEXT = (
    "; MR2's additive rules (a_k, separation, oracle share), LDAM-DRW with its authors' optimiser, and "
    "CE and LDAM-DRW on a global-average-pooled CNN"
)
GPU_LR = 0.1 * GPU_BATCH / 256  # peak learning rate

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="digits-smoke",
            description="scikit-learn digits (8x8), a tiny CNN, seconds on a CPU: tests and a fallback",
            config=DIGITS,
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
            description=(
                "an earlier 8-epoch protocol (no warm-up, LDAM's head then Kaiming-initialised), "
                "kept to compare; fmnist-protocol replaces it"
            ),
            config=TrainConfig(
                dataset="fashion-mnist", model="small-cnn", width=12, hidden=64, epochs=8, batch_size=128,
                lr=0.05, weight_decay=5e-4, crop_padding=2, hflip=True, split_seed=0,
            ),
            losses=("ce", "focal", "ldam", "cdb", "mr2", "mr2-logit", "mr2-rep"),
            seeds=(0, 1, 2, 3, 4),
            per_loss={"ldam": LDAM_COSINE},
        ),
        Preset(
            name="fmnist-protocol",
            description=(
                "the verification study: baselines as their authors run them (LDAM's head init, warm-up "
                "for every method), the released MR2 code's configuration, 30 epochs on 20k images; "
                "12 seeds for CE and MR2 (the key comparison), 4 for the rest; ~95 min on 2 cores"
            ),
            config=PROTOCOL,
            losses=("ce", "mr2", "focal", "ldam", "cdb", "mr2-centred", "mr2-separation", "ce-normhead",
                    "mr2-official", "mr2-official-cifar", "mr2-additive", "mr2-separation-additive",
                    "mr2-oracle-additive"),
            seeds=(0, 1, 2, 3),
            per_loss={"ldam": LDAM_COSINE, **RELEASED_CODE},
            seeds_for={m: KEY_SEEDS for m in ("ce", "mr2", "mr2-additive", "mr2-separation-additive",
                                               "mr2-oracle-additive")},
        ),
        Preset(
            name="fmnist-length",
            description=(
                "training length: CE, MR2, LDAM, CDB at 10 and 20 epochs (CE, MR2 also 40), seeds 0-1, "
                "else as fmnist-protocol (its 30-epoch runs complete the ladder); ~25 min on 2 cores"
            ),
            config=PROTOCOL,
            losses=tuple(f"{m}-e{e}" for e in (10, 20) for m in ("ce", "mr2", "ldam", "cdb"))
            + ("ce-e40", "mr2-e40"),
            seeds=(0, 1),
        ),
        *(
            Preset(
                name=f"fmnist-lt{ratio}",
                description=(
                    f"positive control: long-tailed Fashion-MNIST (n_k = n_max {ratio}^(-k/9), class 0 "
                    "largest; validation and test balanced), CE, CE-DRW, LDAM-DRW as its authors run it, "
                    f"focal, CDB, MR2{extra_text}; {len(seeds)} seeds"
                ),
                config=dataclasses.replace(PROTOCOL, max_train_samples=None, imbalance_ratio=float(ratio)),
                losses=("ce", "ce-drw", "ldam-drw", "focal", "cdb", "mr2", *extra),
                seeds=seeds,
            )
            for ratio, seeds, extra, extra_text in (
                (10, (0, 1, 2), (), ""),
                (100, (0, 1, 2, 3, 4), LT_EXTRA, LT_EXTRA_TEXT),
            )
        ),
        Preset(
            name="fmnist-pretrain",
            description=(
                "a shared backbone: CE on the first half of the training split, 30 epochs, weights saved "
                "(model.pt) for fmnist-probe and fmnist-finetune"
            ),
            config=dataclasses.replace(
                PROTOCOL, max_train_samples=None, train_subset="first-half", save_model=True
            ),
            losses=("ce",),
            seeds=BACKBONE_SEEDS,
        ),
        Preset(
            name="fmnist-probe",
            description=(
                "linear probes on the frozen fmnist-pretrain backbone (second half of the training split, "
                "features cached): each margin statistic and exponent against CE, 24 paired seeds"
            ),
            config=PROBE_CONFIG,
            losses=tuple(PROBE_METHODS),
            seeds=tuple(range(24)),
        ),
        *(
            Preset(
                name=f"fmnist-probe-b{b}",
                description=(
                    f"linear probes on the frozen fmnist-pretrain backbone of seed {b} (one of "
                    f"{len(BACKBONE_SEEDS)} backbones: the unit of the over-backbones analysis), as "
                    "fmnist-probe: the published rule, its additive form, the separation heuristic, the "
                    "oracle share and the placebo against CE; 8 probe seeds"
                ),
                config=dataclasses.replace(PROBE_CONFIG, init_checkpoint=f"@fmnist-pretrain/ce/seed{b}"),
                losses=BACKBONE_PROBE_METHODS,
                seeds=tuple(range(8)),
            )
            for b in BACKBONE_SEEDS
        ),
        Preset(
            name="digits-pretrain",
            description="digits-smoke's CNN on the first half of digits' training split, weights saved",
            config=dataclasses.replace(DIGITS, train_subset="first-half", save_model=True),
            losses=("ce",),
            seeds=(0,),
        ),
        Preset(
            name="digits-probe",
            description=(
                "fmnist-probe in seconds: linear probes of every statistic on the frozen digits-pretrain "
                "backbone (second half of digits' training split); for tests and quick figures"
            ),
            config=dataclasses.replace(
                DIGITS, train_subset="second-half", freeze_backbone=True, epochs=10,
                init_checkpoint="@digits-pretrain/ce/seed0",
            ),
            losses=tuple(PROBE_METHODS),
            seeds=(0, 1, 2),
        ),
        Preset(
            name="fmnist-finetune",
            description=(
                "fine-tuning from the shared fmnist-pretrain backbone on the second half (10 epochs), "
                "with the WiSE-FT merge of the released code; from-scratch runs on the same half for the "
                "paired variance; 6 seeds"
            ),
            config=FINETUNE_CONFIG,
            losses=("ce", "mr2", "mr2-wise", "ce-scratch", "mr2-scratch"),
            seeds=tuple(range(6)),
        ),
        *(
            Preset(
                name=f"fmnist-finetune-b{b}",
                description=(
                    f"fmnist-finetune from the whole fmnist-pretrain model of seed {b} (one of "
                    f"{len(BACKBONE_SEEDS)}; backbone AND its trained head, init_head): CE, MR2, and MR2 + "
                    "WiSE-FT, which then merges with a trained model as WiSE-FT does; 4 seeds"
                ),
                config=dataclasses.replace(
                    FINETUNE_CONFIG, init_checkpoint=f"@fmnist-pretrain/ce/seed{b}", init_head=True
                ),
                losses=("ce", "mr2", "mr2-wise"),
                seeds=(0, 1, 2, 3),
            )
            for b in BACKBONE_SEEDS
        ),
        Preset(
            name="fmnist-resnet-cpu",
            description=(
                "ResNet-18 (CIFAR stem) on CPU, reduced and stated: width 16, 5k training images, "
                "10 epochs; CE, MR2, MR2 with the separation statistic; 3 seeds"
            ),
            config=dataclasses.replace(
                PROTOCOL, model="resnet18", width=16, max_train_samples=5000, epochs=10, warmup_epochs=1.0,
                lr=0.1, eval_batch_size=512,
            ),
            losses=("ce", "mr2", "mr2-separation"),
            seeds=(0, 1, 2),
        ),
        Preset(
            name="fmnist-gpu",
            description="ResNet-18 (CIFAR stem) on Fashion-MNIST for one GPU: CE, MR2 and MR2 with the "
            "separation statistic, 3 seeds x 30 epochs, batch 512, bf16, channels-last "
            "(target: 8 min on an H200)",
            config=TrainConfig(
                dataset="fashion-mnist", model="resnet18", epochs=30, batch_size=GPU_BATCH,
                lr=GPU_LR, weight_decay=5e-4, warmup_epochs=2.0, crop_padding=2, hflip=True, split_seed=0,
                eval_batch_size=4096,
            ),
            losses=("ce", "mr2", "mr2-separation"),
            seeds=(0, 1, 2),
        ),
    )
}  # fmt: skip


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise bad("preset", name, f"one of {sorted(PRESETS)}")
    return PRESETS[name]
