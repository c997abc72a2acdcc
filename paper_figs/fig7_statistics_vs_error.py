"""Figure 7: every per-class feature statistic against the class's test error, one panel each.

Reads the CE runs of the training study (``RUNS/<study>/ce/seed<k>/metrics.json``, the same study as
figures 1 and 2): ``per_class_accuracy`` and the statistics measured on the selected model's training
features: the bound's a_k = ||mu_k||^2 + s_k^2, its parts s_k^2 and ||mu_k||^2, the centred
||mu_k - mu_bar||^2 + s_k^2 (what the bound supports when the head has a bias) and the separation
ratio s_k^2 / min_j ||mu_k - mu_j||^2 (a heuristic suggested by data, not a consequence of the bound).
Each panel: a point per class, the statistic divided by its mean over classes (feature scales differ
between runs) against the test error, mean over seeds with 95% Student-t CIs over seeds on both axes;
the title gives Spearman's rho with the error (per seed, then the mean with a t CI,
``mr2.report.spread_error_correlation``); the last panel sets every statistic's rho side by side.
A margin rule gives larger margins to larger statistics, so rho > 0 means the rule points at the hard
classes.

Run: ``python -m paper_figs.fig7_statistics_vs_error --results results --out results/figures``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figs import data, labels, study_plots, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 7
NAME = "statistics_vs_error"
TITLE = "Every margin statistic against class error (CE features)"
CAPTION = (
    "Each per-class statistic of the trained CE network's training features, divided by its mean over "
    "classes, against the class's test error; one point per class, mean over seeds with 95% Student-t "
    "CIs over seeds on both axes; title: Spearman rho with the error, mean over seeds [95% t CI]. "
    "a_k = ||mu_k||^2 + s_k^2 is MR2's statistic; centred a_k = ||mu_k - mu_bar||^2 + s_k^2 is what the "
    "bound supports when the head has a bias; the separation ratio s_k^2 / min_j ||mu_k - mu_j||^2 is a "
    "heuristic suggested by data, not a consequence of the bound. rho > 0: the statistic, and a margin "
    "rule built on it, points at the hard classes."
)
LOSS = "ce"  # the statistics of a network trained without margins
PANEL_STATS = ("a_k", "s_k²", "‖mu_k‖²", "centred a_k", "separation")


def statistic_table(runs, statistic: str):
    """``mr2.report.per_class_table``'s long table with ``spread``/``rel_spread`` holding ``statistic``
    (a label of ``mr2.report.SPREAD_STATS``) instead of a_k."""
    from mr2.report import SPREAD_STATS, per_class_table

    long = per_class_table(runs)  # K rows per run, in the order of runs' rows
    spread = np.concatenate([np.asarray(SPREAD_STATS[statistic](r), dtype=float) for _, r in runs.iterrows()])
    long = long.assign(spread=spread)
    return long.assign(rel_spread=spread / long.groupby(["loss", "seed"])["spread"].transform("mean"))


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    from mr2.report import load_study, spread_error_correlation

    study = data.training_study(ctx)
    runs = load_study(study, (LOSS,))
    corr = spread_error_correlation(runs)
    stats = [s for s in PANEL_STATS if s in set(corr["statistic"])]
    fig, grid = plt.subplots(2, 3, figsize=style.figsize("double", 0.62), layout="constrained")
    axes = grid.ravel()
    for i, (ax, stat) in enumerate(zip(axes, stats, strict=False)):
        row = corr[corr["statistic"] == stat].iloc[0]
        study_plots.plot_spread_vs_error(statistic_table(runs, stat), LOSS, ax=ax)
        rho = f"$\\rho$ = {row['rho']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        ax.set_title(f"({'abcdefgh'[i]}) {study_plots.STAT_LABELS[stat]}\n{rho}", loc="left")
        ax.set_xlabel("statistic / its mean over classes" if i >= 3 else "")
        if i % 3:
            ax.set_ylabel("")
    study_plots.plot_correlations(corr, ax=axes[5])
    axes[5].set_title(f"({'abcdefgh'[len(stats)]}) Spearman rho, all statistics", loc="left")
    for ax in axes[len(stats) : 5]:
        ax.set_visible(False)
    labels.refresh(fig)  # the class labels, placed again for the finished layout
    n_seeds = int(runs["seed"].nunique())
    notes = [f"Study {study}; CE runs, {n_seeds} seed(s); dataset {', '.join(sorted(set(runs['dataset'])))}."]
    for _, r in corr[corr["statistic"].isin(stats)].iterrows():
        notes.append(
            f"rho({r['statistic']}, error) = {r['rho']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]; "
            f"largest on the hardest class in {r['hardest_match']:.0%} of runs."
        )
    return Made(fig=fig, data_files=[Path(p) for p in runs["path"]], notes=notes, table=corr)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
