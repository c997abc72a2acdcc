"""Figure 6: the MR2 loss's speed against K, vectorised against the per-class loop (and CE).

Reads ``RESULTS/bench/loss_bench.csv`` from ``mr2 bench loss``: columns ``K, B, d, impl, ms_mean,
ms_std, speedup`` with ``impl`` in ``vectorised``, ``loop``, ``ce`` (forward + backward of the loss
alone, CPU, one process). (a) Time per step against K; (b) the ratios, computed here from
``ms_mean``: loop / vectorised (the speed-up; our target is >= 10x at K = 100 and >= 30x at
K = 1000) and vectorised / CE (MR2's cost relative to CE; target <= 2 at K = 1000; docs/method.md, Targets).

Run: ``python -m paper_figs.fig6_loss_speed --results results --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mr2_core.contracts import LOSS_BENCH_COLUMNS
from paper_figs import data, style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 6
NAME = "loss_speed"
TITLE = "Loss speed against the number of classes K"
CAPTION = (
    "Forward + backward time on CPU against the number of classes K, in one process (mr2 bench loss: "
    "CPU time, one thread, B = 256, d = 512, the official configuration p = 5). (a) Milliseconds per "
    "step, mean +- one standard deviation over repeats, of the loss alone (logits and features given) "
    "for the vectorised MR2 loss, a per-class loop of the same definition (as in the official code) and "
    "cross-entropy; dotted, open markers: the same plus a linear head d -> K. (b) Speed-up of the "
    "vectorised loss over the loop, and MR2's time over CE's with the same head; dotted lines: the "
    "project's targets of 10x (K = 100) and 30x (K = 1000), and 2x CE."
)

COLUMNS = LOSS_BENCH_COLUMNS
IMPLS = {
    "vectorised": "MR² vectorised",
    "loop": "MR² per-class loop",
    "ce": "CE",
    "vectorised+head": "MR² + linear head",
    "ce+head": "CE + linear head",
}
# palette indices: MR2 and CE as in figures 1-2; "+head" rows (the loss plus a d -> K linear head,
# forward and backward) share their loss's colour with open markers
IMPL_COLOR = {"vectorised": 1, "loop": 7, "ce": 0, "vectorised+head": 1, "ce+head": 0}
IMPL_STYLE = {"vectorised": "-o", "loop": "--o", "ce": "-s", "vectorised+head": ":o", "ce+head": ":s"}
TARGETS = ((100, 10.0), (1000, 30.0))  # (K, minimum loop/vectorised speed-up): docs/method.md, Targets
CE_COST_TARGET = 2.0  # vectorised MR2 at most twice CE's time at K = 1000


def _pick_setting(frame: Any) -> tuple[Any, str]:
    """Rows of the (B, d) with the most K values (the headline setting), and its label."""
    counts = frame.groupby(["B", "d"])["K"].nunique().sort_values(ascending=False)
    b, d = counts.index[0]
    return frame[(frame["B"] == b) & (frame["d"] == d)], f"B = {b}, d = {d}"


def plot_time_vs_k(frame: Any, *, ax: Any = None) -> tuple[Any, Any]:
    """Panel (a): ms per step against K (log-log), one line per implementation, +- std bars."""
    fig, ax = style.new_axes(ax)
    pal = style.palette(10)
    for impl, sub in frame.groupby("impl", sort=False):
        sub = sub.sort_values("K")
        open_marker = {"mfc": "white"} if impl.endswith("+head") else {}
        ax.errorbar(
            sub["K"],
            sub["ms_mean"],
            yerr=sub["ms_std"],
            fmt=IMPL_STYLE.get(impl, "-o"),
            ms=3,
            elinewidth=0.8,
            color=pal[IMPL_COLOR.get(impl, 5)],
            label=IMPLS.get(impl, impl),
            **open_marker,
        )
    ax.set(xscale="log", yscale="log", xlabel="classes K", ylabel="ms per step (fwd + bwd)")
    style.plain_log_labels(ax, "y")
    ks = sorted(frame["K"].unique())
    if len(ks) <= 8:
        style.log_ticks(ax, "x", ks)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, handlelength=1.8, columnspacing=1.0)
    return fig, ax


def ratios(frame: Any) -> Any:
    """Per K: ``speedup`` = loop / vectorised, ``ce_cost`` = MR2 / CE with the same linear head
    (``vectorised+head`` / ``ce+head``; the loss alone, vectorised / ce, when the benchmark has no
    head rows) and ``ce_cost_basis`` saying which. NaN where an implementation is missing."""
    wide = frame.pivot_table(index="K", columns="impl", values="ms_mean", aggfunc="mean")
    out = wide.index.to_frame(index=False)
    get = lambda name: wide[name].to_numpy() if name in wide else np.full(len(wide), np.nan)  # noqa: E731
    out["speedup"] = get("loop") / get("vectorised")
    with_head = "vectorised+head" in wide and "ce+head" in wide
    out["ce_cost"] = get("vectorised+head") / get("ce+head") if with_head else get("vectorised") / get("ce")
    out["ce_cost_basis"] = "same linear head" if with_head else "loss alone"
    return out


def plot_ratios(frame: Any, *, ax: Any = None) -> tuple[Any, Any]:
    """Panel (b): loop / vectorised and vectorised / CE against K, with the speed targets dotted."""
    fig, ax = style.new_axes(ax)
    pal = style.palette(10)
    r = ratios(frame)
    ax.plot(r["K"], r["speedup"], "-o", ms=3, color=pal[4], label="loop / vectorised")
    basis = "with head" if r["ce_cost_basis"].iloc[0] == "same linear head" else "loss alone"
    ax.plot(r["K"], r["ce_cost"], "-s", ms=3, color=pal[0], label=f"MR² / CE ({basis})")
    for k, target in TARGETS:
        ax.plot([k / 1.6, k * 1.6], [target, target], ls=":", color=pal[4], lw=1.2)
        ax.annotate(
            f"{target:g}× target",
            (k / 1.6, target),
            xytext=(-2, 0),
            textcoords="offset points",
            va="center",
            ha="right",
            fontsize=style.FONT_SIZE - 2,
            color=pal[4],
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    ax.axhline(CE_COST_TARGET, ls=":", color=pal[0], lw=1.0)
    ax.annotate(
        "2× CE",
        (1.0, CE_COST_TARGET),
        xycoords=("axes fraction", "data"),
        xytext=(-2, 2),
        textcoords="offset points",
        ha="right",
        va="bottom",
        fontsize=style.FONT_SIZE - 2,
        color=pal[0],
    )
    ax.axhline(1.0, color="0.6", lw=0.6, zorder=0)
    ax.set(xscale="log", yscale="log", xlabel="classes K", ylabel="time ratio")
    style.plain_log_labels(ax, "y")
    ks = sorted(frame["K"].unique())
    if len(ks) <= 8:
        style.log_ticks(ax, "x", ks)
    ax.legend(loc="upper left")
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt

    path = data.loss_bench_file(ctx)
    frame = data.read_table(path, COLUMNS)
    sub, setting = _pick_setting(frame)
    fig, axes = plt.subplots(1, 2, figsize=style.figsize("double", 0.42), layout="constrained")
    plot_time_vs_k(sub, ax=axes[0])
    axes[0].set_title(f"(a) time per step, {setting}", loc="left")
    plot_ratios(sub, ax=axes[1])
    axes[1].set_title("(b) ratios", loc="left")
    r = ratios(sub)
    notes = [
        "Measured: "
        + "; ".join(
            f"K = {int(k)}: {s:.1f}x over the loop, {c:.2f}x CE"
            for k, s, c in zip(r["K"], r["speedup"], r["ce_cost"], strict=True)
        )
        + f" ({setting}; the CE ratio with {r['ce_cost_basis'].iloc[0]})."
    ]
    return Made(fig=fig, data_files=[path], notes=notes, table=r)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
