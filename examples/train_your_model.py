"""Example 5: your own torch Dataset and nn.Module, trained by the toolkit (`mr2.train_model`).

`train_model(model, train, val, test, loss=...)` trains any map-style Dataset of (image_tensor, label)
with any of the toolkit's losses (mr2.LOSS_NAMES), selects the model on the validation split (best
accuracy, best worst-class accuracy, last epoch) and writes runs/<study>/<method>/seed<k>/ with
config.json, log.csv and metrics.json, as `mr2 train` does, so `mr2 report` compares the methods.
The model returns (logits, features): `mr2.models.Classifier(backbone, feature_dim, num_classes)`
wraps any backbone that maps a batch to (B, feature_dim) features.

    python examples/train_your_model.py --out results/example-own-model   # about a minute of CPU
    mr2 report results/example-own-model/own-model
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

import mr2
from mr2.models import Classifier
from mr2_cli.cli import main as mr2_cli

STUDY = "own-model"


class DigitImages(Dataset):
    """scikit-learn's digits as 1x8x8 float images in [0, 1]; ``targets`` lets the trainer count the
    classes without reading every image (torchvision datasets have it too)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.as_tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        self.targets = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.targets[i])


def splits(seed: int) -> tuple[DigitImages, DigitImages, DigitImages]:
    """Training (60%), validation (20%, for model selection) and test (20%), stratified."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=seed)
    return DigitImages(x_tr, y_tr), DigitImages(x_va, y_va), DigitImages(x_te, y_te)


def backbone() -> torch.nn.Module:
    """Your network without its classifier: images (B, 1, 8, 8) -> features (B, 32)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 32), torch.nn.ReLU(),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/example-own-model", help="runs folder")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--losses", nargs="+", default=["ce", "mr2"], help=f"among {', '.join(mr2.LOSS_NAMES)}"
    )
    parser.add_argument("--plots", action="store_true", help="let mr2 report draw its figures too")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        train, val, test = splits(seed)
        for loss in args.losses:
            torch.manual_seed(seed)  # the same initial weights for every loss at a seed: paired runs
            model = Classifier(backbone(), feature_dim=32, num_classes=10)
            metrics = mr2.train_model(
                model, train, val, test, loss=loss, runs=args.out, study=STUDY, seed=seed,
                epochs=args.epochs, batch_size=64, lr=0.05, dataset="digits (own Dataset)",
                class_names=[str(k) for k in range(10)], overwrite=True,
            )  # fmt: skip
            acc, worst = metrics["accuracy"], metrics["worst_class_accuracy"]
            print(f"{loss} seed {seed}: test accuracy {acc:.4f}, worst class {worst:.4f}")
    return mr2_cli(["report", f"{args.out}/{STUDY}"] + ([] if args.plots else ["--no-plots"]))


if __name__ == "__main__":
    sys.exit(main())
