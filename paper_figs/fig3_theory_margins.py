"""Figure 3: the theory's optimal margins against spread for p = 1, 2, 3, with LDAM's rule beside them.

Everything here comes from ``theory`` (no data): ``theory.optimal_margins`` gives
gamma_k = K cbar (w_k a_k)^(1/(p+1)) / sum_j (w_j a_j)^(1/(p+1)), so on log-log axes margin against
spread is a line of slope 1/(p+1): 1/2, 1/3 (MR2) and 1/4. LDAM (Cao et al., 2019) is the p = 1 member
with a_k proportional to n_k^(-1/2), i.e. gamma_k proportional to n_k^(-1/4) (``theory.ldam_margins``).
Panel (c) is the bound's gain of the optimum over uniform margins, ``theory.gain_over_uniform``.

Run: ``python -m paper_figs.fig3_theory_margins --out results/figures``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from paper_figs import style
from paper_figs.common import FigureContext, Made, figure_main

NUMBER = 3
NAME = "theory_margins"
TITLE = "Optimal margins against class spread (theory)"
CAPTION = (
    "Optimal per-class margins from the class-sensitive bound, gamma_k proportional to a_k^(1/(p+1)) at a "
    "fixed mean margin (theory.optimal_margins). (a) Margin against spread a_k = ||mu_k||^2 + s_k^2 for "
    "K = 10 classes with spreads spaced evenly in log from 1/4 to 4 times their geometric mean; the "
    "slopes are 1/2, 1/3 (MR2, p = 2) and 1/4. (b) LDAM's rule (markers, theory.ldam_margins rescaled to "
    "mean 1) against class size: it lies on the p = 1 curve (colours as in (a)) with a_k = n_k^(-1/2), "
    "slope -1/4; the "
    "p = 2 and p = 3 rules under the same assumption are drawn beside it. (c) The bound's margin term at "
    "the optimum over its value at uniform margins (theory.gain_over_uniform; 1 = no gain), for two "
    "groups of five classes whose spreads differ by the ratio on the x-axis."
)

POWERS = (1, 2, 3)
K = 10  # classes in panels (a) and (b)
SPREAD_RANGE = (0.25, 4.0)  # panel (a): spreads relative to their geometric mean
COUNT_RANGE = (50, 5000)  # panel (b): class sizes, an imbalance ratio of 100 as in long-tailed CIFAR
RATIO_RANGE = (1.0, 1000.0)  # panel (c): spread ratio between the two groups


MARGIN_TICKS = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 7.0, 10.0])


def _within(ticks: np.ndarray, low: float, high: float) -> list[float]:
    """The ticks inside [low, high] (with 1% slack), at least the two around the range."""
    t = [float(v) for v in ticks if low / 1.01 <= v <= high * 1.01]
    return t if len(t) >= 2 else [float(low), float(high)]


def _power_label(p: int) -> str:
    name = {2: " (MR²)"}.get(p, "")
    return f"$p={p}$: slope 1/{p + 1}{name}"


def margins_table(spread: np.ndarray, powers=POWERS) -> Any:
    """Long table (pandas) of optimal margins: columns ``power, class, spread, margin`` (mean margin 1)."""
    import pandas as pd

    from theory import optimal_margins

    rows = []
    for p in powers:
        gamma = optimal_margins(spread, power=p)
        rows.append(
            pd.DataFrame({"power": p, "class": np.arange(len(spread)), "spread": spread, "margin": gamma})
        )
    return pd.concat(rows, ignore_index=True)


def plot_margins_vs_spread(spread: np.ndarray, *, powers=POWERS, ax: Any = None) -> tuple[Any, Any]:
    """Panel (a): optimal margin (mean 1) against spread, log-log, one line per power p.

    Args:
        spread: shape (K,), a_k > 0 (any unit: the rule is scale invariant).
        powers: the exponents p of the objective sum_k a_k / gamma_k^p.
        ax: axes to draw on; a new single-column figure when None.
    """
    import seaborn as sns

    fig, ax = style.new_axes(ax)
    table = margins_table(np.sort(np.asarray(spread, dtype=float)), powers)
    colors = dict(zip(powers, style.palette(len(powers)), strict=True))
    sns.lineplot(
        data=table, x="spread", y="margin", hue="power", palette=colors, marker="o", ax=ax, legend=False
    )
    for p in powers:
        ax.plot([], [], color=colors[p], marker="o", label=_power_label(p))
    ax.axhline(1.0, color="0.5", lw=0.6, ls=":", zorder=0)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=r"class spread $a_k$ (relative)",
        ylabel=r"optimal margin $\gamma_k$",
    )
    x, y = table["spread"].to_numpy(), table["margin"].to_numpy()
    style.log_ticks(ax, "x", _within(2.0 ** np.arange(-12, 13), x.min(), x.max()))
    style.log_ticks(ax, "y", _within(MARGIN_TICKS, y.min(), y.max()))
    ax.legend(loc="upper left", handlelength=1.2, borderaxespad=0.2)
    ax.set_title("(a) margin vs spread", loc="left")
    return fig, ax


def plot_ldam_beside(counts: np.ndarray, *, powers=POWERS, ax: Any = None) -> tuple[Any, Any]:
    """Panel (b): LDAM's margins against class size, on the p = 1 curve with a_k = n_k^(-1/2).

    Args:
        counts: shape (K,), class sizes n_k > 0.
        powers: the exponents p drawn as curves.
        ax: axes to draw on; a new single-column figure when None.
    """
    from theory import ldam_margins, optimal_margins

    fig, ax = style.new_axes(ax)
    n = np.sort(np.asarray(counts, dtype=float))
    grid = np.geomspace(n[0], n[-1], 200)
    colors = dict(zip(powers, style.palette(len(powers)), strict=True))
    for p in powers:
        # the curve for a continuum of classes: the rule's shape, normalised like the K markers below
        g = optimal_margins(grid**-0.5, power=p)
        g_k = optimal_margins(n**-0.5, power=p)
        ax.plot(grid, g * (g_k.mean() / np.interp(n, grid, g).mean()), color=colors[p], lw=1.0)
    ldam = ldam_margins(n)
    ax.plot(
        n,
        ldam / ldam.mean(),
        ls="none",
        marker="D",
        mfc="none",
        color="0.1",
        ms=5,
        label=r"LDAM, $n_k^{-1/4}$",
    )
    ax.set(xscale="log", yscale="log", xlabel=r"class size $n_k$", ylabel=r"margin (mean 1)")
    style.log_ticks(ax, "x", [50, 100, 500, 1000, 5000])
    style.log_ticks(ax, "y", [0.6, 0.8, 1, 1.25, 1.6])
    ax.legend(loc="upper right")
    ax.set_title(r"(b) LDAM: $p=1$, $a_k \propto n_k^{-1/2}$", loc="left")
    return fig, ax


def gain_table(ratios: np.ndarray, powers=POWERS, k: int = K) -> Any:
    """Columns ``power, ratio, gain``: margin term at the optimum / at uniform margins, two groups."""
    import pandas as pd

    from theory import gain_over_uniform

    rows = []
    for p in powers:
        for r in ratios:
            spread = np.r_[np.ones(k // 2), np.full(k - k // 2, r)]
            rows.append({"power": p, "ratio": float(r), "gain": float(gain_over_uniform(spread, power=p))})
    return pd.DataFrame(rows)


def plot_gain(ratios: np.ndarray, *, powers=POWERS, ax: Any = None) -> tuple[Any, Any]:
    """Panel (c): the bound's gain over uniform margins against the spread ratio of two class groups."""
    import seaborn as sns

    fig, ax = style.new_axes(ax)
    table = gain_table(np.asarray(ratios, dtype=float), powers)
    colors = dict(zip(powers, style.palette(len(powers)), strict=True))
    sns.lineplot(data=table, x="ratio", y="gain", hue="power", palette=colors, ax=ax, legend=False)
    ax.axhline(1.0, color="0.5", lw=0.6, ls=":", zorder=0)
    ax.set(xscale="log", xlabel="spread ratio between the groups", ylabel="margin term: optimal / uniform")
    style.log_ticks(ax, "x", [1, 10, 100, 1000])
    ax.set_ylim(top=1.02)
    ax.set_title("(c) gain over uniform", loc="left")
    return fig, ax


def make(ctx: FigureContext) -> Made:
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, 3, figsize=style.figsize("double", 0.34), layout="constrained")
    spread = np.geomspace(*SPREAD_RANGE, K)
    counts = np.geomspace(*COUNT_RANGE, K)
    ratios = np.geomspace(*RATIO_RANGE, 40)
    plot_margins_vs_spread(spread, ax=axes[0])
    plot_ldam_beside(counts, ax=axes[1])
    plot_gain(ratios, ax=axes[2])
    a = margins_table(spread).assign(panel="a")
    from theory import ldam_margins

    ldam = ldam_margins(counts)
    b = pd.DataFrame({"panel": "b", "power": "ldam", "count": counts, "margin": ldam / ldam.mean()})
    c = gain_table(ratios).assign(panel="c")
    table = pd.concat([a, b, c], ignore_index=True)
    return Made(fig=fig, data_files=[], notes=["Computed from theory.margins; no data file."], table=table)


def main(argv: list[str] | None = None) -> int:
    return figure_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
