"""Smoke tests of paper_figs: every figure renders from tiny data in the contract's formats.

The data come from ``paper_figs.synthetic`` (invented numbers with the real files and columns of
docs/CONTRACTS.md); the tests check files, the index, caching and error paths, not the science.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mr2_cli import cli
from paper_figs import data, registry, style, synthetic
from paper_figs.common import FigureContext

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF"
MIN_BYTES = 2_000  # a rendered figure is far larger; an empty canvas PNG is ~1 kB


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return synthetic.write_all(tmp_path_factory.mktemp("results"), rng=0)


@pytest.fixture(scope="module")
def all_figures(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    rc = cli.main(["figures", "--results", str(results), "--out", str(out)])
    return rc, out


def test_every_figure_renders_as_pdf_and_png(all_figures):
    rc, out = all_figures
    assert rc == 0
    for n, modname in registry.FIGURES.items():
        mod = registry.figure_module(n)
        stem = out / f"fig{n}_{mod.NAME}"
        pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
        assert pdf.read_bytes()[:4] == PDF_MAGIC, modname
        assert png.read_bytes()[:8] == PNG_MAGIC, modname
        assert png.stat().st_size > MIN_BYTES and pdf.stat().st_size > MIN_BYTES, modname


def test_index_lists_caption_command_and_data(all_figures, results):
    _, out = all_figures
    text = (out / "INDEX.md").read_text()
    for n in registry.FIGURES:
        mod = registry.figure_module(n)
        assert f"## Figure {n}: {mod.TITLE}" in text
        assert f"mr2 figures --only {n} " in text
        assert f"fig{n}_{mod.NAME}.png" in text
    assert str(results / "sims" / "margin_vs_variance.csv") in text
    assert str(results / "bench" / "loss_bench.csv") in text
    index = json.loads((out / "index.json").read_text())
    assert [f["number"] for f in index["figures"]] == sorted(registry.FIGURES)
    assert all(f["error"] is None for f in index["figures"])


def test_figure_script_main_and_ax_argument(results, tmp_path):
    """Each script's main(argv) works alone, and plot functions draw on a given axes."""
    import matplotlib.pyplot as plt

    from paper_figs import fig3_theory_margins as fig3
    from paper_figs import fig4_margin_vs_variance as fig4

    assert fig3.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig3_theory_margins.pdf").is_file()
    style.set_theme()
    fig, ax = plt.subplots()
    frame = data.read_table(results / "sims" / "margin_vs_variance.csv", fig4.COLUMNS)
    got_fig, got_ax = fig4.plot_margin_vs_variance(frame[frame["criterion"] == "balanced"], ax=ax)
    assert got_fig is fig and got_ax is ax and len(ax.lines) > 0
    plt.close(fig)


def test_theory_figure_slopes_follow_the_rule():
    """Figure 3's plotted margins have log-log slope 1/(p+1) against spread (theory.optimal_margins)."""
    from paper_figs import fig3_theory_margins as fig3

    spread = np.geomspace(0.25, 4.0, 10)
    table = fig3.margins_table(spread)
    for p in fig3.POWERS:
        sub = table[table["power"] == p]
        slope = np.polyfit(np.log(sub["spread"]), np.log(sub["margin"]), 1)[0]
        assert slope == pytest.approx(1.0 / (p + 1), rel=1e-9)
        assert sub["margin"].mean() == pytest.approx(1.0, rel=1e-12)


def test_cached_data_is_not_recomputed(results, tmp_path, monkeypatch):
    def refuse(ctx, command, make):
        raise AssertionError(f"recomputed {command} although the file exists")

    monkeypatch.setattr(data, "make_missing", refuse)
    ctx = FigureContext(results=results, out=tmp_path, quick=True)
    assert data.sims_file(ctx, "bound_vs_gap.csv") == results / "sims" / "bound_vs_gap.csv"
    assert data.loss_bench_file(ctx) == results / "bench" / "loss_bench.csv"
    assert data.training_study(ctx) == results / "runs" / "synthetic"


def test_missing_data_runs_only_its_preset(tmp_path, monkeypatch):
    calls = []

    def fake(ctx, command, make):
        calls.append(command)
        synthetic.write_sims(tmp_path / "sims", rng=1)
        ctx.produced.append(command)

    monkeypatch.setattr(data, "make_missing", fake)
    out = tmp_path / "figs"
    rc = cli.main(["figures", "--results", str(tmp_path), "--out", str(out), "--only", "5", "--quick"])
    assert rc == 0
    assert calls == [f"mr2 simulate --preset bound-vs-gap --out {tmp_path / 'sims'} --quick"]
    index = (out / "INDEX.md").read_text()
    assert "Made now because it was missing: `mr2 simulate --preset bound-vs-gap" in index


def test_bad_only_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["figures", "--out", str(tmp_path), "--only", "99"]) == 2
    assert "--only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="figure numbers"):
        registry.parse_only(["x"])
    assert registry.parse_only(["1,2", "2", "6"]) == [1, 2, 6]


def test_a_broken_input_fails_its_figure_only(tmp_path, capsys):
    (tmp_path / "sims").mkdir()
    (tmp_path / "sims" / "bound_vs_gap.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "figs"
    rc = cli.main(["figures", "--results", str(tmp_path), "--out", str(out), "--only", "3,5"])
    assert rc == 1
    text = (out / "INDEX.md").read_text()
    assert "**Not drawn.**" in text and "margin_term" in text
    assert (out / "fig3_theory_margins.png").is_file()
    assert not (out / "fig5_bound_vs_gap.png").exists()
    assert "figure 5 not drawn" in capsys.readouterr().err


def test_figure_cis_are_t_intervals_and_none_from_one_seed(results):
    """Figures 1 and 2 read the study through mr2.report and draw t intervals from its tables (on the
    logit scale, by the delta method, so that they stay in [0, 1]: mr2_core.intervals)."""
    from scipy import stats
    from scipy.special import expit, logit

    from mr2.report import class_intervals, load_study, paired_class_differences, per_class_table

    runs = load_study(results / "runs" / "synthetic")
    assert len(runs) == 6 and all(p.endswith("metrics.json") for p in runs["path"])
    frame = per_class_table(runs)
    a = class_intervals(frame)
    ce = frame[frame["loss"] == "ce"].pivot(index="seed", columns="class_index", values="accuracy")
    x = ce.to_numpy()
    m, se = x.mean(0), x.std(0, ddof=1) / np.sqrt(len(x))
    low, high = expit(stats.t.interval(0.95, len(x) - 1, loc=logit(m), scale=se / (m * (1 - m))))
    got = a[a["loss"] == "ce"].sort_values("class_index")
    np.testing.assert_allclose(got["ci_low"], low, rtol=1e-9)
    np.testing.assert_allclose(got["ci_high"], high, rtol=1e-9)
    one = frame[frame["seed"] == 0]
    d = paired_class_differences(one, "mr2", "ce")
    ce0 = one[one["loss"] == "ce"].sort_values("class_index")["accuracy"].to_numpy()
    mr20 = one[one["loss"] == "mr2"].sort_values("class_index")["accuracy"].to_numpy()
    np.testing.assert_allclose(d["diff"], mr20 - ce0)
    assert d["ci_low"].isna().all()  # one seed: no CI is invented


def test_style_sizes_and_errors():
    assert style.figsize("single")[0] == style.SINGLE_COLUMN
    assert style.figsize("double", 0.5) == (style.DOUBLE_COLUMN, style.DOUBLE_COLUMN * 0.5)
    with pytest.raises(ValueError, match="width"):
        style.figsize("wide")
    with pytest.raises(ValueError, match="aspect"):
        style.figsize("single", 0)


def test_missing_runs_are_trained_with_the_quick_plan(tmp_path, monkeypatch):
    from paper_figs import plans

    monkeypatch.setattr(plans, "fashion_mnist_available", lambda data_dir=None: True)
    calls = []

    def fake_run(self, runs, losses=None, *, progress=True):
        calls.append((self.name, runs, losses))
        synthetic.write_runs(runs / self.study)
        return runs / self.study

    monkeypatch.setattr(plans.TrainingPlan, "run", fake_run)
    ctx = FigureContext(results=tmp_path, out=tmp_path / "figs", quick=True)
    study = data.training_study(ctx)
    plan = plans.PLANS["quick"]
    assert study == tmp_path / "runs" / plan.study
    assert calls == [("quick", tmp_path / "runs", ("ce", "mr2"))]
    assert ctx.produced == [plan.describe(tmp_path / "runs", ("ce", "mr2"))]  # the library call it made
    assert data.training_study(ctx) == study and len(calls) == 1  # cached for the next figure


def test_without_fashion_mnist_the_plans_fall_back_to_digits(monkeypatch):
    from paper_figs import plans

    monkeypatch.setattr(plans, "fashion_mnist_available", lambda data_dir=None: False)
    notices = []
    plan = plans.choose_plan("quick", notice=notices.append)
    assert plan.dataset == "digits" and plan.preset == "digits-smoke" and plan.study != "fmnist-quick"
    assert len(notices) == 1 and "apt-get install -y dataset-fashion-mnist" in notices[0]
    with pytest.raises(ValueError, match="plan"):
        plans.choose_plan("huge")


def test_redrawing_some_figures_keeps_the_others_in_the_index(tmp_path, capsys):
    """``--only`` redraws some figures; the index keeps the others while their files are there."""
    (tmp_path / "sims").mkdir()
    (tmp_path / "sims" / "bound_vs_gap.csv").write_text("a,b\n1,2\n")  # figure 5 fails on it
    out = tmp_path / "figs"
    assert cli.main(["figures", "--results", str(tmp_path), "--out", str(out), "--only", "3"]) == 0
    assert cli.main(["figures", "--results", str(tmp_path), "--out", str(out), "--only", "5"]) == 1
    text = (out / "INDEX.md").read_text()
    assert "## Figure 3:" in text and "## Figure 5:" in text
    assert text.index("## Figure 3:") < text.index("## Figure 5:")
    assert "Figure 3 was not redrawn by this run" in text
    assert "- Not redrawn by this run; drawn by `mr2 figures" in text and "--only 3`" in text
    index = json.loads((out / "index.json").read_text())
    assert [f["number"] for f in index["figures"]] == [3, 5]
    # a kept figure whose files are gone leaves the index
    (out / "fig3_theory_margins.png").unlink()
    assert cli.main(["figures", "--results", str(tmp_path), "--out", str(out), "--only", "5"]) == 1
    assert "## Figure 3:" not in (out / "INDEX.md").read_text()
    capsys.readouterr()
