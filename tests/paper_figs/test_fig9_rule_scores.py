"""Figure 9 (rule scores): renders from tiny data, its plot functions take ``ax=``, and the scores it
draws are those of sims.scores on the rows it reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mr2_core.contracts import SIMS_RULES
from paper_figs import fig9_rule_scores as fig9
from paper_figs import style, synthetic
from sims.scores import rule_scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sims_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results") / "sims"
    synthetic.write_rule_scores(folder, rng=0)
    return folder


def test_main_renders_from_tiny_data(sims_dir, tmp_path):
    assert fig9.main(["--results", str(sims_dir.parent), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig9_rule_scores.png").read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(tmp_path / "fig9_rule_scores.csv")
    assert set(table["rule"]) == set(SIMS_RULES)


def test_plot_functions_draw_on_the_given_axes(sims_dir):
    import matplotlib.pyplot as plt

    scores = pd.read_csv(sims_dir / "rule_scores.csv")
    rows = pd.read_csv(sims_dir / "margin_vs_separation.csv")
    style.set_theme()
    fig, (a, b) = plt.subplots(1, 2)
    sub = scores[(scores["loss"] == "additive") & (scores["criterion"] == "balanced")]
    got_fig, got_ax = fig9.plot_rule_scores(sub, metric="mae", ax=a)
    assert got_fig is fig and got_ax is a
    # every rule's mean over regimes is the bar height it draws
    heights = [p.get_height() for p in a.patches]
    want = [sub.loc[sub["rule"] == r, "mae"].mean() for r in SIMS_RULES]
    np.testing.assert_allclose(heights, want, rtol=1e-12)
    by_sep = rule_scores(rows[rows["loss"] == "additive"], by=("K", "loss", "criterion", "separation"))
    got_fig, got_ax = fig9.plot_error_vs_separation(by_sep[by_sep["criterion"] == "balanced"], ax=b)
    assert got_ax is b and len(b.lines) == 2 * len(SIMS_RULES)  # one line per rule and K
    with pytest.raises(ValueError, match="metric"):
        fig9.plot_rule_scores(sub, metric="nope", ax=a)
    plt.close(fig)
