"""Figure 1: per-class test accuracy on Fashion-MNIST, CE against MR2, sorted, with bootstrap CIs.

Reads ``RUNS/<study>/<loss>/seed<k>/metrics.json`` (``per_class_accuracy``, ``class_names``) from
``mr2 train``. Classes are sorted by CE's mean accuracy, worst first, so the hard classes sit on the
left. (a) Accuracy per class for each loss; (b) the paired difference MR2 - CE per class (same seeds).
CIs: 95% percentile bootstrap over seeds (``common.stats.bootstrap_ci``); none with a single seed.

Run: ``python -m paper_figs.fig1_class_accuracy --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.contracts import loss_label
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 1
NAME = "class_accuracy"
TITLE = "Sorted per-class accuracy, CE against MR2"
CAPTION = (
    "Per-class test accuracy, classes sorted by cross-entropy's mean accuracy (worst first). "
    "(a) Mean over seeds for CE and MR2 with 95% bootstrap CIs over seeds; (b) the paired difference "
    "MR2 - CE on the same seeds, with its 95% bootstrap CI; a CI that excludes 0 marks a class that "
    "changed beyond seed noise."
)

LOSSES = ("ce", "mr2")


def class_accuracy_ci(frame: Any, *, seed: int, value: str = "accuracy") -> Any:
    """Mean over seeds of ``value`` per (loss, class), with a 95% bootstrap CI over seeds.

    Args:
        frame: long table from :func:`paper_figs.data.load_study`.
        seed: seed of the bootstrap (``common.stats.bootstrap_ci``).

    Returns:
        pandas frame with columns ``loss, class_index, class_name, mean, ci_low, ci_high, n_seeds``;
        the CI is NaN with fewer than 2 seeds.
    """
    import pandas as pd

    from common.stats import bootstrap_ci

    rows = []
    for loss, sub in frame.groupby("loss", sort=False):
        wide = sub.pivot(index="seed", columns="class_index", values=value).sort_index(axis=1)
        names = sub.drop_duplicates("class_index").set_index("class_index")["class_name"]
        mat = wide.to_numpy()
        mean = mat.mean(axis=0)
        if mat.shape[0] >= 2:
            _, (low, high) = bootstrap_ci(mat, rng=seed)
        else:
            low = high = np.full_like(mean, np.nan)
        rows.append(
            pd.DataFrame(
                {
                    "loss": loss,
                    "class_index": wide.columns,
                    "class_name": names.loc[wide.columns].to_numpy(),
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "n_seeds": mat.shape[0],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def paired_difference_ci(frame: Any, loss: str, baseline: str = "ce", *, seed: int) -> Any:
    """Per-class accuracy of ``loss`` minus ``baseline`` on the seeds both have, with bootstrap CIs.

    Returns:
        pandas frame ``class_index, class_name, diff, ci_low, ci_high, n_seeds`` (CI NaN below 2 seeds).
    """
    import pandas as pd

    from common.stats import bootstrap_ci

    def wide(name):
        sub = frame[frame["loss"] == name]
        return sub.pivot(index="seed", columns="class_index", values="accuracy").sort_index(axis=1)

    a, b = wide(loss), wide(baseline)
    seeds = a.index.intersection(b.index)
    if len(seeds) == 0:
        raise ValueError(f"no seed has both {loss!r} and {baseline!r} runs: cannot pair them")
    diff = a.loc[seeds].to_numpy() - b.loc[seeds].to_numpy()
    if len(seeds) >= 2:
        point, (low, high) = bootstrap_ci(diff, rng=seed)
    else:
        point, low, high = diff[0], np.full(diff.shape[1], np.nan), np.full(diff.shape[1], np.nan)
    names = frame.drop_duplicates("class_index").set_index("class_index")["class_name"]
    return pd.DataFrame(
        {
            "class_index": a.columns,
            "class_name": names.loc[a.columns].to_numpy(),
            "diff": point,
            "ci_low": low,
            "ci_high": high,
            "n_seeds": len(seeds),
        }
    )


def _errorbars(mean, low, high):
    if np.all(np.isnan(low)):
        return None
    return np.vstack([mean - low, high - mean])


def plot_class_accuracy(summary: Any, order: list[int], *, ax: Any = None) -> tuple[Any, Any]:
    """Panel (a): per-class accuracy with CIs, one marker per loss, classes in ``order``.

    Args:
        summary: output of :func:`class_accuracy_ci`.
        order: class indices left to right.
        ax: axes to draw on; a new single-column figure when None.
    """
    fig, ax = style.new_axes(ax)
    losses = list(dict.fromkeys(summary["loss"]))
    x = np.arange(len(order))
    width = 0.7 / max(len(losses), 1)
    for i, loss in enumerate(losses):
        s = summary[summary["loss"] == loss].set_index("class_index").loc[order]
        off = (i - (len(losses) - 1) / 2) * width
        ax.errorbar(
            x + off,
            s["mean"],
            yerr=_errorbars(s["mean"].to_numpy(), s["ci_low"].to_numpy(), s["ci_high"].to_numpy()),
            fmt="o",
            color=style.loss_color(loss),
            label=f"{loss_label(loss)} ({int(s['n_seeds'].iloc[0])} seeds)",
            ms=3.5,
            elinewidth=1.0,
        )
    names = summary.drop_duplicates("class_index").set_index("class_index")["class_name"]
    ax.set_xticks(x, [names[c] for c in order], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    ax.set_title("(a) per-class accuracy, sorted by CE", loc="left")
    return fig, ax


def plot_paired_difference(diff: Any, order: list[int], loss: str, *, ax: Any = None) -> tuple[Any, Any]:
    """Panel (b): ``loss`` - CE per class with CIs, classes in ``order``; a zero line for reference."""
    fig, ax = style.new_axes(ax)
    d = diff.set_index("class_index").loc[order]
    x = np.arange(len(order))
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.errorbar(
        x,
        100 * d["diff"],
        yerr=None
        if d["ci_low"].isna().all()
        else 100 * _errorbars(d["diff"].to_numpy(), d["ci_low"].to_numpy(), d["ci_high"].to_numpy()),
        fmt="s",
        color=style.loss_color(loss),
        ms=3.5,
        elinewidth=1.0,
    )
    ax.set_xticks(x, list(d["class_name"]), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_ylabel(f"{loss_label(loss)} − CE (points)")
    ax.set_title(f"(b) paired difference, {int(d['n_seeds'].iloc[0])} seeds", loc="left")
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt
    import pandas as pd

    study = data.training_study(ctx, LOSSES)
    frame, files = data.load_study(study, LOSSES)
    present = set(frame["loss"])
    if not set(LOSSES) <= present:
        raise ValueError(f"{study}: figure 1 needs runs of {list(LOSSES)}, found {sorted(present)}")
    summary = class_accuracy_ci(frame, seed=ctx.seed)
    ce = summary[summary["loss"] == "ce"].sort_values("mean")
    order = list(ce["class_index"])
    diff = paired_difference_ci(frame, "mr2", "ce", seed=ctx.seed)

    fig, axes = plt.subplots(
        1,
        2,
        figsize=style.figsize("double", 0.36),
        layout="constrained",
        gridspec_kw={"width_ratios": [1.25, 1]},
    )
    plot_class_accuracy(summary, order, ax=axes[0])
    plot_paired_difference(diff, order, "mr2", ax=axes[1])
    dataset = ", ".join(sorted(set(frame["dataset"])))
    n_seeds = int(summary["n_seeds"].min())
    notes = [f"Dataset: {dataset}; study {study}; {n_seeds} seed(s) per loss."]
    if n_seeds < 2:
        notes.append("With a single seed no CI over seeds exists, so none is drawn.")
    table = pd.concat([summary.assign(kind="accuracy"), diff.assign(kind="mr2_minus_ce", loss="mr2")])
    return Made(fig=fig, data_files=files, notes=notes, table=table)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
