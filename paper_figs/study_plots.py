"""Every plot of a training study, in one place: the paper's figures 1 and 2 and ``mr2 report``'s plots.

Each plot function takes ``ax=`` (a new figure of the paper's size when None) and returns
``(fig, ax)``; losses keep their fixed colours (``paper_figs.style.loss_color``, from
``mr2_core.contracts``); every interval drawn comes from ``mr2_core.stats.interval_estimates`` through the
tables of ``mr2.report`` (``class_intervals``, ``paired_class_differences``, ``summary``,
``spread_error_correlation``): no plot computes a CI of its own.

Inputs are the tables of :mod:`mr2.report`: the long per-class table (``per_class_table``), the
per-class intervals, the summary table and the correlation table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mr2_core.contracts import METRIC_LABELS, SUMMARY_METRICS, loss_label
from paper_figs import labels, style

__all__ = [
    "STAT_LABELS",
    "plot_sorted_class_accuracy",
    "plot_class_accuracy",
    "plot_paired_class_difference",
    "plot_paired_differences",
    "plot_spread_vs_error",
    "plot_correlations",
    "draw_report_figures",
]

# mr2.report.spread_error_correlation's statistic labels, as mathtext
STAT_LABELS = {
    "a_k": r"$a_k$",
    "s_k²": r"$s_k^2$",
    "‖mu_k‖²": r"$\|\mu_k\|^2$",
    "s_k²/‖mu_k‖²": r"$s_k^2/\|\mu_k\|^2$",
    "centred a_k": r"$\|\mu_k-\bar\mu\|^2+s_k^2$",
    "separation": r"$s_k^2/\min_j\|\mu_k-\mu_j\|^2$",
    "oracle share": r"$s_k/(s_k+s_j)$",
}
REPORT_DPI = 120  # PNG resolution of mr2 report's plots (the paper's figures use style.DPI)


def _errorbars(mean: Any, low: Any, high: Any) -> np.ndarray | None:
    """``yerr``/``xerr`` for matplotlib from a point and its CI; None when there is no CI (1 seed)."""
    mean, low, high = (np.asarray(v, dtype=float) for v in (mean, low, high))
    if np.all(np.isnan(low)):
        return None
    return np.clip(np.vstack([mean - low, high - mean]), 0.0, None)


def _unit(values: Any) -> np.ndarray:
    """An accuracy's interval end drawn within [0, 1]: a t interval over few seeds can pass the range
    of an accuracy, and the part outside it holds no possible value (the coverage is unchanged)."""
    return np.clip(np.asarray(values, dtype=float), 0.0, 1.0)


def plot_sorted_class_accuracy(
    long: Any, *, ci: str = "t", rng: Any = None, n_boot: int = 2000, ax: Any = None
) -> tuple[Any, Any]:
    """Per-class test accuracy sorted within each run from its worst class to its best, mean over
    seeds per loss with a band for the 95% CI over seeds (none with one seed).

    Args:
        long: ``mr2.report.per_class_table``'s table.
        ci, rng, n_boot: the interval (``mr2_core.stats.interval_estimates``).
    """
    from mr2_core.stats import interval_estimates

    fig, ax = style.new_axes(ax)
    losses = list(dict.fromkeys(long["loss"]))
    scores = {}
    for loss in losses:
        wide = long[long["loss"] == loss].pivot(index="seed", columns="class_index", values="accuracy")
        scores[loss] = np.sort(wide.to_numpy(), axis=1)
    table = interval_estimates(
        scores, method=ci, rng=rng, n_boot=n_boot, key_name="loss", index_names=["rank"]
    )
    for loss in losses:
        s = table[table["loss"] == loss]
        rank = s["rank"].to_numpy() + 1
        color = style.loss_color(loss)
        n = int(s["n_runs"].iloc[0])
        ax.plot(rank, s["point"], marker="o", color=color, label=f"{loss_label(loss)} ({n} seeds)")
        if n >= 2:
            ax.fill_between(rank, _unit(s["ci_low"]), _unit(s["ci_high"]), color=color, alpha=0.2, lw=0)
    ax.set_xlabel("class rank (1 = worst class of the run)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Sorted per-class accuracy (mean over seeds, 95% CI)", loc="left")
    ax.legend(loc="lower right")
    return fig, ax


def _order(intervals: Any, baseline: str) -> list[int]:
    ref = intervals[intervals["loss"] == baseline]
    ref = ref if len(ref) else intervals[intervals["loss"] == intervals["loss"].iloc[0]]
    return list(ref.sort_values("mean")["class_index"])


def plot_class_accuracy(
    intervals: Any, order: list[int] | None = None, *, baseline: str = "ce", ax: Any = None
) -> tuple[Any, Any]:
    """Per-class accuracy with CIs, one marker per loss, classes left to right in ``order``.

    Args:
        intervals: ``mr2.report.class_intervals``'s table (``loss, class_index, class_name, mean,
            ci_low, ci_high, n_seeds``).
        order: class indices left to right; default the baseline's mean accuracy, worst first.
        baseline: the loss that orders the classes by default.
    """
    fig, ax = style.new_axes(ax)
    order = _order(intervals, baseline) if order is None else list(order)
    losses = list(dict.fromkeys(intervals["loss"]))
    x = np.arange(len(order))
    width = 0.7 / max(len(losses), 1)
    for i, loss in enumerate(losses):
        s = intervals[intervals["loss"] == loss].set_index("class_index").loc[order]
        off = (i - (len(losses) - 1) / 2) * width
        ax.errorbar(
            x + off,
            s["mean"],
            yerr=_errorbars(s["mean"], _unit(s["ci_low"]), _unit(s["ci_high"])),
            fmt="o",
            color=style.loss_color(loss),
            label=f"{loss_label(loss)} ({int(s['n_seeds'].iloc[0])} seeds)",
            ms=3.5,
            elinewidth=1.0,
        )
    names = intervals.drop_duplicates("class_index").set_index("class_index")["class_name"]
    ax.set_xticks(x, [names[c] for c in order], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    ax.set_title(f"per-class accuracy, sorted by {loss_label(baseline)}", loc="left")
    return fig, ax


def plot_paired_class_difference(
    diff: Any, order: list[int], loss: str, *, baseline: str = "ce", ax: Any = None
) -> tuple[Any, Any]:
    """``loss`` - ``baseline`` per class in points with CIs, classes in ``order``; a zero line.

    Args:
        diff: ``mr2.report.paired_class_differences``'s table.
    """
    fig, ax = style.new_axes(ax)
    d = diff.set_index("class_index").loc[order]
    x = np.arange(len(order))
    ax.axhline(0.0, color="0.3", lw=0.8)
    err = _errorbars(d["diff"], d["ci_low"], d["ci_high"])
    ax.errorbar(
        x,
        100 * d["diff"],
        yerr=None if err is None else 100 * err,
        fmt="s",
        color=style.loss_color(loss),
        ms=3.5,
        elinewidth=1.0,
    )
    ax.set_xticks(x, list(d["class_name"]), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_ylabel(f"{loss_label(loss)} − {loss_label(baseline)} (points)")
    ax.set_title(f"paired difference, {int(d['n_seeds'].iloc[0])} seeds", loc="left")
    return fig, ax


def plot_paired_differences(
    table: Any,
    *,
    baseline: str = "ce",
    selection: str | None = None,
    metrics: list[str] | None = None,
    alpha: float = 0.05,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Paired difference to the baseline per metric and loss, in points, with the summary's CIs (a
    forest plot); a hollow marker is a difference that is not significant after Holm's adjustment.

    Args:
        table: ``mr2.report.summary``'s table.
        selection: the selection rule to draw (default the table's first).
        metrics: the metrics to draw, top to bottom (default every one but the std over classes).
        alpha: level of the Holm-adjusted test that fills a marker.
    """
    fig, ax = style.new_axes(ax)
    rule = table["selection"].iloc[0] if selection is None else selection
    sub = table[(table["selection"] == rule) & (table["loss"] != baseline) & table["diff"].notna()]
    losses = list(dict.fromkeys(sub["loss"]))
    metrics = [m for m in SUMMARY_METRICS if m != "class_accuracy_std"] if metrics is None else list(metrics)
    height = 0.8 / max(1, len(losses))
    for i, loss in enumerate(losses):
        rows = sub[sub["loss"] == loss].set_index("metric").reindex(metrics)
        y = np.arange(len(metrics))[::-1] + ((len(losses) - 1) / 2 - i) * height
        err = _errorbars(rows["diff"], rows["diff_ci_low"], rows["diff_ci_high"])
        color = style.loss_color(loss)
        ax.errorbar(
            100 * rows["diff"],
            y,
            xerr=None if err is None else 100 * err,
            fmt="none",
            ecolor=color,
            elinewidth=1.0,
        )
        sig = (rows["p_holm"] < alpha).to_numpy()
        x = 100 * rows["diff"].to_numpy()
        ax.plot(x[sig], y[sig], "o", color=color, ms=4)
        ax.plot(x[~sig], y[~sig], "o", mfc="white", color=color, ms=4)
        ax.plot([], [], "o", color=color, label=loss_label(loss))  # one legend entry per loss
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_yticks(np.arange(len(metrics))[::-1], [METRIC_LABELS[m] for m in metrics])
    ax.set_xlabel(f"paired difference to {loss_label(baseline)} (points, 95% CI)")
    ax.set_title(f"selection: {rule}; filled: Holm-adjusted p < {alpha:g}", loc="left")
    if losses:
        ax.legend(loc="best")
    return fig, ax


def _fmt_rho(point: float, low: float, high: float) -> str:
    if np.isnan(point):
        return r"$\rho$ undefined"
    if np.isnan(low):
        return rf"$\rho$ = {point:.2f} (1 seed)"
    return rf"$\rho$ = {point:.2f} [{low:.2f}, {high:.2f}]"


def plot_spread_vs_error(
    long: Any,
    loss: str,
    *,
    rho: tuple[float, float, float] | None = None,
    ci: str = "t",
    rng: Any = None,
    n_boot: int = 2000,
    ax: Any = None,
) -> tuple[Any, Any]:
    """Relative spread a_k / mean a (x) against test error (y) for ``loss``: a labelled point per class,
    mean over seeds with 95% CIs over seeds on both axes (``mr2.report.class_intervals``).

    Args:
        long: ``mr2.report.per_class_table``'s table.
        loss: which loss's runs to draw.
        rho: (point, low, high) of the Spearman correlation, shown in the title when given.
        ci, rng, n_boot: the interval (``mr2_core.stats.interval_estimates``).
    """
    from mr2.report import class_intervals
    from mr2_core.checks import bad

    fig, ax = style.new_axes(ax)
    sub = long[long["loss"] == loss]
    if sub.empty:
        raise bad("loss", loss, f"one of the study's losses {sorted(set(long['loss']))}")
    if sub["spread"].isna().any():
        raise bad("loss", loss, "a loss whose runs' metrics.json hold class_spread (every run)")
    err = class_intervals(sub, value="error", ci=ci, rng=rng, n_boot=n_boot).set_index("class_index")
    spr = class_intervals(sub, value="rel_spread", ci=ci, rng=rng, n_boot=n_boot).set_index("class_index")
    err = err.loc[spr.index]
    xerr = _errorbars(spr["mean"], spr["ci_low"], spr["ci_high"])
    yerr = _errorbars(err["mean"], _unit(err["ci_low"]), _unit(err["ci_high"]))
    ax.errorbar(
        spr["mean"],
        err["mean"],
        xerr=xerr,
        yerr=yerr,
        fmt="o",
        color=style.loss_color(loss),
        ms=3.5,
        elinewidth=0.8,
    )
    ax.set(xlabel=r"relative spread $a_k / \bar a$", ylabel="test error")
    title = loss_label(loss) if rho is None else f"{loss_label(loss)}: {_fmt_rho(*rho)}"
    ax.set_title(title, loc="left")
    # labels last, once the limits are final: each takes the nearby place that covers least data
    labels.place_labels(
        ax,
        spr["mean"].to_numpy(),
        err["mean"].to_numpy(),
        err["class_name"].to_numpy(),
        xerr=xerr,
        yerr=yerr,
    )
    return fig, ax


def plot_correlations(corr: Any, *, ax: Any = None) -> tuple[Any, Any]:
    """Spearman rho of each feature statistic with the class error, per loss, with CIs (a forest).

    Args:
        corr: ``mr2.report.spread_error_correlation``'s table.
    """
    fig, ax = style.new_axes(ax)
    stats = [s for s in STAT_LABELS if s in set(corr["statistic"])]
    losses = list(dict.fromkeys(corr["loss"]))
    height = 0.7 / max(len(losses), 1)
    for i, loss in enumerate(losses):
        sub = corr[corr["loss"] == loss].set_index("statistic").reindex(stats)
        y = np.arange(len(stats))[::-1] + (len(losses) - 1) / 2 * height - i * height
        ax.errorbar(
            sub["rho"],
            y,
            xerr=_errorbars(sub["rho"], sub["ci_low"], sub["ci_high"]),
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
    # beside the panel, not inside it: inside, the legend's markers read as data points at rho -0.85
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=1.0, borderaxespad=0.0)
    return fig, ax


def draw_report_figures(rep: Any, out: str | Path) -> dict[str, Path]:
    """The plots of ``mr2 report`` as PNGs in ``out``: sorted per-class accuracy, per-class accuracy
    by class, paired differences (one per selection rule) and spread against error (the baseline's).

    Args:
        rep: a ``mr2.report.StudyReport`` (its CI method and seed are reused).
        out: folder for the PNG files.

    Returns:
        {name: path} of the files written, in the report's order.
    """
    import matplotlib.pyplot as plt

    from mr2.report import class_intervals
    from mr2_core.io import atomic_open

    style.set_theme()
    gen = None if rep.ci == "t" else np.random.default_rng(rep.seed or 0)
    opts = {"ci": rep.ci, "rng": gen, "n_boot": rep.n_boot}
    baseline = rep.baseline
    draw = {
        "sorted_class_accuracy": lambda ax: plot_sorted_class_accuracy(rep.long, ax=ax, **opts),
        "class_accuracy": lambda ax: plot_class_accuracy(
            class_intervals(rep.long, **opts), baseline=baseline, ax=ax
        ),
    }
    table = rep.table
    shown = [m for m in rep.endpoints if m != "class_accuracy_std"]
    for rule in rep.rules:
        if table[(table["selection"] == rule) & (table["loss"] != baseline) & table["p_holm"].notna()].empty:
            continue  # nothing paired to draw
        name = "paired_differences" if len(rep.rules) == 1 else f"paired_differences_{rule}"
        draw[name] = lambda ax, r=rule: plot_paired_differences(
            table, baseline=baseline, selection=r, metrics=shown, alpha=rep.alpha, ax=ax
        )
    ref = rep.long[rep.long["loss"] == baseline]
    if len(ref) and ref["spread"].notna().all():
        row = rep.corr[(rep.corr["loss"] == baseline) & (rep.corr["statistic"] == "a_k")]
        rho = tuple(row[["rho", "ci_low", "ci_high"]].iloc[0]) if len(row) else None
        draw["spread_vs_error"] = lambda ax: plot_spread_vs_error(rep.long, baseline, rho=rho, ax=ax, **opts)
    paths = {}
    for name, plot in draw.items():
        fig, ax = plt.subplots(figsize=style.figsize("double", 0.55), layout="constrained")
        try:
            plot(ax)
            paths[name] = Path(out) / f"{name}.png"
            with atomic_open(paths[name], "wb") as fh:
                fig.savefig(fh, format="png", dpi=REPORT_DPI)
        finally:
            plt.close(fig)
    return paths
