"""Example 4: numbers from any model (here scikit-learn) into `mr2 report`, with `write_run_metrics`.

`mr2 report RUNS/<study>` reads RUNS/<study>/<method>/seed<k>/metrics.json. `mr2.write_run_metrics`
writes that file from test labels and predictions (per-class accuracies, worst class, bottom/top tenth,
spread over classes), and from training features when you have them (the bound's a_k). Here: logistic
regression on scikit-learn's digits, unweighted ("plain", the baseline) against class-balanced
weights ("balanced"), on a long-tailed training split, five seeds each; the report pairs them by seed.

    python examples/metrics_for_report.py --out results/example-metrics   # ~7 s of CPU
    mr2 report results/example-metrics/sklearn-digits --baseline plain
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import mr2
from mr2_cli.cli import main as mr2_cli

STUDY = "sklearn-digits"
IMBALANCE = 10.0  # training images of class k: n_max * IMBALANCE^(-k/9)


def long_tailed(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a long-tailed subsample: class k keeps a fraction IMBALANCE^(-k/9) of its images."""
    keep = [rng.permutation(np.flatnonzero(y == k))[: max(2, round(np.sum(y == k) * IMBALANCE ** (-k / 9)))]
            for k in range(10)]  # fmt: skip
    return np.sort(np.concatenate(keep))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/example-metrics", help="runs folder")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--plots", action="store_true", help="let mr2 report draw its figures too")
    args = parser.parse_args(argv)
    x, y = load_digits(return_X_y=True)
    for seed in range(args.seeds):
        x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=0.3, stratify=y, random_state=seed)
        keep = long_tailed(y_tr, np.random.default_rng(seed))
        for method, weight in (("plain", None), ("balanced", "balanced")):
            clf = LogisticRegression(C=0.05, class_weight=weight, max_iter=200)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(x_tr[keep], y_tr[keep])
            mr2.write_run_metrics(
                y_te, clf.predict(x_te), runs=args.out, study=STUDY, method=method, seed=seed,
                dataset="digits (long-tailed training split)", train_features=x_tr[keep],
                train_targets=y_tr[keep], config={"C": 0.05, "class_weight": weight, "imbalance": IMBALANCE},
                extra={"select_metric": "last"},
            )  # fmt: skip
    report = ["report", f"{args.out}/{STUDY}", "--baseline", "plain"]
    return mr2_cli(report + ([] if args.plots else ["--no-plots"]))


if __name__ == "__main__":
    sys.exit(main())
