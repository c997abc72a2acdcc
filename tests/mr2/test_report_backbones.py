"""``mr2 report --over``: effects over backbones, with seeds nested in each, on synthetic studies whose
structure is known (``metrics.json`` with the contract's keys, ``mr2_core.contracts.METRICS_KEYS``).

MR²'s gain over CE differs from backbone to backbone (SD 2 points) while the probe seeds within a
backbone barely move (SD 0.1 point): the interval must be the t interval over the 5 backbone means
(scipy), far wider than the interval that pools all 20 seeds, and the backbone's share of the variance
must be near 1. With no backbone effect the share is near 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mr2.report_backbones import over_backbones, variance_components, write_over_report
from mr2_cli import cli
from mr2_core.contracts import METRICS_KEYS
from mr2_core.io import write_json
from mr2_core.summaries import class_summary

K, B, SEEDS = 10, 5, 4
GAINS = 0.01 + np.array([-0.03, -0.01, 0.0, 0.01, 0.03])  # MR² - CE per backbone (fractions)
WITHIN_SD = 0.001


def _metrics(loss, seed, acc):
    acc = np.clip(acc, 0, 1)
    spread = np.linspace(1, 2, K)
    out = {**class_summary(acc), "accuracy": float(acc.mean()), "per_class_accuracy": acc.tolist(),
           "class_spread": spread.tolist(), "class_mean_norm2": (spread / 2).tolist(),
           "class_within_spread": (spread / 2).tolist(), "dataset": "synthetic",
           "class_names": [f"c{i}" for i in range(K)], "loss": loss, "seed": seed,
           "select_metric": "accuracy"}  # fmt: skip
    assert set(METRICS_KEYS) <= set(out)
    return out


def _studies(root, gains, within_sd, rng=0):
    gen = np.random.default_rng(rng)
    dirs = []
    for b, gain in enumerate(gains):
        study = root / f"probe-b{b}"
        level = gen.normal(0, 0.02)  # the backbone's own accuracy level, shared by both methods
        for seed in range(SEEDS):
            ce = np.linspace(0.6, 0.95, K) + level + gen.normal(0, 0.002, K)
            mr2 = ce + gain + gen.normal(0, within_sd)  # the same shift on every class of that run
            write_json(study / "ce" / f"seed{seed}" / "metrics.json", _metrics("ce", seed, ce))
            write_json(study / "mr2" / f"seed{seed}" / "metrics.json", _metrics("mr2", seed, mr2))
        dirs.append(study)
    return dirs


def _backbone_means(dirs):
    import json

    out = []
    for study in dirs:
        d = [json.loads((study / "mr2" / f"seed{s}" / "metrics.json").read_text())["accuracy"]
             - json.loads((study / "ce" / f"seed{s}" / "metrics.json").read_text())["accuracy"]
             for s in range(SEEDS)]  # fmt: skip
        out.append(np.mean(d))
    return np.array(out)


def test_effect_is_tested_over_backbones_not_over_pooled_seeds(tmp_path):
    dirs = _studies(tmp_path, GAINS, WITHIN_SD)
    row = over_backbones(dirs).set_index(["selection", "loss", "metric"]).loc[("accuracy", "mr2", "accuracy")]
    means = _backbone_means(dirs)
    ref = stats.ttest_1samp(means, 0.0)
    ci = ref.confidence_interval(0.95)
    assert row["diff"] == pytest.approx(means.mean(), rel=1e-12)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert row["n_backbones"] == B and row["seeds_per_backbone"] == "4/4/4/4/4"
    naive = row["naive_ci_high"] - row["naive_ci_low"]
    # pooling the 20 seeds as independent would claim ~2.9x more precision (t_4 / sqrt 5 vs t_19 / sqrt 20)
    assert row["ci_high"] - row["ci_low"] > 2.5 * naive
    assert row["backbone_share"] > 0.95
    assert row["sd_between"] == pytest.approx(np.std(GAINS, ddof=1), rel=0.2)


def test_without_a_backbone_effect_the_share_is_small(tmp_path):
    dirs = _studies(tmp_path, np.full(B, 0.01), 0.005, rng=1)
    row = over_backbones(dirs).set_index(["selection", "loss", "metric"]).loc[("accuracy", "mr2", "accuracy")]
    assert row["backbone_share"] < 0.5
    assert row["verdict"].startswith("improves over backbones")


def test_variance_components_by_hand():
    groups = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])]
    comp = variance_components(groups)
    # MS_within = (2 + 2) / 4 = 1; MS_between = 3 * ((2 - 3.5)^2 + (5 - 3.5)^2) = 13.5; n0 = 3
    assert comp["var_within"] == pytest.approx(1.0) and comp["var_between"] == pytest.approx(12.5 / 3)
    assert comp["share"] == pytest.approx((12.5 / 3) / (12.5 / 3 + 1))
    with pytest.raises(ValueError, match="groups"):
        variance_components([np.array([1.0])])


def test_cli_over(tmp_path, capsys):
    dirs = _studies(tmp_path, GAINS, WITHIN_SD)
    out = tmp_path / "over"
    assert cli.main(["report", "--over", *map(str, dirs), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert (
        text.startswith("# Over 5 backbones")
        and "backbone share" in text
        and "| MR² | overall accuracy |" in text
    )
    assert cli.main(["report", str(dirs[0]), "--over", str(dirs[1]), "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    paths = write_over_report(dirs[:2], tmp_path / "two")
    assert "**Few backbones (2).**" in paths["report"].read_text()


def test_tost_and_mde_are_stated_over_backbones(tmp_path):
    from mr2_core.stats import minimum_detectable_effect

    dirs = _studies(tmp_path, GAINS, WITHIN_SD)
    table = over_backbones(dirs).set_index(["selection", "loss", "metric"])
    row = table.loc[("accuracy", "mr2", "accuracy")]
    means = _backbone_means(dirs)
    ci90 = stats.ttest_1samp(means, 0.0).confidence_interval(0.90)
    assert row["tost_bound"] == pytest.approx(max(abs(ci90.low), abs(ci90.high)), rel=1e-9)
    assert row["mde"] == pytest.approx(minimum_detectable_effect(np.std(means, ddof=1), B), rel=1e-9)
    assert row["mde"] > 0.02  # SD 2 points over 5 backbones: only a large effect is detectable
    if "no detectable effect" in row["verdict"]:
        assert f"{100 * row['tost_bound']:.2f} points are excluded" in row["verdict"]
    # below 3 backbones no bound is stated
    two = over_backbones(dirs[:2]).set_index(["selection", "loss", "metric"])
    two = two.loc[("accuracy", "mr2", "accuracy")]
    assert np.isnan(two["tost_bound"]) and np.isnan(two["mde"])
