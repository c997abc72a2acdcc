"""The teaching notebooks' plotting theme: the paper's theme, scaled up so that a plot reads on a projector.

The paper's sizes (:mod:`paper_figs.style`) fit a two-column page: 3.3 in wide with 8 pt text. Shown in a
notebook on a projector that text is too small to read from the back of a room. :func:`set_theme` keeps
the paper's style and palette and multiplies every font size and line width by :data:`SCALE`;
:func:`figsize` multiplies the paper's figure sizes by the same factor, so a figure keeps its layout and
only grows. :func:`theme` does the same inside a ``with`` block and restores the previous settings after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from paper_figs import style

__all__ = ["SCALE", "rc", "set_theme", "theme", "figsize", "new_axes"]

SCALE = 1.75  # notebook size / paper size, for lengths and fonts: 8 pt paper text becomes 14 pt
_SCALED_KEYS = (
    "font.size",
    "axes.titlesize",
    "axes.labelsize",
    "xtick.labelsize",
    "ytick.labelsize",
    "legend.fontsize",
    "legend.title_fontsize",
    "axes.linewidth",
    "grid.linewidth",
    "lines.linewidth",
    "lines.markersize",
    "errorbar.capsize",
    "xtick.major.size",
    "ytick.major.size",
    "xtick.major.width",
    "ytick.major.width",
    "patch.linewidth",
)


def rc(scale: float = SCALE) -> dict[str, Any]:
    """The matplotlib settings of the paper's theme with sizes multiplied by ``scale`` (> 0)."""
    import matplotlib as mpl

    from mr2_core.checks import bad

    if not (isinstance(scale, (int, float)) and scale > 0):
        raise bad("scale", scale, "a positive factor")
    with mpl.rc_context():
        style.set_theme()  # the paper's settings, read inside a context so that nothing leaks
        paper = {k: mpl.rcParams[k] for k in _SCALED_KEYS}
    scaled = {k: float(v) * scale for k, v in paper.items() if isinstance(v, (int, float))}
    scaled["figure.dpi"] = 100  # the inline backend's resolution; the size comes from figsize
    return scaled


def set_theme(scale: float = SCALE) -> None:
    """Apply the paper's theme with every font and line ``scale`` times larger (idempotent)."""
    import matplotlib as mpl

    settings = rc(scale)
    style.set_theme()
    mpl.rcParams.update(settings)


@contextlib.contextmanager
def theme(scale: float = SCALE) -> Iterator[None]:
    """``with theme(): ...`` draws in the notebook theme and restores the previous settings after."""
    import matplotlib as mpl

    settings = rc(scale)
    with mpl.rc_context():
        style.set_theme()
        mpl.rcParams.update(settings)
        yield


def figsize(width: str | float = "single", aspect: float = 0.75, scale: float = SCALE) -> tuple[float, float]:
    """:func:`paper_figs.style.figsize` times ``scale``: ``"single"`` is 5.8 in wide, ``"double"`` 12 in."""
    w, h = style.figsize(width, aspect)
    return (w * scale, h * scale)


def new_axes(width: str | float = "single", aspect: float = 0.75) -> tuple[Any, Any]:
    """A new ``(fig, ax)`` of the notebook size (the theme is whatever is set now)."""
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize(width, aspect), layout="constrained")
