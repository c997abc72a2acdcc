"""Figure 2: each class's feature spread a_k against its test error, on a trained network's features.

Reads ``class_spread`` (a_k = ||mu_k||^2 + s_k^2 of the final model's training features, L2) and
``per_class_accuracy`` from ``RUNS/<study>/<loss>/seed<k>/metrics.json``. The bound says classes with
more spread need larger margins because they are harder; this figure asks whether the spread does
pick out the hard classes. One panel per loss; a point per class (mean over seeds, bars = 95%
bootstrap CI over seeds). Spreads are divided by the run's mean spread, since feature scales differ
between models. The Spearman correlation is computed per seed and summarised by its mean with a
bootstrap CI over seeds.

Run: ``python -m paper_figs.fig2_spread_vs_error --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main
from paper_figs.fig1_class_accuracy import LOSSES, class_accuracy_ci, label

NUMBER = 2
NAME = "spread_vs_error"
TITLE = "Class feature spread against class error (real features)"
CAPTION = (
    "Feature spread a_k = ||mu_k||^2 + s_k^2 of each class (training features of the trained network, "
    "divided by the mean over classes) against the class's test error; one point per class, mean over "
    "seeds with 95% bootstrap CIs over seeds on both axes. rho: Spearman correlation between spread and "
    "error, mean over seeds with its 95% bootstrap CI. A positive rho means the bound's spread "
    "identifies the hard classes."
)


def spearman_per_seed(frame: Any) -> Any:
    """Spearman rho between ``spread`` and ``error`` over classes, per (loss, seed).

    Returns:
        pandas frame ``loss, seed, rho`` (rho NaN when a run's spreads or errors are constant).
    """
    import pandas as pd
    from scipy.stats import spearmanr

    rows = []
    for (loss, seed), sub in frame.groupby(["loss", "seed"], sort=False):
        ok = sub["spread"].nunique() > 1 and sub["error"].nunique() > 1
        rho = spearmanr(sub["spread"], sub["error"]).statistic if ok else np.nan
        rows.append({"loss": loss, "seed": seed, "rho": float(rho)})
    return pd.DataFrame(rows)


def rho_summary(rhos: Any, *, seed: int) -> dict[str, tuple[float, float, float, int]]:
    """loss -> (mean rho, CI low, CI high, seeds); the CI is NaN below 2 seeds."""
    from mr2.stats import bootstrap_ci

    out = {}
    for loss, sub in rhos.groupby("loss", sort=False):
        r = sub["rho"].dropna().to_numpy()
        if r.size >= 2:
            point, (low, high) = bootstrap_ci(r, rng=seed)
        elif r.size == 1:
            point, low, high = float(r[0]), np.nan, np.nan
        else:
            point = low = high = np.nan
        out[loss] = (float(point), float(low), float(high), int(r.size))
    return out


def _fmt_rho(point: float, low: float, high: float) -> str:
    if np.isnan(point):
        return r"$\rho$ undefined"
    if np.isnan(low):
        return rf"$\rho$ = {point:.2f} (1 seed)"
    return rf"$\rho$ = {point:.2f} [{low:.2f}, {high:.2f}]"


def plot_spread_vs_error(frame: Any, loss: str, *, seed: int = 0, ax: Any = None) -> tuple[Any, Any]:
    """One panel: relative spread (x) against test error (y) for ``loss``, a labelled point per class.

    Args:
        frame: long table from :func:`paper_figs.data.load_study`.
        loss: which loss's runs to draw.
        seed: seed of the bootstrap CIs.
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
    point, low, high, _ = rho_summary(spearman_per_seed(sub), seed=seed)[loss]
    ax.set(xlabel=r"relative spread $a_k / \bar a$", ylabel="test error")
    ax.set_title(f"{label(loss)}: {_fmt_rho(point, low, high)}", loc="left")
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    study = data.training_study(ctx, LOSSES)
    frame, files = data.load_study(study, LOSSES)
    losses = [loss for loss in LOSSES if loss in set(frame["loss"])]
    fig, axes = plt.subplots(
        1,
        len(losses),
        figsize=style.figsize("double", 0.38),
        layout="constrained",
        sharey=True,
        squeeze=False,
    )
    for ax, loss in zip(axes[0], losses, strict=True):
        plot_spread_vs_error(frame, loss, seed=ctx.seed, ax=ax)
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    rhos = spearman_per_seed(frame)
    n_seeds = int(frame.groupby("loss")["seed"].nunique().min())
    dataset = ", ".join(sorted(set(frame["dataset"])))
    notes = [f"Dataset: {dataset}; study {study}; {n_seeds} seed(s) per loss."]
    if n_seeds < 2:
        notes.append("With a single seed no CI over seeds exists, so none is drawn.")
    return Made(fig=fig, data_files=files, notes=notes, table=rhos)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
