"""Figure 1: per-class test accuracy on Fashion-MNIST, CE against MR2, sorted, with t-based CIs.

Reads ``RUNS/<study>/<loss>/seed<k>/metrics.json`` (``per_class_accuracy``, ``class_names``) from
``mr2 train`` through ``mr2.report.load_study``. Classes are sorted by CE's mean accuracy, worst
first, so the hard classes sit on the left. (a) Accuracy per class for each loss; (b) the paired
difference MR2 - CE per class (same seeds). CIs: 95% Student-t intervals over seeds
(``mr2.report.class_intervals`` / ``paired_class_differences``, i.e. ``mr2_core.stats.interval_estimates``);
none with a single seed. The plots are ``paper_figs.study_plots``'.

Run: ``python -m paper_figs.fig1_class_accuracy --results results --out results/figures``.
"""

from __future__ import annotations

from pathlib import Path

from paper_figs import data, study_plots, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 1
NAME = "class_accuracy"
TITLE = "Sorted per-class accuracy, CE against MR2"
CAPTION = (
    "Per-class test accuracy, classes sorted by cross-entropy's mean accuracy (worst first). "
    "(a) Mean over seeds for CE and MR2 with 95% Student-t CIs over seeds; (b) the paired difference "
    "MR2 - CE on the same seeds, with its 95% Student-t CI; a CI that excludes 0 marks a class that "
    "changed beyond seed noise (per class, not adjusted for the number of classes). Earlier versions "
    "of this figure drew percentile-bootstrap CIs, which are about a third narrower at 5 seeds."
)

LOSSES = ("ce", "mr2")


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt
    import pandas as pd

    from mr2.report import class_intervals, load_study, paired_class_differences, per_class_table

    study = data.training_study(ctx, LOSSES)
    runs = load_study(study, LOSSES)
    present = set(runs["loss"])
    if not set(LOSSES) <= present:
        raise ValueError(f"{study}: figure 1 needs runs of {list(LOSSES)}, found {sorted(present)}")
    frame = per_class_table(runs)
    summary = class_intervals(frame)
    ce = summary[summary["loss"] == "ce"].sort_values("mean")
    order = list(ce["class_index"])
    diff = paired_class_differences(frame, "mr2", "ce")

    fig, axes = plt.subplots(
        1,
        2,
        figsize=style.figsize("double", 0.36),
        layout="constrained",
        gridspec_kw={"width_ratios": [1.25, 1]},
    )
    study_plots.plot_class_accuracy(summary, order, baseline="ce", ax=axes[0])
    axes[0].set_title("(a) " + axes[0].get_title(loc="left"), loc="left")
    study_plots.plot_paired_class_difference(diff, order, "mr2", baseline="ce", ax=axes[1])
    axes[1].set_title("(b) " + axes[1].get_title(loc="left"), loc="left")
    dataset = ", ".join(sorted(set(frame["dataset"])))
    n_seeds = int(summary["n_seeds"].min())
    notes = [f"Dataset: {dataset}; study {study}; {n_seeds} seed(s) per loss."]
    if n_seeds < 2:
        notes.append("With a single seed no CI over seeds exists, so none is drawn.")
    table = pd.concat([summary.assign(kind="accuracy"), diff.assign(kind="mr2_minus_ce", loss="mr2")])
    return Made(fig=fig, data_files=[Path(p) for p in runs["path"]], notes=notes, table=table)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
