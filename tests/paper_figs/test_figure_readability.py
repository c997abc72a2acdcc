"""Readability fixes of the figures, each checked on the drawn artists (not on pixels):

- class labels never overlap each other and stay inside their axes (``paper_figs.labels``);
- the correlation forest's legend sits outside the data (figures 2(c) and 7(f));
- figure 5(a)'s symlog axis marks its linear band and labels both of its ends;
- figure 4 labels the variance ratio 1 also when no setting has it (K = 5);
- figure 8 explains its open and filled markers in a legend;
- the demo's SUMMARY.md lists its key figures in numerical order.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from paper_figs import labels, style

MAX_OVERLAP_PX2 = 1.0  # two label boxes may touch, not overlap


@pytest.fixture(autouse=True)
def _theme():
    import matplotlib.pyplot as plt

    style.set_theme()
    yield
    plt.close("all")


def _crowded(rng: np.random.Generator, n: int = 10):
    """A tight cluster and a few outliers, like the class spreads of a trained network."""
    xs = np.r_[rng.normal(1.0, 0.05, n - 3), [0.5, 2.0, 1.5]]
    ys = np.r_[rng.normal(0.05, 0.01, n - 3), [0.3, 0.02, 0.15]]
    return xs, ys, [f"class {k}" for k in range(n)]


def _overlaps(boxes: np.ndarray) -> list[tuple[int, int, float]]:
    bad = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            if w > 0 and h > 0 and w * h > MAX_OVERLAP_PX2:
                bad.append((i, j, w * h))
    return bad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_do_not_overlap_and_stay_inside(seed):
    fig, ax = style.new_axes(None)
    xs, ys, names = _crowded(np.random.default_rng(seed))
    ax.plot(xs, ys, "o")
    ax.set(xlim=(0.3, 2.3), ylim=(-0.02, 0.35))
    anns = labels.place_labels(ax, xs, ys, names)
    boxes = labels.label_boxes(ax, anns)
    assert not _overlaps(boxes), _overlaps(boxes)
    frame = ax.get_window_extent()
    slack = 2.0  # px
    assert (boxes[:, 0] >= frame.x0 - slack).all() and (boxes[:, 2] <= frame.x1 + slack).all(), boxes
    assert (boxes[:, 1] >= frame.y0 - slack).all() and (boxes[:, 3] <= frame.y1 + slack).all(), boxes


def test_refresh_places_labels_again_after_the_layout_changes():
    fig, ax = style.new_axes(None)
    xs, ys, names = _crowded(np.random.default_rng(0))
    ax.plot(xs, ys, "o")
    labels.place_labels(ax, xs, ys, names)
    ax.set_title("a title\nof two lines that shrinks the axes", loc="left")
    labels.refresh(fig)
    texts = [t for t in ax.texts if t.get_text() in names]
    assert len(texts) == len(names)  # the old labels are gone, the new ones are there
    assert not _overlaps(labels.label_boxes(ax, texts))


def test_place_labels_needs_one_label_per_point():
    fig, ax = style.new_axes(None)
    with pytest.raises(ValueError, match="labels"):
        labels.place_labels(ax, [1.0, 2.0], [1.0, 2.0], ["only one"])


def test_correlation_legend_is_outside_the_data():
    from paper_figs.study_plots import plot_correlations

    corr = pd.DataFrame(
        {
            "loss": ["ce", "ce", "mr2", "mr2"],
            "statistic": ["a_k", "s_k²", "a_k", "s_k²"],
            "rho": [-0.85, 0.15, -0.8, 0.5],
            "ci_low": [-0.9, 0.1, -0.85, 0.4],
            "ci_high": [-0.8, 0.2, -0.75, 0.6],
        }
    )
    fig, ax = plot_correlations(corr)
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    frame = ax.get_window_extent()
    assert legend.x0 >= frame.x1 - 1.0, (legend, frame)  # beside the panel, not over its points


def _fig5_frame():
    rng = np.random.default_rng(0)
    n = 12
    gap = np.r_[rng.uniform(0.002, 0.3, n - 2), [0.0, -0.004]]
    return pd.DataFrame(
        {
            "margin_term": rng.uniform(0.05, 1.0, n),
            "gen_gap": gap,
            "gen_gap_ci_low": gap - 0.003,
            "gen_gap_ci_high": gap + 0.003,
            "n_per_class": np.repeat([10, 100], n // 2),
            "K": 2,
        }
    )


def test_fig5_marks_the_linear_band_of_its_symlog_axis():
    from matplotlib.patches import Rectangle

    from paper_figs import fig5_bound_vs_gap as fig5

    fig, ax = fig5.plot_bound_vs_gap(_fig5_frame())
    assert ax.get_yscale() == "symlog"
    t = fig5.SYMLOG_THRESHOLD
    spans = [
        p
        for p in ax.patches
        if isinstance(p, Rectangle)
        and np.isclose(p.get_y(), -t)
        and np.isclose(p.get_y() + p.get_height(), t)
    ]
    assert spans, "no shaded band for the linear part of the axis"
    assert any("linear" in text.get_text() for text in ax.get_legend().get_texts())
    ticks = set(np.round(ax.get_yticks(), 6))
    assert {-t, 0.0, t} <= ticks, ticks


def test_fig4_always_labels_the_variance_ratio_one():
    from paper_figs import fig4_margin_vs_variance as fig4

    frame = pd.DataFrame(
        {
            "sigma_ratio": np.sqrt([0.25, 0.5, 2.0, 4.0]),  # K = 5: no setting at ratio 1
            "opt_log_margin_ratio": [-0.5, -0.2, 0.2, 0.5],
            "ci_low": [-0.7, -0.4, 0.0, 0.3],
            "ci_high": [-0.3, 0.0, 0.4, 0.7],
            "theory_log_margin_ratio": [-0.3, -0.1, 0.1, 0.3],
            "at_boundary": [False] * 4,
            "n_per_class": [100] * 4,
        }
    )
    fig, ax = fig4.plot_margin_vs_variance(frame)
    assert 1.0 in np.round(ax.get_xticks(), 6)
    fig.canvas.draw()
    assert "1" in [t.get_text() for t in ax.get_xticklabels()]


def test_fig8_explains_open_and_filled_markers():
    from paper_figs import fig8_probe_effects as fig8

    table = pd.DataFrame(
        {
            "loss": ["mr2", "mr2-shuffled"],
            "diff": [0.01, 0.002],
            "diff_ci_low": [0.004, -0.003],
            "diff_ci_high": [0.016, 0.007],
            "p_holm": [0.01, 0.9],
            "margin_error_rho": [-0.8, 0.0],
            "rho_ci_low": [-0.9, -0.2],
            "rho_ci_high": [-0.7, 0.2],
        }
    )
    fig, axes = fig8.plot_probe_effects(table, n_paired=24)
    entries = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("filled" in e and "significant" in e for e in entries), entries
    assert any("open" in e for e in entries), entries
    faces = [line.get_markerfacecolor() for line in axes[0].get_lines() if line.get_marker() == "o"]
    assert "white" in faces and any(f != "white" for f in faces)  # one open, one filled, as the legend says


def test_summary_lists_key_figures_in_numerical_order(tmp_path):
    from mr2_cli import demo

    figures = tmp_path / "figures"
    figures.mkdir()
    entries = []
    for n in demo.KEY_FIGURES:
        png = figures / f"fig{n}.png"
        png.write_bytes(b"")
        entries.append(
            {"number": n, "title": f"title {n}", "caption": "", "outputs": [str(png)], "error": None}
        )
    (figures / "index.json").write_text(json.dumps({"figures": entries[::-1]}))
    path = demo.write_summary(tmp_path, [], dataset="digits", total_seconds=1.0, tiny=True)
    text = path.read_text()
    shown = [int(n) for n in re.findall(r"### Figure (\d+):", text)]
    assert shown == sorted(shown) and len(shown) == len(demo.KEY_FIGURES), shown
