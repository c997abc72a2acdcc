"""Figure 9: how well each margin rule predicts the empirically optimal margins (Gaussian mixtures).

Reads ``RESULTS/sims/rule_scores.csv`` and ``RESULTS/sims/margin_vs_separation.csv`` from
``mr2 simulate --preset margin-vs-separation`` (``sims.scores``): per (K, margin form, criterion, d,
n) and rule (the bound's a_k^(1/3), the Gaussian oracle, LDAM's n_k^(-1/4), uniform), the mean
absolute error of the predicted log(gamma_k / gamma_ref) against the empirical optimum and the share of
settings whose 95% CI of the optimum holds the prediction; and the same error against the separation of
the classes (mean norm mu), from the per-setting rows.

Run: ``python -m paper_figs.fig9_rule_scores --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mr2_core.contracts import SIMS_COLUMNS, SIMS_RULES
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 9
NAME = "rule_scores"
TITLE = "Margin rules scored against the empirically optimal margins (sims)"
CAPTION = (
    "Gaussian mixtures: how far each rule's predicted log-ratio of margins log(gamma_k/gamma_ref) lies "
    "from the empirically optimal one. Rules: the bound's a_k^(1/3) (theory.optimal_margins), the "
    "Gaussian oracle's error-optimal boundary under the panel's criterion (theory.oracle; its ratio of "
    "distances taken as the ratio of loss margins), LDAM's n_k^(-1/4) and uniform margins (both 0 on "
    "these balanced classes). Columns: margin form x criterion. (a) Mean absolute error per regime "
    "(one point per K, d, n; colour: K), bar: mean over regimes; (b) share of settings whose 95% "
    "bootstrap CI of the optimum holds the prediction; (c) mean absolute error against the distance "
    "between the class means (sigma_ref = 1; K = 2 circles, K = 5 squares), pooled over d, n and "
    "variance ratios. MAE = mean |predicted - optimal| log-ratio (nats). Settings where every rule "
    "predicts 0 (variance ratio 1) are left out. LDAM (dashed) lies on uniform."
)

SCORE_COLUMNS = SIMS_COLUMNS["rule_scores.csv"]
MARGIN_COLUMNS = SIMS_COLUMNS["margin_vs_separation.csv"]
CRITERIA = ("balanced", "worst_class")
CRITERION_TITLES = {"balanced": "balanced err.", "worst_class": "worst-class err."}
METRIC_LABELS = {"mae": "MAE (nats)", "in_ci": "share in CI", "bias": "bias (nats)"}
LINE_STYLES = {"ldam": (0, (2, 2))}  # LDAM equals uniform on balanced classes: dashed, drawn on top
RULE_LABELS = {"bound": "bound", "oracle": "oracle", "ldam": "LDAM", "uniform": "uniform"}


def _rules(frame: Any) -> list[str]:
    return [r for r in SIMS_RULES if r in set(frame["rule"])]


def plot_rule_scores(
    frame: Any, *, metric: str = "mae", ax: Any = None, colors: dict | None = None, legend: bool = True
) -> tuple[Any, Any]:
    """One panel: ``metric`` of each rule, one point per regime of ``rule_scores.csv`` rows.

    Args:
        frame: rows of ``rule_scores.csv`` for one (margin form, criterion) (columns as in
            docs/CONTRACTS.md).
        metric: a score column (``mae``, ``in_ci``, ``bias``).
        ax: axes to draw on; a new single-column figure when None.
        colors: K -> colour (the palette in order when None).
        legend: draw the legend of K.
    """
    if metric not in frame.columns:
        raise ValueError(f"metric={metric!r}: expected a column of rule_scores.csv, e.g. 'mae' or 'in_ci'")
    fig, ax = style.new_axes(ax)
    rules = _rules(frame)
    ks = sorted(frame["K"].unique())
    colors = colors or dict(zip(ks, style.palette(len(ks)), strict=True))
    rng = np.random.default_rng(0)  # horizontal jitter only: it does not touch any plotted value
    for i, rule in enumerate(rules):
        sub = frame[(frame["rule"] == rule) & (frame["settings"] > 0)]
        vals = sub[metric].to_numpy(dtype=float)
        if vals.size:
            ax.bar(i, np.nanmean(vals), width=0.6, color="0.88", edgecolor="0.6", lw=0.6, zorder=1)
        for k in ks:
            v = sub.loc[sub["K"] == k, metric].to_numpy(dtype=float)
            x = i + rng.uniform(-0.2, 0.2, v.size)
            ax.plot(x, v, "o", ms=2.5, color=colors[k], alpha=0.85, label=f"K = {k}" if i == 0 else None)
    ax.set_xticks(range(len(rules)), [RULE_LABELS.get(r, r) for r in rules])
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if metric == "in_ci":
        ax.set_ylim(-0.03, 1.03)
    else:
        ax.set_ylim(bottom=0)
    if legend:
        ax.legend(loc="upper left", handlelength=1.0)
    return fig, ax


def plot_error_vs_separation(
    frame: Any, *, ax: Any = None, colors: dict | None = None, legend: bool = True
) -> tuple[Any, Any]:
    """One panel: mean |predicted - optimal| log-ratio of each rule against the distance between the
    class means (column ``separation``).

    Args:
        frame: rule scores grouped by ("K", "separation") for one (form, criterion): columns K,
            separation, rule, mae, settings (``sims.scores.rule_scores(..., by=(..., "separation"))``).
        ax: axes to draw on; a new single-column figure when None.
        colors: rule -> colour (the palette in order when None).
        legend: draw the legend of rules.
    """
    fig, ax = style.new_axes(ax)
    rules = _rules(frame)
    colors = colors or dict(zip(rules, style.palette(len(rules)), strict=True))
    markers = {k: m for k, m in zip(sorted(frame["K"].unique()), "os^D", strict=False)}
    for rule in rules:
        for k, mk in markers.items():
            sub = frame[(frame["rule"] == rule) & (frame["K"] == k) & (frame["settings"] > 0)]
            sub = sub.sort_values("separation")
            if sub.empty:
                continue
            label = RULE_LABELS.get(rule, rule) if k == min(markers) else None
            ls = LINE_STYLES.get(rule, "-")
            ax.plot(sub["separation"], sub["mae"], marker=mk, ms=3, lw=1.0, ls=ls, color=colors[rule],
                    label=label, zorder=3 if rule in LINE_STYLES else 2)  # fmt: skip
    ax.set(xlabel=r"$\|\mu_k - \mu_{ref}\|$", ylabel=METRIC_LABELS["mae"])
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(loc="upper right", handlelength=1.2)
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    from sims.scores import rule_scores

    path = data.sims_file(ctx, "rule_scores.csv")
    scores = data.read_table(path, SCORE_COLUMNS)
    rows_path = data.sims_file(ctx, "margin_vs_separation.csv")
    margins = data.read_table(rows_path, MARGIN_COLUMNS)
    by_mu = rule_scores(margins, by=("K", "loss", "criterion", "separation"))
    cols = [
        (loss, c)
        for loss in sorted(scores["loss"].unique())
        for c in CRITERIA
        if c in set(scores["criterion"])
    ]
    ks = sorted(scores["K"].unique())
    k_colors = dict(zip(ks, style.palette(len(ks)), strict=True))
    rules = _rules(scores)
    rule_colors = dict(zip(rules, style.palette(len(ks) + len(rules))[len(ks) :], strict=True))
    fig, axes = plt.subplots(
        3, len(cols), squeeze=False, layout="constrained", sharey="row", figsize=(style.DOUBLE_COLUMN, 5.4)
    )
    for c, (loss, crit) in enumerate(cols):
        sub = scores[(scores["loss"] == loss) & (scores["criterion"] == crit)]
        plot_rule_scores(sub, metric="mae", ax=axes[0][c], colors=k_colors, legend=False)
        plot_rule_scores(sub, metric="in_ci", ax=axes[1][c], colors=k_colors, legend=False)
        mu_sub = by_mu[(by_mu["loss"] == loss) & (by_mu["criterion"] == crit)]
        plot_error_vs_separation(mu_sub, ax=axes[2][c], colors=rule_colors, legend=False)
        axes[0][c].set_title(
            f"{loss}, {CRITERION_TITLES.get(crit, crit)}", loc="left", fontsize=style.FONT_SIZE - 1
        )
        for r in range(3):
            axes[r][c].tick_params(labelsize=style.FONT_SIZE - 2)
            if c > 0:
                axes[r][c].set_ylabel("")
    for r in (0, 2):  # the panels froze their own y-limits; rescale each shared row to all its data
        axes[r][0].set_autoscaley_on(True)
        axes[r][0].autoscale_view(scalex=False)
        axes[r][0].set_ylim(bottom=0)
    for r, letter in enumerate("abc"):
        axes[r][0].set_ylabel(f"({letter}) " + axes[r][0].get_ylabel())
    handles, labels = [], []
    for ax in (axes[0][0], axes[2][0]):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), handlelength=1.2)
    notes = [_summary_note(scores)]
    return Made(fig=fig, data_files=[path, rows_path, *data.sims_manifest(ctx)], notes=notes, table=scores)


def _summary_note(scores: Any) -> str:
    """Per (form, criterion): the rule with the smallest settings-weighted MAE, and its MAE."""
    from sims.verdict import rule_verdict

    rv = rule_verdict(scores, by=("loss", "criterion"))
    parts = [
        f"{r['loss']}, {CRITERION_TITLES.get(r['criterion'], r['criterion']).replace(' err.', '')}: "
        f"{RULE_LABELS.get(r['best'], r['best'])} (MAE {r['best_mae']:.2f}, next {r['runner_up']} "
        f"+{r['margin']:.2f})"
        for _, r in rv.iterrows()
    ]
    return "Smallest error, pooled over K, d and n: " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
