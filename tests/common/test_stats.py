"""mr2_core.stats against SciPy and against the definitions, on seeded data.

Intervals: the t interval equals scipy's one-sample t interval; BCa equals ``scipy.stats.bootstrap``
called with the same Generator; the percentile method is ``bootstrap_ci`` unchanged. Paired tests:
``scipy.stats.ttest_rel``/``wilcoxon``; the MDE has the power it claims (noncentral t, and a Monte
Carlo of the t-test itself); the TOST bound is where two one-sided scipy tests start to reject; Holm
is checked by hand and against its step-down definition.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mr2_core.stats import (
    MIN_BOOT,
    bca_interval,
    bootstrap_ci,
    holm,
    interval_estimates,
    minimum_detectable_effect,
    paired_comparison,
    paired_power,
    seeds_for_effect,
    t_interval,
)

RTOL = 1e-10  # closed forms computed two ways (ours, scipy's)
N_BOOT = 500
N_SIM = 20_000  # Monte Carlo repetitions of a t-test
ALPHA = 0.05
POWER = 0.8


@pytest.fixture
def scores():
    gen = np.random.default_rng(42)
    return {"ce": gen.normal(0.9, 0.01, size=(5, 4)), "mr2": gen.normal(0.91, 0.02, size=(7, 4))}


# ------------------------------------------------------------------------------------ intervals
def test_t_interval_equals_scipy(scores):
    for arr in scores.values():
        point, (low, high) = t_interval(arr, confidence=0.9)
        ref = stats.ttest_1samp(arr, 0.0, axis=0).confidence_interval(0.9)
        np.testing.assert_allclose(point, arr.mean(0), rtol=RTOL)
        np.testing.assert_allclose(low, ref.low, rtol=RTOL)
        np.testing.assert_allclose(high, ref.high, rtol=RTOL)


def test_interval_table_t_by_key_and_index(scores):
    table = interval_estimates(scores, key_name="loss", index_names=["class_index"])
    assert list(table.columns) == ["loss", "class_index", "n_runs", "point", "ci_low", "ci_high"]
    for key, arr in scores.items():
        sub = table[table["loss"] == key].sort_values("class_index")
        _, (low, high) = t_interval(arr)
        np.testing.assert_allclose(sub["ci_low"], low, rtol=RTOL)
        np.testing.assert_allclose(sub["ci_high"], high, rtol=RTOL)
        assert (sub["n_runs"] == arr.shape[0]).all()
    scalar = interval_estimates({"a": scores["ce"][:, 0]})
    assert list(scalar.columns) == ["key", "n_runs", "point", "ci_low", "ci_high"] and len(scalar) == 1


def test_one_run_gives_a_point_and_no_interval(scores):
    table = interval_estimates({"one": scores["ce"][:1]}, method="bca", rng=0)
    np.testing.assert_allclose(table["point"], scores["ce"][0], rtol=RTOL)
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all()


def test_bca_equals_scipy_bootstrap_with_the_same_generator(scores):
    arr = scores["mr2"]
    point, (low, high) = bca_interval(arr, rng=np.random.default_rng(3), n_boot=N_BOOT)
    ref = stats.bootstrap(
        (arr,), np.mean, n_resamples=N_BOOT, axis=0, method="BCa", rng=np.random.default_rng(3)
    ).confidence_interval
    np.testing.assert_allclose(low, ref.low, rtol=RTOL)
    np.testing.assert_allclose(high, ref.high, rtol=RTOL)
    np.testing.assert_allclose(point, arr.mean(0), rtol=RTOL)


def test_bca_of_constant_scores_is_the_point():
    point, (low, high) = bca_interval(np.full((5, 2), 0.7), rng=0, n_boot=MIN_BOOT)
    np.testing.assert_array_equal(low, point)
    np.testing.assert_array_equal(high, point)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_methods_same_seed_same_table(scores, method):
    a = interval_estimates(scores, method=method, rng=11, n_boot=N_BOOT)
    b = interval_estimates(scores, method=method, rng=np.random.default_rng(11), n_boot=N_BOOT)
    c = interval_estimates(scores, method=method, rng=12, n_boot=N_BOOT)
    assert a.equals(b)
    assert not np.allclose(a["ci_low"], c["ci_low"])


def test_percentile_method_is_bootstrap_ci_and_bootstrap_ci_is_unchanged(scores):
    """interval_estimates(method='percentile') is bootstrap_ci, and bootstrap_ci still computes the
    percentile bootstrap written out below (the simulations' tables depend on it bit for bit)."""
    arr = scores["ce"]
    table = interval_estimates({"ce": arr}, method="percentile", rng=5, n_boot=N_BOOT)
    point, (low, high) = bootstrap_ci(arr, rng=5, n_boot=N_BOOT)
    np.testing.assert_array_equal(table["ci_low"], low)
    np.testing.assert_array_equal(table["ci_high"], high)
    gen = np.random.default_rng(5)
    idx = gen.integers(0, arr.shape[0], size=(N_BOOT, arr.shape[0]))
    boot = np.stack([arr[i].mean(0) for i in idx])
    ref_low, ref_high = np.quantile(boot, [0.025, 0.975], axis=0)
    np.testing.assert_array_equal(low, ref_low)
    np.testing.assert_array_equal(high, ref_high)


def test_t_interval_is_wider_than_percentile_at_five_seeds():
    """The reason for the default: at n = 5 the percentile bootstrap is ~0.63 x the t interval."""
    gen = np.random.default_rng(0)
    arr = gen.normal(size=(5, 200))
    t = interval_estimates({"x": arr})
    p = interval_estimates({"x": arr}, method="percentile", rng=0, n_boot=2000)
    ratio = np.median((p["ci_high"] - p["ci_low"]) / (t["ci_high"] - t["ci_low"]))
    expected = np.sqrt(4 / 5) * stats.norm.ppf(0.975) / stats.t.ppf(0.975, 4)
    assert ratio == pytest.approx(expected, abs=0.06)


def test_interval_estimates_bad_input(scores):
    with pytest.raises(ValueError, match="method="):
        interval_estimates(scores, method="normal")
    with pytest.raises(ValueError, match="rng="):
        interval_estimates(scores, method="bca")
    with pytest.raises(ValueError, match="n_boot="):
        interval_estimates(scores, method="percentile", rng=0, n_boot=MIN_BOOT - 1)
    with pytest.raises(ValueError, match="statistic="):
        interval_estimates(scores, np.median)
    with pytest.raises(ValueError, match="finite"):
        interval_estimates({"x": [0.1, np.nan]})
    with pytest.raises(ValueError, match="scores="):
        interval_estimates({})


# ---------------------------------------------------------------------------------- paired tests
@pytest.fixture
def pair():
    gen = np.random.default_rng(7)
    seed_effect = gen.normal(0.0, 0.02, size=8)  # shared by both methods on a seed: pairing helps
    base = 0.9 + seed_effect + gen.normal(0.0, 0.004, size=8)
    method = 0.9 + 0.005 + seed_effect + gen.normal(0.0, 0.004, size=8)
    return method, base


def test_paired_comparison_equals_scipy(pair):
    method, base = pair
    res = paired_comparison(method, base)
    ref = stats.ttest_rel(method, base)
    ci = ref.confidence_interval(0.95)
    assert res.n == 8 and res.diff == pytest.approx(np.mean(method - base), rel=RTOL)
    assert res.t_stat == pytest.approx(ref.statistic, rel=RTOL)
    assert res.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), rel=RTOL)
    assert res.wilcoxon_p == pytest.approx(stats.wilcoxon(method, base).pvalue, rel=RTOL)
    assert res.sd == pytest.approx(np.std(method - base, ddof=1), rel=RTOL)


def test_tost_bound_is_where_both_one_sided_tests_start_to_reject(pair):
    method, base = pair
    d = method - base
    res = paired_comparison(method, base, alpha=ALPHA)
    eps = 1e-6
    above, below = res.tost_bound * (1 + eps), res.tost_bound * (1 - eps)
    p_low = stats.ttest_1samp(d, -above, alternative="greater").pvalue  # H0: diff <= -delta
    p_high = stats.ttest_1samp(d, above, alternative="less").pvalue  # H0: diff >= delta
    assert max(p_low, p_high) < ALPHA
    p_low = stats.ttest_1samp(d, -below, alternative="greater").pvalue
    p_high = stats.ttest_1samp(d, below, alternative="less").pvalue
    assert max(p_low, p_high) >= ALPHA


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy on constant data
def test_constant_and_zero_differences():
    base = np.array([0.90, 0.91, 0.89, 0.92, 0.90])
    res = paired_comparison(base + 0.01, base)
    assert res.p_value == pytest.approx(stats.ttest_rel(base + 0.01, base).pvalue, abs=1e-12)  # 0 (or ~0)
    assert res.mde == pytest.approx(0.0, abs=1e-12) and res.ci_low == pytest.approx(0.01, abs=1e-12)
    zero = paired_comparison(base, base)
    assert zero.p_value == 1.0 and zero.wilcoxon_p == 1.0 and zero.tost_bound == 0.0
    with pytest.raises(ValueError, match="baseline="):
        paired_comparison(base, base[:4])
    with pytest.raises(ValueError, match="n_runs >= 2"):
        paired_comparison(base[:1], base[:1])


def test_wilcoxon_cannot_reject_below_six_pairs():
    """With 5 pairs all of the same sign the exact two-sided p is 2 / 2^5 = 0.0625 (documented)."""
    res = paired_comparison(np.arange(1.0, 6.0), np.zeros(5))
    assert res.wilcoxon_p == pytest.approx(2 / 2**5, rel=RTOL) and res.p_value < ALPHA


def test_power_is_the_noncentral_t_tail_mass():
    for n, effect, sd in ((3, 0.5, 1.0), (5, 1.2, 0.7), (12, 1.0, 1.1)):
        crit = stats.t.ppf(1 - ALPHA / 2, n - 1)
        nc = effect * np.sqrt(n) / sd
        ref = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
        assert paired_power(effect, sd, n, alpha=ALPHA) == pytest.approx(ref, rel=RTOL)
        assert paired_power(-effect, sd, n, alpha=ALPHA) == pytest.approx(ref, rel=RTOL)  # two-sided


def test_mde_has_the_power_it_claims():
    sd, n = 1.3, 5
    mde = minimum_detectable_effect(sd, n, power=POWER, alpha=ALPHA)
    assert paired_power(mde, sd, n, alpha=ALPHA) == pytest.approx(POWER, abs=1e-9)
    gen = np.random.default_rng(1)  # Monte Carlo of the paired t-test at the true effect = MDE
    d = gen.normal(mde, sd, size=(N_SIM, n))
    rate = np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < ALPHA)
    se = np.sqrt(POWER * (1 - POWER) / N_SIM)
    assert abs(rate - POWER) < 4 * se
    big = 400  # the normal approximation is good at large n
    approx = (stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)) * sd / np.sqrt(big)
    assert minimum_detectable_effect(sd, big) == pytest.approx(approx, rel=0.01)
    assert paired_comparison(*(np.array([1.0, 2.5, 2.0, 4.0, 3.5]), np.zeros(5))).mde == pytest.approx(
        minimum_detectable_effect(np.std([1.0, 2.5, 2.0, 4.0, 3.5], ddof=1), 5), rel=RTOL
    )


def test_seeds_for_effect_is_the_smallest_sufficient_n():
    assert seeds_for_effect(1.0, 0.5) == 34  # Cohen's d_z = 0.5: 34 pairs (as in G*Power)
    n = seeds_for_effect(1.1, 1.0)
    assert paired_power(1.0, 1.1, n) >= POWER > paired_power(1.0, 1.1, n - 1)
    assert n == 12
    assert seeds_for_effect(1.0, 30.0) == 2  # a huge effect still needs a pair to have a test
    assert paired_power(10.0, 1.0, 2) < POWER  # 2 pairs (1 df) are not enough at 10 SDs
    with pytest.raises(ValueError, match="effect="):
        seeds_for_effect(1.0, 0.0)
    with pytest.raises(ValueError, match="effect="):
        seeds_for_effect(1.0, 1e-4)


# ------------------------------------------------------------------------------------------- holm
def test_holm_by_hand():
    got = holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x = 0.02, 0.03, 0.06, 0.04 -> running max
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02], rtol=RTOL)
    np.testing.assert_allclose(holm([0.2]), [0.2])
    np.testing.assert_allclose(holm([0.6, 0.5]), [1.0, 1.0])


def _holm_rejections(p, alpha):
    """Holm's step-down procedure from its definition: walk the sorted p-values, reject while
    p_(i) <= alpha / (m - i + 1)."""
    order = np.argsort(p)
    reject = np.zeros(len(p), bool)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        reject[i] = True
    return reject


def test_holm_matches_the_step_down_definition():
    gen = np.random.default_rng(0)
    for _ in range(50):
        p = np.concatenate([gen.uniform(0, 0.02, gen.integers(0, 5)), gen.uniform(0, 1, gen.integers(1, 8))])
        adj = holm(p)
        assert np.all(adj >= p) and np.all(adj <= 1)
        for alpha in (0.01, 0.05, 0.1):
            np.testing.assert_array_equal(adj <= alpha, _holm_rejections(p, alpha))


def test_holm_bad_input():
    with pytest.raises(ValueError, match="pvalues="):
        holm([0.1, np.nan])
    with pytest.raises(ValueError, match="pvalues="):
        holm([])
