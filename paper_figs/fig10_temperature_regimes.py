"""Figure 10: both regimes of MR²'s temperature form on two Gaussian classes (sims).

Reads ``RESULTS/sims/temperature_regimes_summary.csv`` from ``mr2 simulate --preset temperature-regimes``
(``sims.temperature``): two classes N(±delta/2, 1) in one dimension, class 1 trained with the temperature
g (CE(z/g)), class 0 with 1, a linear classifier trained to convergence on several training sets.
(a) How far the fitted boundary moved toward class 1 (sigma units), mean with its 95% t interval over
training sets, against the distance between the means: above 0 the temperature took ground from its
class, below 0 it acted as a margin. (b) What decides it: the training error of plain CE (the classes
overlap while it is above 0) beside the share of class 1's samples below the crossover v* of
``mr2 derive`` step 16.

Run: ``python -m paper_figs.fig10_temperature_regimes --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mr2_core.contracts import SIMS_COLUMNS
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 10
NAME = "temperature_regimes"
TITLE = "Both regimes of the temperature form (sims)"
CAPTION = (
    "Two Gaussian classes N(±delta/2, 1), class 1 trained with CE(z / g) and class 0 with CE(z): a linear "
    "classifier trained to convergence (L2 1e-3) on each of several training sets. (a) Shift of the "
    "fitted boundary toward class 1 (sigma units), mean with a 95% t interval over training sets, per "
    "temperature ratio g; above 0 the larger temperature took ground from its class, below 0 it moved "
    "the boundary away from it, as a margin would. (b) Training error of plain CE (black: the classes "
    "overlap while it is above 0) and the share of class 1's training samples whose scaled logit gap is "
    "below the crossover v* = 1.28 (colours, per g). The boundary's regime follows the overlap."
)
COLUMNS = SIMS_COLUMNS["temperature_regimes_summary.csv"]


def ratio_colors(summary: Any) -> dict[float, Any]:
    """One colour per temperature ratio g > 1 of ``summary``, in increasing order of g."""
    ratios = sorted(summary.loc[summary["ratio"] > 1, "ratio"].unique())
    return dict(zip(ratios, style.palette(len(ratios)), strict=True))


def plot_shift(summary: Any, *, ax: Any = None, colors: dict | None = None) -> tuple[Any, Any]:
    """Panel (a): the boundary's shift toward the larger-temperature class against the separation."""
    fig, ax = style.new_axes(ax)
    rows = summary[summary["ratio"] > 1]
    colors = colors or ratio_colors(summary)
    for g in colors:
        sub = rows[rows["ratio"] == g].sort_values("separation")
        y = sub["boundary_shift"].to_numpy()
        err = np.clip(np.vstack([y - sub["shift_ci_low"], sub["shift_ci_high"] - y]), 0, None)
        ax.errorbar(sub["separation"], y, yerr=err, marker="o", ms=3, capsize=2, color=colors[g],
                    label=f"g = {g:g}")  # fmt: skip
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xscale("log")
    style.log_ticks(ax, "x", sorted(rows["separation"].unique()))
    ax.set(xlabel="distance between the means delta (sigma)", ylabel="boundary shift toward class 1 (sigma)")
    ax.legend(loc="upper right", handlelength=1.2)
    return fig, ax


def plot_overlap(summary: Any, *, ax: Any = None, colors: dict | None = None) -> tuple[Any, Any]:
    """Panel (b): CE's training error and the share of class 1's samples below v*."""
    fig, ax = style.new_axes(ax)
    ref = summary[summary["ratio"] == 1.0].sort_values("separation")
    ax.plot(
        ref["separation"], ref["train_error"], color="black", marker="s", ms=3, label="training error (CE)"
    )
    rows = summary[summary["ratio"] > 1]
    colors = colors or ratio_colors(summary)
    for g in colors:
        sub = rows[rows["ratio"] == g].sort_values("separation")
        ax.plot(sub["separation"], sub["share_below_crossover"], color=colors[g], marker="o", ms=3, ls="--",
                label=f"below v*, g = {g:g}")  # fmt: skip
    ax.set_xscale("log")
    style.log_ticks(ax, "x", sorted(summary["separation"].unique()))
    ax.set(xlabel="distance between the means delta (sigma)", ylabel="share", ylim=(-0.02, 1.02))
    ax.legend(loc="upper right", handlelength=1.5)
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    path = data.sims_file(ctx, "temperature_regimes_summary.csv")
    summary = data.read_table(path, COLUMNS)
    colors = ratio_colors(summary)
    fig, (a, b) = plt.subplots(1, 2, layout="constrained", figsize=(style.DOUBLE_COLUMN, 2.6))
    plot_shift(summary, ax=a, colors=colors)
    plot_overlap(summary, ax=b, colors=colors)
    a.set_title("(a) where the boundary moves", loc="left")
    b.set_title("(b) what decides it", loc="left")
    return Made(fig=fig, data_files=[path, *data.sims_manifest(ctx)], notes=[_note(summary)], table=summary)


def _note(summary: Any) -> str:
    rows = summary[summary["ratio"] > 1]
    toward = sorted(rows.loc[rows["shift_ci_low"] > 0, "separation"].unique())
    away = sorted(rows.loc[rows["shift_ci_high"] < 0, "separation"].unique())
    fmt = ", ".join
    return (
        f"Boundary toward the larger temperature at delta = {fmt(f'{d:g}' for d in toward) or 'none'}; "
        f"away from it at delta = {fmt(f'{d:g}' for d in away) or 'none'}."
    )


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
