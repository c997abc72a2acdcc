"""mr2.report on a synthetic study whose numbers are known: means, paired differences, Spearman, files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.io import write_json
from mr2.report import (
    load_study,
    plot_class_accuracy,
    plot_paired_differences,
    plot_sorted_class_accuracy,
    plot_spread_vs_error,
    spread_error_correlation,
    summary,
    verdict,
    write_report,
)

K, SEEDS = 10, (0, 1, 2, 3, 4)
N_BOOT = 400
GAIN = 0.02  # the synthetic "mr2" adds this to every class of the matching CE run
NAMES = [f"class{k}" for k in range(K)]


def _metrics(loss, seed, per_class, spread):
    acc = np.asarray(per_class)
    return {
        "accuracy": float(acc.mean()),
        "per_class_accuracy": acc.tolist(),
        "worst_class": int(acc.argmin()),
        "worst_class_accuracy": float(acc.min()),
        "bottom10_accuracy": float(np.sort(acc)[0]),
        "top10_accuracy": float(np.sort(acc)[-1]),
        "class_accuracy_std": float(acc.std()),
        "class_spread": list(spread),
        "class_within_spread": list(np.asarray(spread) / 2),
        "class_mean_norm2": list(np.asarray(spread) / 2),
        "dataset": "synthetic",
        "class_names": NAMES,
        "loss": loss,
        "seed": seed,
        "model": "none",
        "epochs": 1,
        "train_time_s": 10.0,
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "synthetic"
    rng = np.random.default_rng(0)
    for seed in SEEDS:
        ce = np.clip(np.linspace(0.6, 0.95, K) + rng.normal(0, 0.01, K), 0, 1)
        err = 1 - ce
        write_json(
            root / "ce" / f"seed{seed}" / "metrics.json", _metrics("ce", seed, ce, 1 + 5 * err)
        )  # rho = +1
        mr2 = ce + GAIN
        write_json(
            root / "mr2" / f"seed{seed}" / "metrics.json", _metrics("mr2", seed, mr2, 1 + 5 * mr2)
        )  # rho = -1
    write_json(
        root / "focal" / "seed0" / "metrics.json", _metrics("focal", 0, ce, np.ones(K))
    )  # one seed only
    return root


def test_report_summary_numbers(study):
    runs = load_study(study)
    assert runs["loss"].tolist()[:5] == ["ce"] * 5 and len(runs) == 11
    table = summary(runs, rng=0, n_boot=N_BOOT).set_index(["loss", "metric"])
    ce_acc = runs[runs["loss"] == "ce"]["accuracy"].mean()
    row = table.loc[("ce", "accuracy")]
    assert row["point"] == pytest.approx(ce_acc) and row["ci_low"] <= row["point"] <= row["ci_high"]
    diff = table.loc[("mr2", "accuracy")]
    assert diff["n_paired"] == 5 and diff["diff"] == pytest.approx(GAIN)
    assert diff["diff_ci_low"] == pytest.approx(GAIN) and diff["diff_ci_high"] == pytest.approx(GAIN)
    assert verdict("accuracy", diff["diff_ci_low"], diff["diff_ci_high"]) == "better"
    assert (
        verdict("class_accuracy_std", 0.01, 0.02) == "worse"
        and verdict("accuracy", -0.1, 0.1) == "no detectable change"
    )
    focal = table.loc[("focal", "accuracy")]  # one seed: a point, no interval
    assert focal["n_seeds"] == 1 and np.isnan(focal["ci_low"]) and focal["n_paired"] == 1


def test_report_same_seed_same_intervals(study):
    runs = load_study(study)
    a = summary(runs, rng=7, n_boot=N_BOOT)
    b = summary(runs, rng=7, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(a, b)
    c = summary(runs, rng=8, n_boot=N_BOOT)
    assert not np.allclose(a["ci_low"].fillna(0), c["ci_low"].fillna(0))


def test_report_spearman_on_known_orderings(study):
    corr = spread_error_correlation(load_study(study), rng=0, n_boot=N_BOOT).set_index(["loss", "statistic"])
    assert corr.loc[("ce", "a_k"), "rho"] == pytest.approx(1.0)
    assert corr.loc[("ce", "a_k"), "hardest_match"] == 1.0
    assert corr.loc[("mr2", "a_k"), "rho"] == pytest.approx(-1.0)
    assert np.isnan(corr.loc[("focal", "a_k"), "rho"])  # constant spread: rho undefined, not invented


def test_report_files_and_statement(study, tmp_path):
    paths = write_report(study, tmp_path / "rep", rng=0, n_boot=N_BOOT)
    text = paths["report"].read_text()
    assert "**mr2 vs ce** (5 paired seeds)" in text and "top-10%: **yes**" in text
    assert "+0.0200" in text
    table = pd.read_csv(paths["summary"])
    assert {"loss", "metric", "point", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high"} <= set(
        table
    )
    assert (tmp_path / "rep" / "sorted_class_accuracy.png").stat().st_size > 0


def test_report_plots_take_ax(study):
    import matplotlib.pyplot as plt

    runs = load_study(study)
    fig, axes = plt.subplots(1, 4)
    table = summary(runs, rng=0, n_boot=N_BOOT)
    for draw, ax in zip(
        (
            lambda ax: plot_sorted_class_accuracy(runs, ax=ax),
            lambda ax: plot_class_accuracy(runs, ax=ax),
            lambda ax: plot_paired_differences(table, ax=ax),
            lambda ax: plot_spread_vs_error(runs, loss="ce", ax=ax),
        ),
        axes,
        strict=True,
    ):
        got_fig, got_ax = draw(ax)
        assert got_ax is ax and got_fig is fig and ax.has_data()
    plt.close(fig)


def test_report_bad_study_dir(tmp_path):
    with pytest.raises(ValueError, match="study_dir="):
        load_study(tmp_path / "missing")
    with pytest.raises(ValueError, match="finished runs"):
        load_study(tmp_path)
