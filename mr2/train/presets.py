"""Named studies: a base config, the losses and seeds to run, and per-loss overrides.

``mr2 train --list`` prints them; ``run_study`` runs one. A preset's runs land in
``RUNS/<preset name>/<loss>/seed<k>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common.checks import bad
from common.contracts import LOSSES
from mr2.train.config import TrainConfig, apply_overrides

__all__ = ["Preset", "PRESETS", "get_preset", "ALL_LOSSES", "MR2_SEPARATION", "LDAM_COSINE"]


@dataclass(frozen=True)
class Preset:
    """A named study: a base config, the methods and seeds to run, and per-method overrides
    (config fields or ``loss.<option>``, as in ``apply_overrides``).

    A method is a loss name (``"ce"``, ``"mr2"``) or a name of its own whose overrides say which loss
    it trains with (``"ce-drw": {"loss": "ce", "loss.drw_epoch": 24}``); its runs land in
    ``RUNS/<study>/<method>/seed<k>``. ``seeds_for`` gives a method more (or other) seeds than the
    preset's, e.g. the key comparison of a study.
    """

    name: str
    description: str
    config: TrainConfig
    losses: tuple[str, ...]  # the methods to run, in the report's order
    seeds: tuple[int, ...]
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds_for: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def config_for(self, method: str, seed: int, **overrides: Any) -> TrainConfig:
        options = {**self.per_loss.get(method, {}), **overrides}
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
# LDAM as its authors run it: cosine head, logits scaled by s = 30 (on balanced data all margins = 0.5)
LDAM_COSINE = {"head": "cosine", "loss.s": 30.0}
# MR2 with the separation statistic (spread over the squared distance to the nearest other class mean;
# a heuristic suggested by data, docs/losses.md), as a method of its own
MR2_SEPARATION = {"loss": "mr2", "loss.statistic": "separation"}
# fmnist-gpu: batch 512 at lr 0.2. The linear scaling rule (Goyal et al. 2017, "Accurate, large
# minibatch SGD"): lr proportional to the batch, from lr 0.1 at batch 256 (the usual CIFAR ResNet-18
# SGD recipe), with a linear warm-up (2 epochs) because a large step is unstable at the start.
GPU_BATCH = 512  # images per step
GPU_LR = 0.1 * GPU_BATCH / 256  # peak learning rate

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
            per_loss={"mr2-separation": MR2_SEPARATION},
        ),
    )
}  # fmt: skip


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise bad("preset", name, f"one of {sorted(PRESETS)}")
    return PRESETS[name]
