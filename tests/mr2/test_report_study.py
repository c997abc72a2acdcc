"""mr2.report on synthetic studies whose truth is known.

The main study (``paper_figs.synthetic.write_runs``) has a per-seed deviation shared by every loss,
MR² = CE + 2 points on every class, focal = CE: the report's numbers must equal scipy's on the same
arrays (read straight from the JSON files), Holm must be applied over the report's family, the known
gain must be found and the null bounded (TOST, MDE). A hand-made study checks Spearman on known
orderings and a loss with a single seed; broken inputs must give clear errors.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mr2.report import (
    build_report,
    load_study,
    select,
    selection_rules,
    spread_error_correlation,
    summary,
    write_report,
)
from mr2_cli import cli
from mr2_core.contracts import REPORT_SUMMARY_COLUMNS, SELECTION_RULES, SUMMARY_METRICS
from mr2_core.io import write_json
from paper_figs import synthetic

SEEDS = tuple(range(6))
GAIN = 0.02  # MR² adds this to every class of CE's accuracy
EFFECTS = {"ce": 0.0, "focal": 0.0, "mr2": GAIN}
SEED_SD, NOISE_SD = 0.004, 0.003  # shared per-seed and per-run deviations (fractions)
RTOL = 1e-9  # the same closed form computed by us and by scipy
N_BOOT = 400
ALPHA = 0.05


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "synthetic"
    synthetic.write_runs(root, losses=("ce", "focal", "mr2"), seeds=SEEDS, rng=0, effects=EFFECTS,
                         seed_sd=SEED_SD, noise_sd=NOISE_SD)  # fmt: skip
    return root


def _scores(study, loss, rule, metric):
    """The per-seed numbers straight from the files, without the report's reader."""
    out = {}
    for seed in SEEDS:
        m = json.loads((study / loss / f"seed{seed}" / "metrics.json").read_text())
        out[seed] = m["selections"][rule][metric]
    return np.array([out[s] for s in SEEDS])


def _holm_by_definition(p):
    """Holm's adjusted p-values written out: sorted, scaled by (m - rank), running maximum, capped."""
    order = np.argsort(p)
    adj, running = np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def _link_scale_t(x, metric):
    """scipy's t interval of the mean on the metric's link scale (logit for accuracies, log for the
    std over classes), centred at the link of the mean with the delta-method SE, mapped back."""
    m, se = x.mean(), x.std(ddof=1) / np.sqrt(len(x))
    if metric == "class_accuracy_std":
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.log(m), scale=se / m)
        return _ci(np.exp(lo), np.exp(hi))
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.log(m / (1 - m)), scale=se / (m * (1 - m)))
    return _ci(1 / (1 + np.exp(-lo)), 1 / (1 + np.exp(-hi)))


def _ci(low, high):
    from types import SimpleNamespace

    return SimpleNamespace(low=low, high=high)


def test_report_numbers_equal_scipy_on_the_same_arrays(study):
    runs = load_study(study)
    assert selection_rules(runs) == SELECTION_RULES and len(runs) == 3 * len(SEEDS)
    table = summary(runs).set_index(["selection", "loss", "metric"])
    for rule in SELECTION_RULES:
        for metric in SUMMARY_METRICS:
            base = _scores(study, "ce", rule, metric)
            for loss in ("focal", "mr2"):
                x = _scores(study, loss, rule, metric)
                row = table.loc[(rule, loss, metric)]
                mean_ci = _link_scale_t(x, metric)
                paired = stats.ttest_rel(x, base)
                diff_ci = paired.confidence_interval(0.95)
                assert row["point"] == pytest.approx(x.mean(), rel=RTOL)
                assert (row["ci_low"], row["ci_high"]) == pytest.approx((mean_ci.low, mean_ci.high), rel=RTOL)
                assert row["diff"] == pytest.approx((x - base).mean(), rel=RTOL, abs=1e-15)
                assert (row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(
                    (diff_ci.low, diff_ci.high), rel=RTOL
                )
                assert row["p_value"] == pytest.approx(paired.pvalue, rel=RTOL)
                assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(x, base).pvalue, rel=RTOL)


def test_holm_is_applied_over_the_report_family(study):
    table = summary(load_study(study))
    tested = table[table["p_value"].notna()]
    # K = 10: the bottom-10% is the worst class, one test; 3 rules x 2 losses x 4 endpoints
    family = tested[tested["metric"] != "bottom10_accuracy"]
    assert table.attrs["n_tests"] == len(family) == len(SELECTION_RULES) * 2 * (len(SUMMARY_METRICS) - 1)
    np.testing.assert_allclose(family["p_holm"], _holm_by_definition(family["p_value"].to_numpy()), rtol=RTOL)
    alias = tested[tested["metric"] == "bottom10_accuracy"].set_index(["selection", "loss"])["p_holm"]
    worst = family[family["metric"] == "worst_class_accuracy"].set_index(["selection", "loss"])["p_holm"]
    pd.testing.assert_series_equal(alias, worst.loc[alias.index], check_names=False)
    assert (tested["p_holm"] >= tested["p_value"]).all()


def test_known_gain_is_found_and_the_null_is_bounded(study):
    table = summary(load_study(study)).set_index(["selection", "loss", "metric"])
    for rule in SELECTION_RULES:
        gain = table.loc[(rule, "mr2", "accuracy")]
        assert gain["diff"] == pytest.approx(GAIN, abs=4 * NOISE_SD / np.sqrt(len(SEEDS)))
        assert gain["verdict"].startswith("improves (Holm-adjusted p = ")
        null = table.loc[(rule, "focal", "accuracy")]
        assert null["verdict"].startswith("no detectable effect; effects larger than ")
        assert f"MDE at 80% power = {100 * null['mde']:.2f} points with {len(SEEDS)} seeds" in null["verdict"]
        assert abs(null["diff"]) < null["tost_bound"] < GAIN  # the null excludes MR²'s gain
        assert 0 < null["mde"] < GAIN


def test_selection_views_and_the_fallback_for_older_runs(study, tmp_path):
    runs = load_study(study)
    last = select(runs, "last").set_index(["loss", "seed"])
    assert last.loc[("mr2", 2), "accuracy"] == pytest.approx(_scores(study, "mr2", "last", "accuracy")[2])
    assert last["class_spread"].isna().all()  # measured on the top-level model, not the last epoch's
    table = summary(runs, selection=["last"])
    assert set(table["selection"]) == {"last"} and table.attrs["n_tests"] == 2 * (len(SUMMARY_METRICS) - 1)
    old = synthetic.write_runs(tmp_path / "old", seeds=(0, 1, 2), selections=False)
    old_runs = load_study(old)
    assert selection_rules(old_runs) == ("accuracy",)  # their select_metric
    assert set(summary(old_runs)["selection"]) == {"accuracy"}
    with pytest.raises(ValueError, match="selection='last'"):
        summary(old_runs, selection=["last"])


@pytest.mark.parametrize("ci", ["bca", "percentile"])
def test_bootstrap_intervals_same_seed_same_table(study, ci):
    runs = load_study(study)
    a = summary(runs, ci=ci, rng=7, n_boot=N_BOOT)
    b = summary(runs, ci=ci, rng=7, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(a, b)
    c = summary(runs, ci=ci, rng=8, n_boot=N_BOOT)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    assert (a["ci_method"] == ci).all()
    t = summary(runs)  # the tests do not depend on the interval method
    np.testing.assert_allclose(a["p_value"].fillna(-1), t["p_value"].fillna(-1), rtol=RTOL)


def _metrics(loss, seed, per_class, spread, k=10):
    acc = np.asarray(per_class, dtype=float)
    return {
        "accuracy": float(acc.mean()), "per_class_accuracy": acc.tolist(), "worst_class": int(acc.argmin()),
        "worst_class_accuracy": float(acc.min()), "bottom10_accuracy": float(np.sort(acc)[0]),
        "top10_accuracy": float(np.sort(acc)[-1]), "class_accuracy_std": float(acc.std()),
        "class_spread": list(spread), "class_within_spread": list(np.asarray(spread) / 2),
        "class_mean_norm2": list(np.asarray(spread) / 2), "dataset": "synthetic",
        "class_names": [f"class{i}" for i in range(k)], "loss": loss, "seed": seed,
        "select_metric": "accuracy",
    }  # fmt: skip


@pytest.fixture(scope="module")
def orderings(tmp_path_factory):
    """CE's spread rises with its error (rho = +1), MR²'s falls (rho = -1); focal has one seed."""
    root = tmp_path_factory.mktemp("runs") / "orderings"
    gen = np.random.default_rng(0)
    for seed in range(3):
        ce = np.clip(np.linspace(0.6, 0.95, 10) + gen.normal(0, 0.01, 10), 0, 1)
        write_json(root / "ce" / f"seed{seed}" / "metrics.json", _metrics("ce", seed, ce, 1 + 5 * (1 - ce)))
        mr2 = ce + 0.01
        write_json(root / "mr2" / f"seed{seed}" / "metrics.json", _metrics("mr2", seed, mr2, 1 + 5 * mr2))
    write_json(root / "focal" / "seed0" / "metrics.json", _metrics("focal", 0, ce, np.ones(10)))
    return root


def test_spearman_on_known_orderings(orderings):
    corr = spread_error_correlation(load_study(orderings)).set_index(["loss", "statistic"])
    assert (
        corr.loc[("ce", "a_k"), "rho"] == pytest.approx(1.0) and corr.loc[("ce", "a_k"), "hardest_match"] == 1
    )
    assert corr.loc[("mr2", "a_k"), "rho"] == pytest.approx(-1.0)
    assert np.isnan(corr.loc[("focal", "a_k"), "rho"])  # constant spread: rho undefined, not invented


def test_one_seed_gives_no_interval_and_no_test(orderings):
    table = summary(load_study(orderings)).set_index(["selection", "loss", "metric"])
    focal = table.loc[("accuracy", "focal", "accuracy")]
    assert focal["n_seeds"] == 1 and np.isnan(focal["ci_low"]) and np.isnan(focal["p_value"])
    assert focal["verdict"].startswith("1 paired seed: no interval and no test can be made")
    with pytest.raises(ValueError, match="n_boot="):
        summary(load_study(orderings), ci="bca", rng=0, n_boot=50)


def test_report_files_and_cli(study, tmp_path, capsys):
    rep = build_report(study)
    assert rep.rules == list(SELECTION_RULES) and set(rep.margins["loss"]) == {"mr2"}
    out = tmp_path / "rep"
    assert cli.main(["report", str(study), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    for heading in ("## Verdicts: each method vs CE", "### MR² vs CE", "### focal vs CE", "## Accuracy",
                    "## Paired difference to ce", "## The bound's spread",
                    "### Selected by best worst-class validation accuracy (`worst_class_accuracy`)",
                    "### Realised MR² margins at the end of training"):  # fmt: skip
        assert heading in text, heading
    assert "Holm-adjusted over the 24 comparisons" in text
    table = pd.read_csv(out / "summary.csv")
    assert list(table.columns) == list(REPORT_SUMMARY_COLUMNS)
    for name in ("sorted_class_accuracy", "class_accuracy", "paired_differences_last", "spread_vs_error"):
        assert (out / f"{name}.png").stat().st_size > 0 and f"]({name}.png)" in text
    paths = write_report(study, tmp_path / "tables", selection=["accuracy"])  # no figure callback
    assert set(paths) == {"summary", "correlation", "per_run", "per_run_rho", "report"}


def test_bad_inputs_are_clear_errors(study, tmp_path, capsys):
    runs = load_study(study)
    with pytest.raises(
        ValueError, match=r"baseline='cee': expected one of the study's losses \['ce', 'focal'"
    ):
        summary(runs, baseline="cee")
    assert cli.main(["report", str(study), "--baseline", "cee", "--no-plots", "--out", str(tmp_path)]) == 2
    assert "mr2 report: error: baseline='cee'" in capsys.readouterr().err
    assert cli.main(["report", str(study), "--ci", "bca", "--n-boot", "10", "--out", str(tmp_path)]) == 2
    assert "n_boot=10" in capsys.readouterr().err

    bad = tmp_path / "bad"
    synthetic.write_runs(bad, seeds=(0, 1))
    path = bad / "mr2" / "seed1" / "metrics.json"
    good = json.loads(path.read_text())
    write_json(path, [good])
    with pytest.raises(ValueError, match=rf"{path}=.*expected a JSON object"):
        load_study(bad)
    write_json(path, {**good, "per_class_accuracy": good["per_class_accuracy"][:9]})
    with pytest.raises(ValueError, match=rf"{path}: per_class_accuracy=.*list of 10"):
        load_study(bad)
    sel = {**good["selections"], "last": {**good["selections"]["last"], "worst_class_accuracy": "x"}}
    write_json(path, {**good, "selections": sel})
    with pytest.raises(ValueError, match=rf"{path}: selections.last.worst_class_accuracy='x'"):
        load_study(bad)
    with pytest.raises(ValueError, match="study_dir="):
        load_study(tmp_path / "missing")


def test_margin_range_covers_every_method_that_records_margins(tmp_path):
    """Methods named after their statistic (mr2-shuffled, mr2-separation, ...) get the table too."""
    from mr2.report import margin_range
    from mr2.study import load_study

    root = synthetic.write_runs(tmp_path, losses=("ce", "mr2", "mr2-shuffled"), seeds=(0, 1, 2), rng=0)
    table = margin_range(load_study(root))
    assert set(table["loss"]) == {"mr2", "mr2-shuffled"}
    assert set(table["quantity"]) == {"margin_min", "margin_max"}
    assert (table["n_runs"] == 3).all()
