"""Figure 5: the bound's per-class margin term against the true per-class generalisation gap (sims).

Reads ``RESULTS/sims/bound_vs_gap.csv`` from ``mr2 simulate --preset bound-vs-gap``: one row per
(setting, margin choice, class) with ``margin_term`` (the complexity term of the class's own
bound, 4 B sqrt(K / n_k) sqrt(a_k) / gamma_k, ``theory.class_bound_term``) and ``gen_gap`` (test
error minus training error of the learned rule), with bootstrap CIs over seeds. (a) Every class of
every setting, log-log; pooled, both shrink with n, so their correlation says little. (b) What a
margin allocation needs: within one setting, does the class with the larger term have the larger
gap? Spearman across the classes of a setting, averaged over settings, with a bootstrap CI over
settings.

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
    "Gaussian mixtures: the bound's per-class margin term 4 B sqrt(K / n_k) sqrt(a_k) / gamma_k "
    "against the class's true generalisation gap (test - training error) under the theory's margins. "
    "(a) One point per class and setting, mean over seeds with 95% bootstrap CIs; colour: samples per "
    "class; dashed: term = gap (points below it are classes whose gap the term bounds). The gap axis is "
    "logarithmic except in the grey band, |gap| < 0.001, where it is linear (so that 0 and negative gaps "
    "can be drawn): the band's height is not a decade. The pooled "
    "correlation is driven by n, which shrinks both. (b) Within a setting, Spearman correlation between "
    "term and gap across its classes (+1 for K = 2 when the class with the larger term has the larger "
    "gap), mean over settings with a 95% bootstrap CI over settings, per K, margin form and margin choice."
)

REQUIRED = ("margin_term", "gen_gap")
GAP_CI = (("gen_gap_ci_low", "gen_gap_ci_high"), ("ci_low", "ci_high"))  # preferred first
TERM_CI = (("margin_term_ci_low", "margin_term_ci_high"),)
GROUP_KEYS = ("K", "loss", "choice")  # panel (b): one bar per combination present
SYMLOG_THRESHOLD = 1e-3  # gaps below this (and negative ones: noise) are drawn on a linear scale
CHOICE = "theory"  # panel (a) draws the theory's margins (the CSV also holds uniform margins)


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


def plot_bound_vs_gap(frame: Any, *, hue: str | None = "n_per_class", ax: Any = None) -> tuple[Any, Any]:
    """Scatter of ``margin_term`` (x, log) against ``gen_gap`` (y, symlog) with CI bars, coloured by ``hue``.

    Args:
        frame: rows of ``bound_vs_gap.csv``.
        hue: a column to colour by, or None.
        ax: axes to draw on; a new single-column figure when None.
    """
    from scipy.stats import spearmanr

    fig, ax = style.new_axes(ax)
    gap_ci, term_ci = _ci_columns(frame, GAP_CI), _ci_columns(frame, TERM_CI)
    hue = hue if hue in frame.columns else None
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=True))
    colors = style.palette(len(groups))
    markers = {2: "o", 5: "s"}
    for (key, sub), color in zip(groups, colors, strict=True):
        ax.errorbar(
            sub["margin_term"],
            sub["gen_gap"],
            xerr=_bars(sub, "margin_term", term_ci),
            yerr=_bars(sub, "gen_gap", gap_ci),
            fmt="none",
            elinewidth=0.4,
            ecolor=color,
            alpha=0.3,
            capsize=0,
        )
        for k, part in sub.groupby("K") if "K" in sub else [(None, sub)]:
            ax.plot(
                part["margin_term"],
                part["gen_gap"],
                markers.get(k, "o"),
                color=color,
                ms=2.5,
                alpha=0.8,
                label=None,
            )
        ax.plot([], [], "o", color=color, ms=3, label=f"n = {key:g}" if key is not None else None)
    if "K" in frame and frame["K"].nunique() > 1:
        for k in sorted(frame["K"].unique()):
            ax.plot([], [], markers.get(k, "o"), color="0.4", ms=3, label=f"K = {k}")
    lo = max(frame["margin_term"].min(), 1e-6)
    hi = frame["margin_term"].max()
    ax.plot([lo, hi], [lo, hi], ls="--", color="0.4", lw=0.8, label="term = gap")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=SYMLOG_THRESHOLD)
    style.plain_log_labels(ax, "x")
    low = frame[gap_ci[0]].min() if gap_ci else frame["gen_gap"].min()
    ticks = [t for t in (-0.1, -0.01, -0.001, 0.0, 0.001, 0.01, 0.1, 1.0) if low * 1.5 <= t or t >= 0]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_ylim(min(low * 1.5, -SYMLOG_THRESHOLD / 2), max(1.0, frame["gen_gap"].max() * 1.5))
    # the symlog scale is linear, not logarithmic, within +-threshold: shade that band so that its
    # height is not read as a decade
    ax.axhspan(
        -SYMLOG_THRESHOLD,
        SYMLOG_THRESHOLD,
        color="0.88",
        lw=0,
        zorder=0,
        label=f"linear scale\n(|gap| < {SYMLOG_THRESHOLD:g})",
    )
    rho = spearmanr(frame["margin_term"], frame["gen_gap"]).statistic if len(frame) > 2 else np.nan
    ax.text(
        0.97, 0.04, rf"pooled Spearman $\rho$ = {rho:.2f}", transform=ax.transAxes, va="bottom", ha="right"
    )
    ax.set(xlabel="margin term of the bound", ylabel="generalisation gap (test − train error)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), handlelength=1.0, borderaxespad=0.3)
    return fig, ax


def within_setting(frame: Any, *, seed: int) -> Any:
    """Spearman(term, gap) across the classes of each setting, summarised per ``GROUP_KEYS`` group.

    Returns:
        pandas frame with the group keys and ``mean, ci_low, ci_high, n_settings`` (95% bootstrap CI
        over settings, ``mr2_core.stats.bootstrap_ci``; NaN below 2 settings).
    """
    import pandas as pd

    from mr2_core.stats import bootstrap_ci

    keys = [k for k in GROUP_KEYS if k in frame.columns]
    setting = "setting" if "setting" in frame.columns else None
    if setting is None:
        raise ValueError("bound_vs_gap.csv has no 'setting' column: cannot group classes by setting")
    rows = []
    for key, g in frame.groupby(keys, sort=True):
        rho = (
            g.groupby(setting)
            .apply(lambda h: h["margin_term"].corr(h["gen_gap"], method="spearman"), include_groups=False)
            .dropna()
        )
        r = rho.to_numpy()
        if r.size >= 2:
            point, (low, high) = bootstrap_ci(r, rng=seed)
        else:
            point, low, high = (float(r.mean()) if r.size else np.nan), np.nan, np.nan
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "mean": point,
                "ci_low": low,
                "ci_high": high,
                "n_settings": int(r.size),
            }
        )
    return pd.DataFrame(rows)


def plot_within_setting(summary: Any, *, ax: Any = None) -> tuple[Any, Any]:
    """Panel (b): the mean within-setting Spearman per group with its CI, as a horizontal forest."""
    fig, ax = style.new_axes(ax)
    keys = [k for k in GROUP_KEYS if k in summary.columns]
    labels = [
        ", ".join(f"K = {v}" if k == "K" else str(v) for k, v in zip(keys, row, strict=True))
        for row in summary[keys].itertuples(index=False)
    ]
    y = np.arange(len(summary))[::-1]
    theory_rows = (summary["choice"] == "theory").to_numpy() if "choice" in summary else np.ones(len(y), bool)
    err = np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]])
    ax.errorbar(
        summary["mean"],
        y,
        xerr=None if np.all(np.isnan(err)) else np.clip(err, 0, None),
        fmt="none",
        ecolor="0.3",
        elinewidth=0.9,
    )
    mean = summary["mean"].to_numpy()
    ax.plot(mean[theory_rows], y[theory_rows], "o", color="0.1", ms=4, zorder=3)
    ax.plot(mean[~theory_rows], y[~theory_rows], "o", mfc="white", color="0.1", ms=4, zorder=3)
    for yi, n in zip(y, summary["n_settings"], strict=True):
        ax.annotate(
            f"{n}",
            (1.0, yi),
            xycoords=("axes fraction", "data"),
            xytext=(2, 0),
            textcoords="offset points",
            va="center",
            fontsize=style.FONT_SIZE - 2,
            color="0.4",
        )
    ax.axvline(0.0, color="0.5", lw=0.7)
    ax.set_yticks(y, labels)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(r"within-setting Spearman $\rho$ (term, gap)")
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    path = data.sims_file(ctx, "bound_vs_gap.csv")
    frame = data.read_table(path, REQUIRED)
    shown = (
        frame[frame["choice"] == CHOICE] if "choice" in frame and (frame["choice"] == CHOICE).any() else frame
    )
    fig, axes = plt.subplots(
        1,
        2,
        figsize=style.figsize("double", 0.42),
        layout="constrained",
        gridspec_kw={"width_ratios": [1.35, 1]},
    )
    plot_bound_vs_gap(shown, ax=axes[0])
    axes[0].set_title(
        "(a) every class and setting" + (f", {CHOICE} margins" if shown is not frame else ""), loc="left"
    )
    notes = []
    if "setting" in frame:
        within = within_setting(frame, seed=ctx.seed)
        plot_within_setting(within, ax=axes[1])
        axes[1].set_title("(b) within a setting (n settings at right)", loc="left")
        notes.append(
            "Within-setting Spearman, mean [95% CI]: "
            + "; ".join(
                f"{', '.join(str(r[k]) for k in GROUP_KEYS if k in within)} {r['mean']:+.2f} "
                f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
                for _, r in within.iterrows()
            )
            + "."
        )
    else:
        axes[1].set_axis_off()
        within = None
    rho = spearmanr(shown["margin_term"], shown["gen_gap"]).statistic
    below = float((shown["gen_gap"] <= shown["margin_term"]).mean())
    notes.insert(
        0,
        f"Panel (a): {len(shown)} class-settings, pooled Spearman rho = {rho:.2f}; the gap is at "
        f"most the term for {below:.0%} of them.",
    )
    return Made(fig=fig, data_files=[path, *data.sims_manifest(ctx)], notes=notes, table=within)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
