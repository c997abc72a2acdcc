"""Example 1: your own training loop with MR2Loss, then its numbers in `mr2 report`.

A plain PyTorch loop on scikit-learn's digits (1,797 real 8x8 images, shipped with scikit-learn): a
small MLP wrapped in `mr2.models.Classifier`, so that the loss sees the penultimate features as well as
the logits. CE and MR2 are trained at two seeds each; `mr2.write_run_metrics` writes each run's
metrics.json in the layout `mr2 report` reads (runs/<study>/<method>/seed<k>/).

    python examples/own_loop_mr2.py --out results/example-own-loop   # ~45 s of CPU
    mr2 report results/example-own-loop/own-loop                      # the same report, with plots

The only MR2-specific lines are marked "MR2:". On digits, with so few epochs and seeds, the report is a
demonstration of the plumbing, not evidence for or against MR2.
"""

from __future__ import annotations

import argparse
import sys

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mr2
from mr2.models import Classifier
from mr2_cli.cli import main as mr2_cli

STUDY = "own-loop"
K = 10  # digit classes


def data(seed: int) -> tuple[torch.Tensor, ...]:
    """Digits as float tensors in [0, 1], split 80/20 into training and test (stratified)."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=0.2, stratify=y, random_state=seed)
    return tuple(torch.as_tensor(a, dtype=torch.float32 if a.ndim == 2 else torch.long)
                 for a in (x_tr, y_tr, x_te, y_te))  # fmt: skip


def train_one(method: str, seed: int, epochs: int, runs: str) -> float:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = data(seed)
    backbone = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU())
    model = Classifier(backbone, feature_dim=64, num_classes=K)  # forward -> (logits, features)
    # MR2: the loss takes logits, features and labels; "ce" is the same call without margins
    loss_fn = mr2.make_loss(method, K)  # or mr2.MR2Loss(K, lambda_rep=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        loss_fn.on_epoch_start(epoch)  # a no-op for CE and MR2; LDAM-DRW's schedule uses it
        for idx in torch.randperm(len(y_tr), generator=gen).split(64):
            logits, feats = model(x_tr[idx])
            loss = loss_fn(logits, feats, y_tr[idx])  # MR2: features in, margins from their statistics
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(x_te)[0].argmax(1)
        train_feats = model(x_tr)[1]
    # metrics.json as mr2 train writes it: per-class accuracies, worst class, and a_k from the features
    mr2.write_run_metrics(
        y_te, pred, runs=runs, study=STUDY, method=method, seed=seed, dataset="digits",
        train_features=train_feats, train_targets=y_tr, config={"epochs": epochs, "lr": 0.1},
        extra={"select_metric": "last"},  # no validation split here: the last epoch's model is tested
    )  # fmt: skip
    return float((pred == y_te).float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/example-own-loop", help="runs folder")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--plots", action="store_true", help="let mr2 report draw its figures too")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        for method in ("ce", "mr2"):
            acc = train_one(method, seed, args.epochs, args.out)
            print(f"{method:4s} seed {seed}: test accuracy {acc:.4f}")
    report = ["report", f"{args.out}/{STUDY}"] + ([] if args.plots else ["--no-plots"])
    return mr2_cli(report)


if __name__ == "__main__":
    sys.exit(main())
