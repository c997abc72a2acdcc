"""The project's one plotting theme: seaborn, a colour-blind palette, sizes for a two-column paper.

Every figure calls :func:`set_theme` once and takes its width from :data:`SINGLE_COLUMN` or
:data:`DOUBLE_COLUMN` (inches, the text widths of a typical two-column conference template), so fonts
print at the same size in every figure. Colours for losses and criteria are fixed here so that CE is
the same colour in every figure of the paper.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "SINGLE_COLUMN",
    "DOUBLE_COLUMN",
    "FONT_SIZE",
    "DPI",
    "set_theme",
    "palette",
    "loss_color",
    "method_palette",
    "METHOD_PALETTES",
    "figsize",
    "new_axes",
    "save_figure",
    "log_ticks",
    "label_points",
    "plain_log_labels",
]

SINGLE_COLUMN = 3.3  # inches: one column of a two-column paper
DOUBLE_COLUMN = 6.9  # inches: the full text width
FONT_SIZE = 8  # points: body text of a paper is ~10 pt; figure text a little smaller, never below 6
DPI = 300  # dots per inch of the PNG copies (the PDFs are vector)


def set_theme() -> None:
    """Apply the project's theme (idempotent): white grid, colour-blind palette, paper font sizes."""
    import matplotlib
    import seaborn as sns

    if "MPLBACKEND" not in os.environ:  # headless by default: figures go to files, not windows
        matplotlib.use("Agg")
    sns.set_theme(
        context="paper",
        style="whitegrid",
        palette="colorblind",
        font_scale=1.0,
        rc={
            "font.size": FONT_SIZE,
            "axes.titlesize": FONT_SIZE + 1,
            "axes.labelsize": FONT_SIZE,
            "xtick.labelsize": FONT_SIZE - 1,
            "ytick.labelsize": FONT_SIZE - 1,
            "legend.fontsize": FONT_SIZE - 1,
            "legend.title_fontsize": FONT_SIZE,
            "legend.frameon": False,
            "figure.dpi": 100,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
            "savefig.pad_inches": 0.02,
            "axes.linewidth": 0.6,
            "grid.linewidth": 0.4,
            "lines.linewidth": 1.2,
            "lines.markersize": 4,
            "errorbar.capsize": 2,
            "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by paper submission systems
            "ps.fonttype": 42,
        },
    )


def palette(n: int) -> list[tuple[float, float, float]]:
    """``n`` colours from the colour-blind palette (it cycles after 10)."""
    import seaborn as sns

    return sns.color_palette("colorblind", n)


# the palettes behind the methods' colour indices (mr2_core.contracts.PALETTE_SIZE = 5 x 10 colours),
# in this order: the colour-blind palette first, so the first ten methods keep their old colours
METHOD_PALETTES = ("colorblind", "dark", "pastel", "bright", "muted")


def method_palette() -> list[tuple[float, float, float]]:
    """The ``PALETTE_SIZE`` colours the method registry's colour indices point into."""
    import seaborn as sns

    return [c for name in METHOD_PALETTES for c in sns.color_palette(name, 10)]


def loss_color(name: str) -> tuple[float, float, float]:
    """The fixed colour of a method or loss (e.g. ``"ce"``, ``"mr2"``; ``mr2_core.contracts.METHODS``).
    A name not registered takes a colour of the colour-blind palette from its characters."""
    from mr2_core.contracts import METHODS

    if name in METHODS:
        return method_palette()[METHODS[name].color]
    return palette(10)[sum(map(ord, name)) % 10]


def figsize(width: str | float = "single", aspect: float = 0.75) -> tuple[float, float]:
    """(width, height) in inches; ``width``: ``"single"``, ``"double"`` or inches; height = width x aspect."""
    from mr2_core.checks import bad

    if width == "single":
        w = SINGLE_COLUMN
    elif width == "double":
        w = DOUBLE_COLUMN
    elif isinstance(width, (int, float)) and width > 0:
        w = float(width)
    else:
        raise bad("width", width, "'single', 'double' or a positive width in inches")
    if not aspect > 0:
        raise bad("aspect", aspect, "a positive height/width ratio")
    return (w, w * aspect)


def new_axes(ax: Any = None, *, width: str | float = "single", aspect: float = 0.75) -> tuple[Any, Any]:
    """``(fig, ax)``: the given axes and its figure, or a new figure of the paper's size."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    set_theme()
    fig, ax = plt.subplots(figsize=figsize(width, aspect), layout="constrained")
    return fig, ax


def save_figure(fig: Any, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``fig`` as ``stem.pdf`` and ``stem.png`` in ``out_dir`` atomically; return both paths."""
    from mr2_core.io import atomic_open

    out = Path(out_dir)
    paths = []
    for ext in ("pdf", "png"):
        path = out / f"{stem}.{ext}"
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format=ext)
        paths.append(path)
    return paths


def log_ticks(ax: Any, axis: str, ticks: Any, fmt: str = "{:g}") -> None:
    """Label a log axis at ``ticks`` with plain numbers (no 10^x clutter, no minor labels)."""
    import matplotlib.ticker as mticker

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(mticker.FixedLocator(list(ticks)))
    target.set_major_formatter(mticker.FixedFormatter([fmt.format(t) for t in ticks]))
    target.set_minor_formatter(mticker.NullFormatter())


def label_points(
    ax: Any,
    xs: Any,
    ys: Any,
    labels: Any,
    *,
    fontsize: float | None = None,
    iterations: int = 60,
    offset: tuple[float, float] = (4.0, 0.0),
) -> list[Any]:
    """Label points with text nudged apart vertically so that no two labels overlap.

    Labels start ``offset`` points to the right of their point; overlapping labels are pushed up and
    down (in points, so the result survives a re-layout) until they clear each other, and a thin line
    joins a moved label to its point.
    """
    fig = ax.figure
    size = fontsize if fontsize is not None else FONT_SIZE - 2
    anns = [
        ax.annotate(
            str(t),
            (x, y),
            xytext=offset,
            textcoords="offset points",
            fontsize=size,
            color="0.25",
            va="center",
            ha="left",
            bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.7},
        )
        for x, y, t in zip(xs, ys, labels, strict=True)
    ]
    if len(anns) < 2:
        return anns
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    px_to_pt = 72.0 / fig.dpi
    pad = 0.8 * size / px_to_pt  # pixels kept free between labels (most of a character)
    dy = [offset[1]] * len(anns)
    for _ in range(iterations):
        boxes = [a.get_window_extent(renderer) for a in anns]
        moved = False
        for i in range(len(anns)):
            for j in range(i + 1, len(anns)):
                bi, bj = boxes[i], boxes[j]
                if bi.x1 + pad <= bj.x0 or bj.x1 + pad <= bi.x0:
                    continue
                overlap = min(bi.y1, bj.y1) - max(bi.y0, bj.y0) + pad
                if overlap <= 0:
                    continue
                push = 0.5 * (overlap + 1.0) * px_to_pt
                up, down = (i, j) if (bi.y0 + bi.y1) >= (bj.y0 + bj.y1) else (j, i)
                dy[up] += push
                dy[down] -= push
                moved = True
        for a, d in zip(anns, dy, strict=True):
            a.xyann = (offset[0], d)
        if not moved:
            break
    for a, d in zip(anns, dy, strict=True):
        if abs(d - offset[1]) > 0.6 * size:
            ax.annotate(
                "",
                a.xy,
                xytext=(offset[0], d),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.4, "shrinkA": 0, "shrinkB": 2},
            )
    return anns


def plain_log_labels(ax: Any, axis: str = "y") -> None:
    """Write a log axis's decade labels as plain numbers (1, 10, 100) instead of powers of ten."""
    import matplotlib.ticker as mticker

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
