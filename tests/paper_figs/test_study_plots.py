"""paper_figs.study_plots: every study plot draws on a given axes, in the losses' fixed colours, with
the intervals of mr2.report's tables (no CI of its own)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from mr2.report import build_report, class_intervals, paired_class_differences
from paper_figs import study_plots, style, synthetic

COLOR_ATOL = 1e-6


@pytest.fixture(scope="module")
def rep(tmp_path_factory):
    study = synthetic.write_runs(tmp_path_factory.mktemp("runs") / "plots", seeds=(0, 1, 2, 3), rng=1)
    return build_report(study)


def test_every_plot_takes_ax_and_returns_its_figure(rep):
    import matplotlib.pyplot as plt

    acc = class_intervals(rep.long)
    diff = paired_class_differences(rep.long, "mr2", "ce")
    order = list(range(10))
    draws = [
        lambda ax: study_plots.plot_sorted_class_accuracy(rep.long, ax=ax),
        lambda ax: study_plots.plot_class_accuracy(acc, ax=ax),
        lambda ax: study_plots.plot_paired_class_difference(diff, order, "mr2", ax=ax),
        lambda ax: study_plots.plot_paired_differences(rep.table, selection="last", ax=ax),
        lambda ax: study_plots.plot_spread_vs_error(rep.long, "ce", ax=ax),
        lambda ax: study_plots.plot_correlations(rep.corr, ax=ax),
    ]
    fig, axes = plt.subplots(1, len(draws))
    for draw, ax in zip(draws, axes, strict=True):
        got_fig, got_ax = draw(ax)
        assert got_fig is fig and got_ax is ax and ax.has_data()
    plt.close(fig)


def test_class_accuracy_bars_are_the_tables_intervals_in_fixed_colours(rep):
    import matplotlib.pyplot as plt

    acc = class_intervals(rep.long)
    fig, ax = plt.subplots()
    study_plots.plot_class_accuracy(acc, baseline="ce", ax=ax)
    order = list(acc[acc["loss"] == "ce"].sort_values("mean")["class_index"])
    ce = acc[acc["loss"] == "ce"].set_index("class_index").loc[order]
    bars = ax.containers[0]  # CE's errorbar container, drawn first
    assert np.allclose(to_rgb(bars.lines[0].get_color()), style.loss_color("ce"), atol=COLOR_ATOL)
    segments = bars.lines[2][0].get_segments()
    lows = np.array([seg[0][1] for seg in segments])
    highs = np.array([seg[1][1] for seg in segments])
    np.testing.assert_allclose(lows, np.clip(ce["ci_low"], 0, 1))
    np.testing.assert_allclose(highs, np.clip(ce["ci_high"], 0, 1))
    plt.close(fig)


def test_report_figures_are_written(rep, tmp_path):
    paths = study_plots.draw_report_figures(rep, tmp_path)
    assert set(paths) == {
        "sorted_class_accuracy", "class_accuracy", "paired_differences_accuracy",
        "paired_differences_worst_class_accuracy", "paired_differences_last", "spread_vs_error",
    }  # fmt: skip
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths.values())


def test_spread_plot_needs_spreads(rep):
    long = rep.long.copy()
    long.loc[long["loss"] == "mr2", "spread"] = np.nan
    with pytest.raises(ValueError, match="class_spread"):
        study_plots.plot_spread_vs_error(long, "mr2")
    with pytest.raises(ValueError, match="loss='focal'"):
        study_plots.plot_spread_vs_error(long, "focal")
