"""Figure 8: the linear-probe study, where the bound's assumption of a fixed feature map holds.

Reads the probe study (``RUNS/fmnist-probe``, or ``digits-probe`` under ``--quick``; made with
``mr2 train --preset fmnist-probe`` when missing): on one frozen backbone pretrained with CE on the
other half of the training split, only the head is trained, with CE and with MR²'s logit margins
built on each statistic (``mr2-*``; ``-e12``: exponent 1/2 instead of the theory's 1/3;
``mr2-shuffled``: the placebo, the second-moment statistic permuted across classes).

(a) The effect on the worst class: each method minus CE on the same seeds (points of accuracy), mean
with its 95% paired Student-t CI; a filled marker is significant after Holm's correction over the
report's comparisons (``mr2.report.summary``). (b) The manipulation check: Spearman's rho between
the margins a run ends with and the class errors of the CE probe of the same seed, mean over seeds
with a t CI. rho > 0: the rule gives the hard classes the larger margins (the placebo should not).

Run: ``python -m paper_figs.fig8_probe_effects --results results --out results/figures``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mr2_core.contracts import BASELINE_LOSS
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 8
NAME = "probe_effects"
TITLE = "Linear probes on frozen features: does any margin statistic help the worst class?"
CAPTION = (
    "Linear probes on one frozen backbone (pretrained with CE on the other half of the training split): "
    "only the head trains, with CE or with MR2's logit margins built on each statistic. (a) Worst-class "
    "test accuracy of each method minus CE on the same seeds (points), mean with its 95% paired "
    "Student-t CI; filled: significant after Holm's correction. (b) Manipulation check: Spearman rho "
    "between a run's final margins and the class errors of the CE probe of the same seed, mean over "
    "seeds with a 95% t CI; rho > 0 means the hard classes received the larger margins. mr2-shuffled "
    "is the placebo (the statistic permuted across classes); -e12 uses exponent 1/2 instead of 1/3."
)
METRIC = "worst_class_accuracy"
ALPHA = 0.05


def manipulation_check(runs):
    """Per method, Spearman's rho between its runs' final margins and the CE probe's class errors on
    the same seed, summarised over seeds (``mr2_core.stats.interval_estimates``, t)."""
    import pandas as pd
    from scipy.stats import spearmanr

    from mr2_core.stats import interval_estimates

    ce = runs[runs["loss"] == BASELINE_LOSS].set_index("seed")
    rhos: dict[str, list[float]] = {}
    for _, r in runs[runs["loss"] != BASELINE_LOSS].iterrows():
        margins = r.get("margins")
        if not isinstance(margins, list) or r["seed"] not in ce.index:
            continue
        err = 1.0 - np.asarray(ce.loc[r["seed"], "per_class_accuracy"], dtype=float)
        rho = spearmanr(np.asarray(margins, dtype=float), err).statistic
        if np.isfinite(rho):
            rhos.setdefault(r["loss"], []).append(float(rho))
    if not rhos:
        return pd.DataFrame(columns=["loss", "n_runs", "point", "ci_low", "ci_high"])
    table = interval_estimates({k: np.asarray(v) for k, v in rhos.items()}, key_name="loss")
    return table


def plot_probe_effects(table, *, n_paired: int, axes=None):
    """Draw panels (a) and (b) from the figure's table (the CSV beside it); return ``(fig, axes)``.

    Args:
        table: one row per method: ``loss``, ``diff``, ``diff_ci_low``, ``diff_ci_high`` (accuracy,
            method - CE), ``p_holm``, ``margin_error_rho``, ``rho_ci_low``, ``rho_ci_high``.
        n_paired: paired seeds per comparison (for the title).
        axes: two axes sharing y, or None for a new double-column figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if axes is None:
        size = style.figsize("double", 0.42)
        fig, axes = plt.subplots(1, 2, figsize=size, layout="constrained", sharey=True)
    fig = axes[0].figure
    effect = table.set_index("loss")
    methods = list(effect.index)
    y = np.arange(len(methods))[::-1]
    for ax, values, low, high, filled in (
        (axes[0], 100 * effect["diff"], 100 * effect["diff_ci_low"], 100 * effect["diff_ci_high"],
         effect["p_holm"] < ALPHA),
        (axes[1], effect["margin_error_rho"], effect["rho_ci_low"], effect["rho_ci_high"], None),
    ):  # fmt: skip
        ax.axvline(0.0, color="0.3", lw=0.8)
        for yi, m in zip(y, methods, strict=True):
            v, lo, hi = values[m], low[m], high[m]
            color = style.loss_color("mr2" if m.startswith("mr2") else m)
            if "shuffled" in m:
                color = "0.5"
            face = color if (filled is None or bool(filled[m])) else "white"
            xerr = None if not (np.isfinite(lo) and np.isfinite(hi)) else [[v - lo], [hi - v]]
            ax.errorbar(v, yi, xerr=xerr, fmt="o", ms=4, color=color, mfc=face, elinewidth=1.0)
    axes[0].set_yticks(y, methods)
    axes[0].set(xlabel="worst-class accuracy − CE (points)")
    axes[0].set_title(f"(a) worst class, {n_paired} paired seeds", loc="left")
    axes[1].set(xlabel=r"Spearman $\rho$(margin, CE class error)")
    axes[1].set_title("(b) larger margins on hard classes?", loc="left")
    # the markers' fill is a result of panel (a): say so on the figure, not only in the caption
    key = {"ls": "none", "marker": "o", "ms": 4, "color": "0.2"}
    handles = [
        Line2D([], [], mfc="0.2", label=f"(a) filled: significant, Holm p < {ALPHA:g}", **key),
        Line2D([], [], mfc="white", label="(a) open: not significant", **key),
    ]
    if any("shuffled" in m for m in methods):
        handles.append(
            Line2D([], [], mfc="0.5", **{**key, "color": "0.5"}, label="grey: placebo (mr2-shuffled)")
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), handlelength=1.0)
    return fig, axes


def make(ctx: FigureContext) -> Made:
    from mr2.report import load_study, summary

    study = data.probe_study(ctx)
    runs = load_study(study)
    table = summary(runs, selection=[_rule(runs)])
    effect = table[(table["metric"] == METRIC) & (table["loss"] != BASELINE_LOSS)].set_index("loss")
    check = manipulation_check(runs).set_index("loss")
    n = int(effect["n_paired"].min()) if len(effect) else 0
    notes = [f"Study {study}; {n} paired seeds; dataset {', '.join(sorted(set(runs['dataset'])))}."]
    for m in effect.index:
        r = effect.loc[m]
        notes.append(
            f"{m}: {100 * r['diff']:+.2f} points [{100 * r['diff_ci_low']:+.2f}, "
            f"{100 * r['diff_ci_high']:+.2f}], Holm p = {r['p_holm']:.3g}; {r['verdict']}"
        )
    out = effect.reset_index()[["loss", "n_paired", "diff", "diff_ci_low", "diff_ci_high", "p_holm", "mde",
                                "tost_bound", "verdict"]]  # fmt: skip
    out = out.merge(check.reset_index().rename(columns={"point": "margin_error_rho", "ci_low": "rho_ci_low",
                                                        "ci_high": "rho_ci_high", "n_runs": "rho_n"}),
                    on="loss", how="left")  # fmt: skip
    fig, _ = plot_probe_effects(out, n_paired=n)
    return Made(fig=fig, data_files=[Path(p) for p in runs["path"]], notes=notes, table=out)


def _rule(runs) -> str:
    """The selection rule the figure reports: the runs' configured one (best validation accuracy)."""
    from mr2.study import selection_rules

    rules = selection_rules(runs)
    return "accuracy" if "accuracy" in rules else rules[0]


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
