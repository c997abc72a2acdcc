"""Figure 4: the empirically optimal margin ratio against the variance ratio (Gaussian mixtures).

Reads ``RESULTS/sims/margin_vs_variance.csv`` from ``mr2 simulate --preset margin-vs-variance``: one row
per (K, loss, d, n_per_class, sigma_ratio, criterion) with the log of the varied class's optimal margin
over the reference class's (``opt_log_margin_ratio``), its bootstrap CI over seeds (``ci_low``,
``ci_high``), the theory's prediction (``theory_log_margin_ratio``, from ``theory.optimal_margins``) and
``at_boundary`` (the optimum is at the end of the searched range). Columns of the grid: margin form x
criterion; rows: (K, d); colour: samples per class.

Run: ``python -m paper_figs.fig4_margin_vs_variance --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mr2_core.contracts import SIMS_COLUMNS
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 4
NAME = "margin_vs_variance"
TITLE = "Empirically optimal margin ratio against variance ratio (sims)"
CAPTION = (
    "Gaussian mixtures: log of the empirically optimal margin of a class over the reference class's "
    "(sigma = 1), against the ratio of their variances sigma_k^2 / sigma_ref^2 (log scale). Columns: "
    "the margin form of the learner (additive: LDAM-style logit minus margin; temperature: MR2's "
    "official logits / gamma_y) and the criterion the margins minimise (balanced error, worst-class "
    "error); rows: K classes and dimension d; colours: training samples per class. Bars: 95% bootstrap "
    "CIs over seeds; open markers: the optimum lies at the end of the searched range (censored). Black "
    "line: the theory's prediction from the class spreads (theory.optimal_margins, p = 2). Above 0 = the "
    "noisier class should get the larger margin."
)

COLUMNS = SIMS_COLUMNS["margin_vs_variance.csv"]
CRITERIA = ("balanced", "worst_class")
CRITERION_TITLES = {"balanced": "balanced err.", "worst_class": "worst-class err."}
THEORY_ATOL = 1e-9  # theory values that differ by less are one curve (it does not depend on n)


def _variance_label(v: float) -> str:
    return f"1/{1 / v:.3g}" if v < 1 else f"{v:.3g}"


def plot_margin_vs_variance(
    frame: Any, *, ax: Any = None, legend: bool = True, colors: dict | None = None
) -> tuple[Any, Any]:
    """One panel: rows of ``margin_vs_variance.csv`` for one (K, d, loss, criterion); colour = n_per_class.

    Args:
        frame: the rows to draw (columns as in docs/CONTRACTS.md; ``at_boundary`` optional: censored
            optima are drawn with open markers).
        ax: axes to draw on; a new single-column figure when None.
        legend: draw the legend of sample sizes.
        colors: n_per_class -> colour, to keep colours equal across panels; the palette in order when None.
    """
    import matplotlib.ticker as mticker

    fig, ax = style.new_axes(ax)
    ns = sorted(frame["n_per_class"].unique())
    colors = colors or dict(zip(ns, style.palette(len(ns)), strict=True))
    theory = frame.groupby("sigma_ratio")["theory_log_margin_ratio"]
    one_curve = bool((theory.max() - theory.min()).max() <= THEORY_ATOL)
    ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    ax.axvline(1.0, color="0.6", lw=0.6, zorder=0)
    if one_curve:
        t = theory.mean().sort_index()
        ax.plot(t.index.to_numpy() ** 2, t.to_numpy(), color="0.1", lw=1.2, label="theory", zorder=3)
    for i, n in enumerate(ns):
        sub = frame[frame["n_per_class"] == n].sort_values("sigma_ratio")
        x = sub["sigma_ratio"].to_numpy() ** 2 * 1.12 ** (i - (len(ns) - 1) / 2)  # dodge on the log axis
        y = sub["opt_log_margin_ratio"].to_numpy()
        yerr = np.clip(np.vstack([y - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - y]), 0, None)
        edge = sub["at_boundary"].to_numpy(dtype=bool) if "at_boundary" in sub else np.zeros(len(sub), bool)
        ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=colors[n], elinewidth=0.8, capsize=1.5)
        ax.plot(x[~edge], y[~edge], "o", color=colors[n], ms=3, label=f"n = {n:g}")
        ax.plot(x[edge], y[edge], "o", mfc="white", color=colors[n], ms=3)
        if not one_curve:
            ax.plot(x, sub["theory_log_margin_ratio"], color=colors[n], ls="--", lw=0.9)
    ax.set_xscale("log")
    # 1 (equal variances, where the theory's line crosses 0) is always a tick, also when no setting has
    # it (K = 5: 1/4, 1/2, 2, 4)
    ticks = sorted(set(np.round(frame["sigma_ratio"].to_numpy() ** 2, 4)) | {1.0})
    if len(ticks) > 5:  # keep the powers of 4 (1/16, 1/4, 1, 4, 16): 1 stays labelled
        quarter = [t for t in ticks if abs(np.log(t) / np.log(4) - round(np.log(t) / np.log(4))) < 1e-6]
        ticks = quarter if len(quarter) >= 3 else ticks[:: (len(ticks) + 3) // 4]
    ax.xaxis.set_major_locator(mticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: _variance_label(v)))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set(
        xlabel=r"variance ratio $\sigma_k^2/\sigma_{ref}^2$",
        ylabel=r"$\log(\gamma_k^\star / \gamma_{ref}^\star)$",
    )
    if legend:
        ax.legend(loc="upper left", handlelength=1.0)
    return fig, ax


def _panels(frame: Any) -> tuple[list[tuple[int, int]], list[tuple[str | None, str]]]:
    """Rows (K, d) and columns (loss form or None, criterion) of the figure's grid."""
    rows = sorted({(int(k), int(d)) for k, d in zip(frame["K"], frame["d"], strict=True)})
    criteria = [c for c in CRITERIA if c in set(frame["criterion"])]
    criteria += sorted(set(frame["criterion"]) - set(CRITERIA))
    losses = sorted(frame["loss"].unique()) if "loss" in frame else [None]
    return rows, [(loss, crit) for loss in losses for crit in criteria]


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt
    import pandas as pd

    path = data.sims_file(ctx, "margin_vs_variance.csv")
    frame = data.read_table(path, COLUMNS)
    rows, cols = _panels(frame)
    ns = sorted(frame["n_per_class"].unique())
    colors = dict(zip(ns, style.palette(len(ns)), strict=True))
    fig, axes = plt.subplots(
        len(rows),
        len(cols),
        sharey="row",
        sharex="row",
        squeeze=False,
        layout="constrained",
        figsize=(style.DOUBLE_COLUMN, 0.5 + 1.55 * len(rows)),
    )
    for r, (k, d) in enumerate(rows):
        for c, (loss, crit) in enumerate(cols):
            ax = axes[r][c]
            mask = (frame["K"] == k) & (frame["d"] == d) & (frame["criterion"] == crit)
            if loss is not None:
                mask &= frame["loss"] == loss
            sub = frame[mask]
            if sub.empty:
                ax.set_axis_off()
                continue
            plot_margin_vs_variance(sub, ax=ax, legend=False, colors=colors)
            head = f"{loss}, " if loss is not None else ""
            ax.set_title(
                f"{head}{CRITERION_TITLES.get(crit, crit)}", loc="left", fontsize=style.FONT_SIZE - 1
            )
            ax.tick_params(labelsize=style.FONT_SIZE - 2)
            if c == 0:
                ax.set_ylabel(f"K = {k}, d = {d}\n" + ax.get_ylabel())
            else:
                ax.set_ylabel("")
            if r < len(rows) - 1:
                ax.set_xlabel("")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], marker="o", mfc="white", color="0.3", ls="none", ms=3))
    labels.append("censored optimum")
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), handlelength=1.2)
    inside = (frame["ci_low"] <= frame["theory_log_margin_ratio"]) & (
        frame["theory_log_margin_ratio"] <= frame["ci_high"]
    )
    theory_sign = np.sign(frame["theory_log_margin_ratio"].to_numpy())
    same_sign = pd.Series(np.sign(frame["opt_log_margin_ratio"].to_numpy()) == theory_sign, index=frame.index)
    signed = pd.Series(theory_sign != 0, index=frame.index)  # sigma ratio 1: the theory predicts 0
    keys = ["criterion"] + (["loss"] if "loss" in frame else [])
    parts = []
    for key, idx in frame.groupby(keys).groups.items():
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join([CRITERION_TITLES.get(key[0], key[0]).replace(" err.", ""), *map(str, key[1:])])
        s_idx = idx[signed[idx].to_numpy()]
        parts.append(
            f"{name}: {inside[idx].mean():.0%} of CIs contain the theory's value, the optimum has the "
            f"theory's sign in {same_sign[s_idx].mean():.0%}"
        )
    notes = [
        "Per criterion and margin form: " + "; ".join(parts) + f" (of {len(frame)} rows; sign counted "
        "where the variance ratio is not 1)."
    ]
    return Made(fig=fig, data_files=[path, *data.sims_manifest(ctx)], notes=notes)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
