"""Figure 2: each class's feature spread a_k against its test error, on a trained network's features.

Reads ``class_spread`` (a_k = ||mu_k||^2 + s_k^2 of the final model's training features, L2), its parts
``class_mean_norm2`` and ``class_within_spread``, and ``per_class_accuracy`` from
``RUNS/<study>/<loss>/seed<k>/metrics.json`` (``mr2.report.load_study``). The bound says classes with
more spread need larger margins because they are harder; this figure asks whether the spread does pick
out the hard classes. (a, b) One panel per loss: a point per class (mean over seeds, bars = 95%
Student-t CI over seeds); spreads are divided by the run's mean spread, since feature scales differ
between models. (c) The Spearman correlation of each statistic with the class error, from
``mr2.report.spread_error_correlation`` (per seed, then the mean with a t CI over seeds). The plots
are ``paper_figs.study_plots``'.

Run: ``python -m paper_figs.fig2_spread_vs_error --results results --out results/figures``.
"""

from __future__ import annotations

from pathlib import Path

from mr2_core.contracts import loss_label
from paper_figs import data, labels, study_plots, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 2
NAME = "spread_vs_error"
TITLE = "Class feature spread against class error (real features)"
CAPTION = (
    "Feature spread a_k = ||mu_k||^2 + s_k^2 of each class (training features of the trained network, "
    "divided by the mean over classes) against the class's test error. (a, b) One point per class, mean "
    "over seeds with 95% Student-t CIs over seeds on both axes; rho in the title: Spearman correlation "
    "between a_k and the error, mean over seeds [95% t CI]. (c) The same correlation for a_k, "
    "its parts (within-class spread s_k^2, squared mean norm ||mu_k||^2) and the scale-free ratio "
    "s_k^2/||mu_k||^2, the centred a_k = ||mu_k - mu_bar||^2 + s_k^2 (what the bound supports with a bias "
    "in the head) and the separation ratio s_k^2 / min_j ||mu_k - mu_j||^2 (a heuristic suggested by data, "
    "not by the bound), where the runs record them (mr2.report.spread_error_correlation). rho > 0: the "
    "statistic points at the hard "
    "classes, as the bound assumes. Earlier versions of this figure drew percentile-bootstrap CIs, "
    "which are about a third narrower at 5 seeds."
)

LOSSES = ("ce", "mr2")


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    from mr2.report import load_study, per_class_table, spread_error_correlation

    study = data.training_study(ctx, LOSSES)
    runs = load_study(study, LOSSES)
    losses = [loss for loss in LOSSES if loss in set(runs["loss"])]
    frame = per_class_table(runs)
    corr = spread_error_correlation(runs)
    fig, axes = plt.subplots(
        1,
        len(losses) + 1,
        figsize=style.figsize("double", 0.36),
        layout="constrained",
        gridspec_kw={"width_ratios": [1.0] * len(losses) + [0.8]},
    )
    for i, (ax, loss) in enumerate(zip(axes[:-1], losses, strict=True)):
        row = corr[(corr["loss"] == loss) & (corr["statistic"] == "a_k")]
        rho = tuple(row[["rho", "ci_low", "ci_high"]].iloc[0]) if len(row) else None
        study_plots.plot_spread_vs_error(frame, loss, rho=rho, ax=ax)
        ax.set_title(f"({'abcdefgh'[i]}) " + ax.get_title(loc="left"), loc="left")
        if i > 0:
            ax.set_ylabel("")
    study_plots.plot_correlations(corr, ax=axes[-1])
    axes[-1].set_title(f"({'abcdefgh'[len(losses)]}) which statistic?", loc="left")
    labels.refresh(fig)  # the class labels, placed again for the finished layout
    n_seeds = int(frame.groupby("loss")["seed"].nunique().min())
    dataset = ", ".join(sorted(set(frame["dataset"])))
    notes = [f"Dataset: {dataset}; study {study}; {n_seeds} seed(s) per loss."]
    if n_seeds < 2:
        notes.append("With a single seed no CI over seeds exists, so none is drawn.")
    for _, r in corr.iterrows():
        if r["statistic"] in ("a_k", "s_k²/‖mu_k‖²"):
            notes.append(
                f"{loss_label(r['loss'])}: rho({r['statistic']}, error) = {r['rho']:.2f} "
                f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]."
            )
    return Made(fig=fig, data_files=[Path(p) for p in runs["path"]], notes=notes, table=corr)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
