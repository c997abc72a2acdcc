"""Point labels that stay off the data: each label takes the nearby position that overlaps least.

:func:`place_labels` tries a ring of positions around each point (right first, then left, above, below
and the diagonals, at growing distances) and keeps, point by point, the one whose text box overlaps
least with the labels already placed, with every point's marker and error bars, and with the space
outside the axes (where a label would cover tick labels). Distance and direction only break ties.
A label placed away from its point gets a thin leader line.

The placement is computed in pixels, so it holds for the layout of the moment. A figure whose layout
changes after its labels were placed (a title, a legend or another panel added later) calls
:func:`refresh` once it is complete: every label of the figure is placed again. Labels take no part in
the layout (``in_layout=False``), so placing them never moves the axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["place_labels", "refresh", "label_boxes"]

# where a label can go: (direction x, direction y) and the text alignment that keeps it on that side
_DIRECTIONS = (
    ((1, 0), "left", "center"),
    ((-1, 0), "right", "center"),
    ((0, 1), "center", "bottom"),
    ((0, -1), "center", "top"),
    ((1, 1), "left", "bottom"),
    ((1, -1), "left", "top"),
    ((-1, 1), "right", "bottom"),
    ((-1, -1), "right", "top"),
)
_DISTANCES = (3.0, 8.0, 14.0, 21.0, 30.0, 40.0)  # points from the point to the nearest edge of its label
_MARKER = 3.5  # points: half the size of an obstacle box around a marker
_WEIGHT_LABEL, _WEIGHT_DATA, _WEIGHT_OUTSIDE = 10.0, 4.0, 20.0  # cost per px^2 of overlap
# the figure keeps its own label jobs [(ax, args, kwargs, anns)] under this attribute, so that they live
# and die with it (no module-level registry)
_JOBS_ATTR = "_mr2_label_jobs"


def _jobs(fig: Any) -> list:
    if not hasattr(fig, _JOBS_ATTR):
        setattr(fig, _JOBS_ATTR, [])
    return getattr(fig, _JOBS_ATTR)


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Overlap area (px^2) of box ``a`` (x0, y0, x1, y1) with each row of ``b`` (n, 4)."""
    if len(b) == 0:
        return np.zeros(0)
    w = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
    h = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def place_labels(
    ax: Any,
    xs: Any,
    ys: Any,
    labels: Any,
    *,
    xerr: Any = None,
    yerr: Any = None,
    fontsize: float | None = None,
) -> list[Any]:
    """Label each point (``xs[i]``, ``ys[i]``) with ``labels[i]`` where the text covers least data.

    Args:
        ax: the axes; its limits must be final (set them before calling).
        xs, ys: shape (n,), the points (data units).
        labels: shape (n,), the texts.
        xerr, yerr: shape (2, n) or None: the error bars' lower and upper lengths (data units), so
            that labels stay off the bars too.
        fontsize: points; default 3/4 of the current theme's font size (6 pt in the paper's theme,
            larger in the notebooks' scaled one).

    Returns:
        the n annotations (a later :func:`refresh` replaces them).
    """
    kwargs = {"xerr": xerr, "yerr": yerr, "fontsize": fontsize}
    anns = _place(ax, xs, ys, labels, **kwargs)
    _jobs(ax.figure).append((ax, (xs, ys, labels), kwargs, anns))
    return anns


def refresh(fig: Any) -> None:
    """Place every label of ``fig`` again for its current layout (call it once the figure is complete)."""
    jobs = _jobs(fig)
    for ann in (a for _, _, _, anns in jobs for a in anns):
        ann.remove()
    fig.canvas.draw()  # the final layout, without the old labels
    for i, (ax, args, kwargs, _) in enumerate(jobs):
        jobs[i] = (ax, args, kwargs, _place(ax, *args, **kwargs))


def _place(
    ax: Any,
    xs: Any,
    ys: Any,
    labels: Any,
    *,
    xerr: Any = None,
    yerr: Any = None,
    fontsize: float | None = None,
) -> list[Any]:
    """:func:`place_labels` without the bookkeeping."""
    from mr2_core.checks import bad

    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    labels = [str(t) for t in labels]
    if not (xs.shape == ys.shape == (len(labels),)):
        raise bad("labels", labels, f"one label per point ({xs.shape[0] if xs.ndim else 0} points)")
    fig = ax.figure
    import matplotlib as mpl

    size = fontsize if fontsize is not None else 0.75 * float(mpl.rcParams["font.size"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0  # pixels per point
    to_px = ax.transData.transform
    points = to_px(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    axes_box = ax.get_window_extent(renderer)
    obstacles = [np.column_stack([points - _MARKER * px, points + _MARKER * px])]
    for err, axis in ((xerr, 0), (yerr, 1)):
        if err is None:
            continue
        err = np.asarray(err, dtype=float).reshape(2, -1)
        lo = np.column_stack([xs, ys]).copy()
        hi = lo.copy()
        lo[:, axis] -= np.nan_to_num(err[0])
        hi[:, axis] += np.nan_to_num(err[1])
        a, b = to_px(lo), to_px(hi)
        thin = np.zeros_like(a)
        thin[:, 1 - axis] = 0.8 * px  # an error bar is a line: a thin box
        obstacles.append(np.column_stack([np.minimum(a, b) - thin, np.maximum(a, b) + thin]))
    obstacles = np.vstack(obstacles)

    anns = []
    placed = np.zeros((0, 4))
    for i, (p, text) in enumerate(zip(points, labels, strict=True)):
        probe = ax.annotate(text, (xs[i], ys[i]), xytext=(0, 0), textcoords="offset points", fontsize=size)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        w, h = ext.width, ext.height
        own = np.ones(len(obstacles), dtype=bool)
        own[i] = False  # a label may touch its own marker's box (it starts next to it)
        if len(obstacles) > len(points):  # and its own error bars
            own[len(points) + i :: len(points)] = False
        best = None
        for rank, dist in enumerate(_DISTANCES):
            for turn, ((dx, dy), ha, va) in enumerate(_DIRECTIONS):
                ox, oy = dx * dist * px, dy * dist * px
                x0 = p[0] + ox + {"left": 0.0, "right": -w, "center": -w / 2}[ha]
                y0 = p[1] + oy + {"bottom": 0.0, "top": -h, "center": -h / 2}[va]
                box = np.array([x0, y0, x0 + w, y0 + h])
                inside = _overlap(box, np.array([[axes_box.x0, axes_box.y0, axes_box.x1, axes_box.y1]]))
                cost = (
                    _WEIGHT_LABEL * _overlap(box, placed).sum()
                    + _WEIGHT_DATA * _overlap(box, obstacles[own]).sum()
                    + _WEIGHT_OUTSIDE * (w * h - inside.sum())
                    + 0.5 * rank * px
                    + 0.05 * turn * px
                )
                if best is None or cost < best[0]:
                    best = (cost, (dx * dist, dy * dist), ha, va, box, rank)
        _, offset, ha, va, box, rank = best
        anns.append(
            ax.annotate(
                text,
                (xs[i], ys[i]),
                xytext=offset,
                textcoords="offset points",
                fontsize=size,
                color="0.25",
                ha=ha,
                va=va,
                bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.7},
                in_layout=False,
                arrowprops=(
                    {"arrowstyle": "-", "color": "0.6", "lw": 0.4, "shrinkA": 0, "shrinkB": 2}
                    if rank >= 1
                    else None
                ),
            )
        )
        placed = np.vstack([placed, box])
    return anns


def label_boxes(ax: Any, anns: list[Any]) -> np.ndarray:
    """The annotations' text boxes in pixels, shape (n, 4): x0, y0, x1, y1, leader lines left out (for
    tests and checks)."""
    from matplotlib.text import Text

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = (Text.get_window_extent(a, renderer) for a in anns)  # the text only, not the leader line
    return np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes])
