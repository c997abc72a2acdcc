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

__all__ = ["Preset", "PRESETS", "get_preset", "ALL_LOSSES"]


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


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise bad("preset", name, f"one of {sorted(PRESETS)}")
    return PRESETS[name]
