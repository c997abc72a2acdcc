"""The shipped reports (docs/results/*) hold no interval outside its metric's range, and the re-issue
from stored columns is exact.

Every ``summary.csv`` and ``correlation.csv`` under docs/results is checked: accuracies in [0, 1], the
std over classes >= 0, differences of accuracies in [-1, 1], Spearman rho in [-1, 1], each interval
holding its point. The re-issue (``mr2.report_reissue``) recovers the SD from a stored t interval and
must give the interval computed from the per-run values themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mr2.report import METRIC_BOUNDS
from mr2.report_reissue import reissue_correlation, reissue_summary, stored_sd
from mr2_core.stats import CORRELATION, UNIT, t_interval

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
SUMMARIES = sorted(RESULTS.glob("*/summary.csv"))
CORRELATIONS = sorted(RESULTS.glob("*/correlation.csv"))
EPS = 1e-12  # float slack of a CSV round trip


def _inside(frame, point, low, high, lo, hi):
    rows = frame[frame[low].notna()]
    bad = rows[(rows[low] < lo - EPS) | (rows[high] > hi + EPS) | (rows[low] > rows[point] + EPS)
               | (rows[high] < rows[point] - EPS)]  # fmt: skip
    return bad


def test_shipped_reports_exist():
    assert len(SUMMARIES) >= 7 and len(CORRELATIONS) == len(SUMMARIES)


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: p.parent.name)
def test_no_shipped_summary_interval_leaves_its_range(path):
    table = pd.read_csv(path)
    for metric, (lo, hi) in METRIC_BOUNDS.items():
        sub = table[table["metric"] == metric]
        bad = _inside(sub, "point", "ci_low", "ci_high", lo, hi)
        assert bad.empty, f"{path}: {metric} intervals outside [{lo}, {hi}]:\n{bad.head()}"
        bad = _inside(sub, "diff", "diff_ci_low", "diff_ci_high", -1.0, 1.0)
        assert bad.empty, f"{path}: {metric} differences outside [-1, 1]:\n{bad.head()}"


@pytest.mark.parametrize("path", CORRELATIONS, ids=lambda p: p.parent.name)
def test_no_shipped_correlation_interval_leaves_its_range(path):
    corr = pd.read_csv(path)
    bad = _inside(corr, "rho", "ci_low", "ci_high", -1.0, 1.0)
    assert bad.empty, f"{path}: rho intervals outside [-1, 1]:\n{bad.head()}"
    assert corr["ci_method"].notna().all()


def _plain_t(x):
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(0.95)
    return x.mean(), ci.low, ci.high


def test_reissue_from_stored_columns_is_exact():
    """A plain t interval stored as (mean, low, high, n) re-issues to the bounded interval of the runs."""
    gen = np.random.default_rng(0)
    acc = np.clip(gen.normal(0.97, 0.03, size=3), 0, 1)  # near 1: the plain t interval leaves [0, 1]
    base = acc - gen.normal(0.01, 0.02, size=3)
    point, low, high = _plain_t(acc)
    d = acc - base
    dpoint, dlow, dhigh = _plain_t(d)
    row = {"study": "s", "selection": "accuracy", "loss": "m", "metric": "worst_class_accuracy",
           "n_seeds": 3, "point": point, "ci_low": low, "ci_high": high, "ci_method": "t", "n_paired": 3,
           "diff": dpoint, "diff_ci_low": dlow, "diff_ci_high": dhigh, "diff_sd": d.std(ddof=1),
           "p_value": 0.2, "p_holm": 0.2, "wilcoxon_p": 0.25, "mde": 0.05, "tost_bound": 0.04,
           "verdict": "x"}  # fmt: skip
    assert stored_sd(low, high, 3) == pytest.approx(acc.std(ddof=1), rel=1e-12)
    new = reissue_summary(pd.DataFrame([row]), k=10).iloc[0]
    _, (lo, hi) = t_interval(acc, bounds=UNIT)
    assert (new["ci_low"], new["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
    assert new["ci_method"] == "t, logit scale (from the stored mean and SD)"
    rho = np.array([-0.9, -0.5, -0.95])
    _, rlow, rhigh = _plain_t(rho)
    stored = pd.DataFrame([{"loss": "m", "statistic": "a_k", "n_seeds": 3, "rho": rho.mean(), "ci_low": rlow,
                            "ci_high": rhigh, "hardest_match": 0.0}])  # fmt: skip
    assert stored["ci_low"].iloc[0] < -1  # the shipped failure
    new = reissue_correlation(stored, True).iloc[0]
    _, (lo, hi) = t_interval(rho, bounds=CORRELATION)
    assert (new["ci_low"], new["ci_high"]) == pytest.approx((lo, hi), rel=1e-12)
    assert new["ci_method"] == "t, fisher-z scale (from the stored mean and SD)"
