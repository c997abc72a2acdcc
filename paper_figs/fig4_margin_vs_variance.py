"""Figure 4: the empirically optimal margin ratio against the variance ratio (Gaussian mixtures).

Reads ``RESULTS/sims/margin_vs_variance.csv`` from ``mr2 simulate --preset margin-vs-variance``: one row
per (K, d, n_per_class, sigma_ratio, criterion) with the log of the varied class's optimal margin over
the reference class's (``opt_log_margin_ratio``), its bootstrap CI over seeds (``ci_low``, ``ci_high``)
and the theory's prediction (``theory_log_margin_ratio``, from ``theory.optimal_margins``). One column
per criterion (balanced, worst-class), one row per (K, d); colour = samples per class.

Run: ``python -m paper_figs.fig4_margin_vs_variance --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 4
NAME = "margin_vs_variance"
TITLE = "Empirically optimal margin ratio against variance ratio (sims)"
CAPTION = (
    "Gaussian mixtures: log of the empirically optimal margin of the varied class over the reference "
    "class's, against the ratio of their variances sigma_k^2 / sigma_ref^2 (log scale), under the "
    "balanced-error and worst-class-error criteria (columns), for several samples per class (colours) "
    "and settings (K, d) (rows). Bars: 95% bootstrap CIs over seeds. Black line: the theory's "
    "prediction from the class spreads (theory.optimal_margins, p = 2). A point above 0 means the "
    "noisier class should get the larger margin; the theory predicts the sign and the size."
)

COLUMNS = (
    "K",
    "d",
    "n_per_class",
    "sigma_ratio",
    "criterion",
    "opt_log_margin_ratio",
    "ci_low",
    "ci_high",
    "theory_log_margin_ratio",
)
CRITERIA = ("balanced", "worst_class")
CRITERION_TITLES = {"balanced": "balanced error", "worst_class": "worst-class error"}
THEORY_ATOL = 1e-9  # theory values that differ by less are one curve (it does not depend on n)


def plot_margin_vs_variance(frame: Any, *, ax: Any = None, legend: bool = True) -> tuple[Any, Any]:
    """One panel: rows of ``margin_vs_variance.csv`` for one (K, d, criterion), colour = n_per_class.

    Args:
        frame: the rows to draw (columns as in docs/CONTRACTS.md).
        ax: axes to draw on; a new single-column figure when None.
        legend: draw the legend of sample sizes.
    """
    fig, ax = style.new_axes(ax)
    ns = sorted(frame["n_per_class"].unique())
    colors = dict(zip(ns, style.palette(len(ns)), strict=True))
    theory = frame.groupby("sigma_ratio")["theory_log_margin_ratio"]
    one_curve = bool((theory.max() - theory.min()).max() <= THEORY_ATOL)
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    ax.axvline(1.0, color="0.6", lw=0.6, zorder=0)
    if one_curve:
        t = theory.mean().sort_index()
        ax.plot(t.index.to_numpy() ** 2, t.to_numpy(), color="0.1", lw=1.2, label="theory", zorder=3)
    for i, n in enumerate(ns):
        sub = frame[frame["n_per_class"] == n].sort_values("sigma_ratio")
        x = sub["sigma_ratio"].to_numpy() ** 2
        dodge = 1.06 ** (i - (len(ns) - 1) / 2)  # multiplicative: the x axis is logarithmic
        y = sub["opt_log_margin_ratio"].to_numpy()
        yerr = np.vstack([y - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - y])
        ax.errorbar(
            x * dodge,
            y,
            yerr=np.clip(yerr, 0, None),
            fmt="o",
            color=colors[n],
            ms=3,
            elinewidth=0.9,
            label=f"n = {n:g}",
        )
        if not one_curve:
            ax.plot(x, sub["theory_log_margin_ratio"], color=colors[n], ls="--", lw=0.9)
    ax.set_xscale("log")
    ticks = sorted(set(np.round(frame["sigma_ratio"].to_numpy() ** 2, 3)))
    if len(ticks) <= 7:
        style.log_ticks(ax, "x", ticks, fmt="{:.2g}")
    ax.set(xlabel=r"variance ratio $\sigma_k^2/\sigma_{ref}^2$", ylabel=r"$\log(\gamma_k / \gamma_{ref})$")
    if legend:
        ax.legend(loc="upper left", handlelength=1.0)
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    path = data.sims_file(ctx, "margin_vs_variance.csv")
    frame = data.read_table(path, COLUMNS)
    criteria = [c for c in CRITERIA if c in set(frame["criterion"])] + sorted(
        set(frame["criterion"]) - set(CRITERIA)
    )
    settings = sorted({(int(k), int(d)) for k, d in zip(frame["K"], frame["d"], strict=True)})
    fig, axes = plt.subplots(
        len(settings),
        len(criteria),
        sharey="row",
        squeeze=False,
        layout="constrained",
        figsize=(style.DOUBLE_COLUMN, 0.3 + 1.75 * len(settings)),
    )
    for r, (k, d) in enumerate(settings):
        for c, crit in enumerate(criteria):
            ax = axes[r][c]
            sub = frame[(frame["K"] == k) & (frame["d"] == d) & (frame["criterion"] == crit)]
            if sub.empty:
                ax.set_axis_off()
                continue
            plot_margin_vs_variance(sub, ax=ax, legend=False)
            ax.set_title(f"{CRITERION_TITLES.get(crit, crit)}, K = {k}, d = {d}", loc="left")
            if c > 0:
                ax.set_ylabel("")
            if r < len(settings) - 1:
                ax.set_xlabel("")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), handlelength=1.2)
    covered = frame.groupby("criterion").apply(
        lambda s: float(
            np.mean(
                (s["ci_low"] <= s["theory_log_margin_ratio"]) & (s["theory_log_margin_ratio"] <= s["ci_high"])
            )
        ),
        include_groups=False,
    )
    notes = [
        "Share of settings whose CI contains the theory's value: "
        + ", ".join(f"{CRITERION_TITLES.get(k, k)} {v:.0%}" for k, v in covered.items())
        + "."
    ]
    return Made(fig=fig, data_files=[path, *data.sims_manifest(ctx)], notes=notes)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
