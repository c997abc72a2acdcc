"""Figure 5: the bound's per-class margin term against the true per-class generalisation gap (sims).

Reads ``RESULTS/sims/bound_vs_gap.csv`` from ``mr2 simulate --preset bound-vs-gap``: one row per class
(and setting) with ``margin_term`` (the class's term of the bound, sqrt(a_k) / gamma_k up to constants)
and ``gen_gap`` (test error minus training error of the learned rule), with bootstrap CIs over seeds.
A bound is useful for allocating margins if it orders the classes as their true gaps do, so the
figure reports the Spearman correlation alongside the scatter.

Run: ``python -m paper_figs.fig5_bound_vs_gap --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 5
NAME = "bound_vs_gap"
TITLE = "The bound's margin term against the true generalisation gap (sims)"
CAPTION = (
    "Gaussian mixtures: per-class margin term of the bound against the class's true generalisation gap "
    "(test error - training error), one point per class and setting, mean over seeds with 95% "
    "bootstrap CIs over seeds. rho: Spearman correlation over all points (ordering is what a margin "
    "allocation needs; the bound's constants make its level loose by design)."
)

REQUIRED = ("margin_term", "gen_gap")
# CI columns the sims pillar may use, in order of preference: (low, high) per quantity
GAP_CI = (("gen_gap_ci_low", "gen_gap_ci_high"), ("ci_low", "ci_high"))
TERM_CI = (("margin_term_ci_low", "margin_term_ci_high"),)
GROUP_COLUMNS = ("n_per_class", "allocation", "margins", "setting", "d")
HUE_LABELS = {"n_per_class": "n"}


def _ci_columns(frame: Any, options) -> tuple[str, str] | None:
    for low, high in options:
        if low in frame.columns and high in frame.columns:
            return low, high
    return None


def _bars(frame: Any, value: str, cols: tuple[str, str] | None) -> Any:
    if cols is None:
        return None
    v = frame[value].to_numpy()
    return np.clip(np.vstack([v - frame[cols[0]].to_numpy(), frame[cols[1]].to_numpy() - v]), 0, None)


def plot_bound_vs_gap(frame: Any, *, hue: str | None = None, ax: Any = None) -> tuple[Any, Any]:
    """Scatter of ``margin_term`` (x) against ``gen_gap`` (y) with CI bars, coloured by ``hue``.

    Args:
        frame: rows of ``bound_vs_gap.csv``.
        hue: a column to colour by (e.g. ``n_per_class``), or None.
        ax: axes to draw on; a new single-column figure when None.
    """
    from scipy.stats import spearmanr

    fig, ax = style.new_axes(ax)
    gap_ci, term_ci = _ci_columns(frame, GAP_CI), _ci_columns(frame, TERM_CI)
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=True))
    colors = style.palette(len(groups))
    for (key, sub), color in zip(groups, colors, strict=True):
        ax.errorbar(
            sub["margin_term"],
            sub["gen_gap"],
            xerr=_bars(sub, "margin_term", term_ci),
            yerr=_bars(sub, "gen_gap", gap_ci),
            fmt="o",
            ms=3,
            elinewidth=0.8,
            color=color,
            label=None if key is None else f"{HUE_LABELS.get(hue, hue)} = {key}",
        )
    rho = spearmanr(frame["margin_term"], frame["gen_gap"]).statistic if len(frame) > 2 else np.nan
    ax.text(
        0.03,
        0.96,
        rf"Spearman $\rho$ = {rho:.2f} ({len(frame)} points)",
        transform=ax.transAxes,
        va="top",
        ha="left",
    )
    ax.set(xlabel="margin term of the bound", ylabel="generalisation gap (test - train error)")
    if hue is not None:
        ax.legend(loc="lower right", handlelength=1.0)
    return fig, ax


def make(ctx: FigureContext) -> Made:
    from scipy.stats import spearmanr

    path = data.sims_file(ctx, "bound_vs_gap.csv")
    frame = data.read_table(path, REQUIRED)
    hue = next((c for c in GROUP_COLUMNS if c in frame.columns and 1 < frame[c].nunique() <= 6), None)
    fig, ax = style.new_axes(None, width="single", aspect=0.85)
    plot_bound_vs_gap(frame, hue=hue, ax=ax)
    rho = spearmanr(frame["margin_term"], frame["gen_gap"]).statistic
    notes = [f"Over {len(frame)} class-settings, Spearman rho = {rho:.2f}."]
    return Made(fig=fig, data_files=[path, *data.sims_manifest(ctx)], notes=notes)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
