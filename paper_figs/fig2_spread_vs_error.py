"""Figure 2: each class's feature spread a_k against its test error, on a trained network's features.

Reads ``class_spread`` (a_k = ||mu_k||^2 + s_k^2 of the final model's training features, L2), its parts
``class_mean_norm2`` and ``class_within_spread``, and ``per_class_accuracy`` from
``RUNS/<study>/<loss>/seed<k>/metrics.json``. The bound says classes with more spread need larger
margins because they are harder; this figure asks whether the spread does pick out the hard classes.
(a, b) One panel per loss: a point per class (mean over seeds, bars = 95% bootstrap CI over seeds);
spreads are divided by the run's mean spread, since feature scales differ between models. (c) The
Spearman correlation of each statistic with the class error, from ``mr2.report.spread_error_correlation``
(per seed, then the mean with a bootstrap CI over seeds).

Run: ``python -m paper_figs.fig2_spread_vs_error --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.contracts import loss_label
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main
from paper_figs.fig1_class_accuracy import LOSSES, class_accuracy_ci

NUMBER = 2
NAME = "spread_vs_error"
TITLE = "Class feature spread against class error (real features)"
CAPTION = (
    "Feature spread a_k = ||mu_k||^2 + s_k^2 of each class (training features of the trained network, "
    "divided by the mean over classes) against the class's test error. (a, b) One point per class, mean "
    "over seeds with 95% bootstrap CIs over seeds on both axes; rho in the title: Spearman correlation "
    "between a_k and the error, mean over seeds [95% bootstrap CI]. (c) The same correlation for a_k, "
    "its parts (within-class spread s_k^2, squared mean norm ||mu_k||^2) and the scale-free ratio "
    "s_k^2/||mu_k||^2 (mr2.report.spread_error_correlation). rho > 0: the statistic points at the hard "
    "classes, as the bound assumes."
)

STAT_LABELS = {
    "a_k": r"$a_k$",
    "s_k²": r"$s_k^2$",
    "‖mu_k‖²": r"$\|\mu_k\|^2$",
    "s_k²/‖mu_k‖²": r"$s_k^2/\|\mu_k\|^2$",
}


def _fmt_rho(point: float, low: float, high: float) -> str:
    if np.isnan(point):
        return r"$\rho$ undefined"
    if np.isnan(low):
        return rf"$\rho$ = {point:.2f} (1 seed)"
    return rf"$\rho$ = {point:.2f} [{low:.2f}, {high:.2f}]"


def plot_spread_vs_error(
    frame: Any, loss: str, *, seed: int = 0, rho: tuple[float, float, float] | None = None, ax: Any = None
) -> tuple[Any, Any]:
    """One panel: relative spread (x) against test error (y) for ``loss``, a labelled point per class.

    Args:
        frame: long table from :func:`paper_figs.data.load_study`.
        loss: which loss's runs to draw.
        seed: seed of the bootstrap CIs.
        rho: (point, low, high) of the Spearman correlation, shown in the title when given.
        ax: axes to draw on; a new single-column figure when None.
    """
    fig, ax = style.new_axes(ax)
    sub = frame[frame["loss"] == loss]
    if sub.empty:
        raise ValueError(f"loss={loss!r}: expected one of {sorted(set(frame['loss']))}")
    if sub["spread"].isna().all():
        raise ValueError(f"loss={loss!r}: the runs' metrics.json hold no class_spread")
    err = class_accuracy_ci(sub, seed=seed, value="error").set_index("class_index")
    spr = class_accuracy_ci(sub, seed=seed, value="rel_spread").set_index("class_index")
    color = style.loss_color(loss)

    def bars(s):
        if s["ci_low"].isna().all():
            return None
        return np.vstack([s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]])

    ax.errorbar(
        spr["mean"], err["mean"], xerr=bars(spr), yerr=bars(err), fmt="o", color=color, ms=3.5, elinewidth=0.8
    )
    style.label_points(
        ax,
        spr["mean"].to_numpy(),
        err.loc[spr.index, "mean"].to_numpy(),
        err.loc[spr.index, "class_name"].to_numpy(),
    )
    ax.set(xlabel=r"relative spread $a_k / \bar a$", ylabel="test error")
    title = loss_label(loss) if rho is None else f"{loss_label(loss)}: {_fmt_rho(*rho)}"
    ax.set_title(title, loc="left")
    return fig, ax


def plot_correlations(corr: Any, *, ax: Any = None) -> tuple[Any, Any]:
    """Panel (c): Spearman rho of each statistic with the class error, per loss, with CIs (a forest).

    Args:
        corr: output of ``mr2.report.spread_error_correlation`` (``loss, statistic, rho, ci_low, ci_high``).
        ax: axes to draw on; a new single-column figure when None.
    """
    fig, ax = style.new_axes(ax)
    stats = [s for s in STAT_LABELS if s in set(corr["statistic"])]
    losses = list(dict.fromkeys(corr["loss"]))
    height = 0.7 / max(len(losses), 1)
    for i, loss in enumerate(losses):
        sub = corr[corr["loss"] == loss].set_index("statistic").reindex(stats)
        y = np.arange(len(stats))[::-1] + (len(losses) - 1) / 2 * height - i * height
        err = np.vstack([sub["rho"] - sub["ci_low"], sub["ci_high"] - sub["rho"]])
        ax.errorbar(
            sub["rho"],
            y,
            xerr=None if np.all(np.isnan(err)) else np.clip(err, 0, None),
            fmt="o",
            ms=3.5,
            color=style.loss_color(loss),
            label=loss_label(loss),
            elinewidth=1.0,
        )
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_yticks(np.arange(len(stats))[::-1], [STAT_LABELS[s] for s in stats])
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(r"Spearman $\rho$ with class error")
    ax.legend(loc="lower left", handlelength=1.0)
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    from mr2.report import load_study, spread_error_correlation

    study = data.training_study(ctx, LOSSES)
    frame, files = data.load_study(study, LOSSES)
    losses = [loss for loss in LOSSES if loss in set(frame["loss"])]
    runs = load_study(study)
    runs = runs[runs["loss"].isin(losses)]
    corr = spread_error_correlation(runs, rng=ctx.seed)
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
        plot_spread_vs_error(frame, loss, seed=ctx.seed, rho=rho, ax=ax)
        ax.set_title(f"({'abcdefgh'[i]}) " + ax.get_title(loc="left"), loc="left")
        if i > 0:
            ax.set_ylabel("")
    plot_correlations(corr, ax=axes[-1])
    axes[-1].set_title(f"({'abcdefgh'[len(losses)]}) which statistic?", loc="left")
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
    return Made(fig=fig, data_files=files, notes=notes, table=corr)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
