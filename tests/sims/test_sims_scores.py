"""sims.scores: each rule's prediction from the population, the trained boundary's geometry read back
from the exact class errors, and the scores (hand-computed cases, a closed form against evaluate)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sims.experiments as ex
from mr2_core.contracts import SIMS_COLUMNS, SIMS_RULE_COLUMNS, SIMS_RULES
from sims import scores
from sims.config import MixtureConfig
from sims.evaluate import exact_two_class_errors
from sims.verdict import PREDICTS_IN_CI, PREDICTS_MAE, rule_verdict
from theory import optimal_margins

RTOL = 1e-10  # closed forms evaluated in float64
N_RANDOM_RULES = 50  # random linear rules for the distance read-back


def test_two_class_predictions_match_the_hand_formulas():
    mu, d, ratio = 1.5, 20, 2.0
    mix = MixtureConfig(sigmas=(1.0, ratio), n_per_class=(100, 100), d=d, mu=mu)
    sig, delta = scores.oracle_inputs(mix)
    np.testing.assert_allclose(sig, [1.0, ratio], rtol=RTOL)
    assert delta == pytest.approx(2 * mu, rel=RTOL)
    bound = optimal_margins(mix.spread())
    worst = scores.rule_log_ratios(mix, bound, "worst_class", reference=0)
    # the bound: (1/3) log(a_v / a_ref), a = ||mu||^2 + d sigma^2; the worst-class oracle: log(s_v / s_ref)
    assert worst["bound"][1] == pytest.approx(np.log((mu**2 + d * ratio**2) / (mu**2 + d)) / 3, rel=RTOL)
    assert worst["oracle"][1] == pytest.approx(np.log(ratio), rel=RTOL)
    assert worst["ldam"][1] == 0 and worst["uniform"][1] == 0  # balanced classes
    # balanced: the densities cross at the boundary, phi(m_0/s_0)/s_0 = phi(m_1/s_1)/s_1, m_0 + m_1 = delta
    bal = scores.rule_log_ratios(mix, bound, "balanced", reference=0)["oracle"][1]
    m0 = delta / (1 + np.exp(bal))
    m1 = delta - m0
    lhs = np.exp(-0.5 * m0**2) / 1.0
    rhs = np.exp(-0.5 * (m1 / ratio) ** 2) / ratio
    assert lhs == pytest.approx(rhs, rel=1e-9)


def test_anisotropic_classes_project_on_the_mean_difference():
    cov = (4.0, 1.0, 1.0)
    mix = MixtureConfig(sigmas=(1.0, 3.0), n_per_class=(5, 5), d=3, cov_diag=cov)
    sig, _ = scores.oracle_inputs(mix)
    np.testing.assert_allclose(sig, [2.0, 6.0], rtol=RTOL)  # the means differ along e1, variance 4 sigma^2
    multi = MixtureConfig(sigmas=(1.0, 2.0, 3.0), n_per_class=(5,) * 3, d=3, cov_diag=cov)
    with pytest.raises(ValueError, match="cov_diag"):
        scores.oracle_inputs(multi)


def test_distances_read_back_from_exact_errors():
    """m_k = -sigma_k Phi^-1(err_k) is the signed distance of mean k from a linear rule's boundary."""
    rng = np.random.default_rng(3)
    mix = MixtureConfig(sigmas=(0.7, 1.9), n_per_class=(5, 5), d=4, mu=1.2)
    W = rng.normal(size=(N_RANDOM_RULES, 2, 4))
    b = rng.normal(scale=0.3, size=(N_RANDOM_RULES, 2))
    got = scores._distances(exact_two_class_errors(W, b, mix), np.array(mix.sigmas))
    w, beta = W[:, 0] - W[:, 1], b[:, 0] - b[:, 1]
    mu = mix.mean_vectors()
    norm = np.linalg.norm(w, axis=1)
    want = np.stack([(w @ mu[0] + beta) / norm, -(w @ mu[1] + beta) / norm], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    kept = got.sum(1) / np.linalg.norm(mu[0] - mu[1])
    assert np.all(kept <= 1 + 1e-9)  # no direction keeps more than the whole separation


def _frame(preds: dict[str, list[float]], opt, lo, hi) -> pd.DataFrame:
    n = len(opt)
    base = {"K": [2] * n, "loss": ["additive"] * n, "criterion": ["balanced"] * n, "d": [2] * n}
    base["n_per_class"] = [10] * n
    cols = {SIMS_RULE_COLUMNS[r]: preds[r] for r in SIMS_RULES}
    extra = {"opt_log_margin_ratio": opt, "ci_low": lo, "ci_high": hi, "at_boundary": [False] * n}
    return pd.DataFrame({**base, **cols, **extra})


def test_rule_scores_by_hand():
    frame = _frame(
        {"bound": [0.2, 0.4, 0.0], "oracle": [0.5, np.nan, 0.0], "ldam": [0, 0, 0], "uniform": [0, 0, 0]},
        opt=[0.6, 0.1, 0.3],
        lo=[0.4, -0.1, 0.2],
        hi=[0.8, 0.3, 0.4],
    )
    out = scores.rule_scores(frame).set_index("rule")
    assert list(out.columns[:5]) == list(SIMS_COLUMNS["rule_scores.csv"][:5])
    # the third row: every rule predicts 0 (uninformative), so it is left out of every score
    assert out.loc["bound", "settings"] == 2 and out.loc["bound", "mae"] == pytest.approx((0.4 + 0.3) / 2)
    assert out.loc["bound", "bias"] == pytest.approx((-0.4 + 0.3) / 2)
    assert out.loc["bound", "in_ci"] == 0.0
    assert out.loc["oracle", "settings"] == 1 and out.loc["oracle", "no_prediction"] == 1
    assert out.loc["oracle", "mae"] == pytest.approx(0.1) and out.loc["oracle", "in_ci"] == 1.0
    assert out.loc["uniform", "mae"] == pytest.approx(0.35) and out.loc["uniform", "in_ci"] == 0.5
    assert out.loc["oracle", "rank"] == 1 and out.loc["bound", "rank"] == 2  # tied with ldam and uniform
    with pytest.raises(ValueError, match="opt_log_margin_ratio"):
        scores.rule_scores(frame.drop(columns="opt_log_margin_ratio"))


def test_rule_verdict_pools_regimes_by_settings():
    rows = []
    for d, n_set, maes in ((2, 3, (0.1, 0.6)), (20, 1, (0.9, 0.2))):
        for rule, mae in zip(("bound", "oracle"), maes, strict=True):
            rows.append(dict(K=2, loss="additive", criterion="balanced", d=d, n_per_class=10, rule=rule,
                             settings=n_set, mae=mae, bias=mae, in_ci=0.75))  # fmt: skip
    rv = rule_verdict(pd.DataFrame(rows)).iloc[0]
    assert rv["mae_bound"] == pytest.approx((3 * 0.1 + 0.9) / 4)
    assert rv["mae_oracle"] == pytest.approx((3 * 0.6 + 0.2) / 4)
    assert rv["best"] == "bound" and rv["runner_up"] == "oracle"
    assert rv["predicts"] == (rv["best_mae"] < PREDICTS_MAE and rv["best_in_ci"] >= PREDICTS_IN_CI)


def test_the_separation_family_contains_the_variance_family():
    spec = ex.PresetSpec(
        sigma_ratios=(0.5, 2.0), n_per_class=(8,), dims=(1,), losses=("additive",), seeds_k2=2,
        grid_size=5, multi_sigmas=(0.5, 1.0, 2.0), multi_dims=(2,), multi_n=(8,), seeds_multi=2,
        beta_grid=3, refine_rounds=1, separations_k2=(0.75, 3.0), separations_multi=(1.0,),
    )  # fmt: skip
    var = {s.key for s in ex.preset_settings(spec=spec)}
    sep = ex.preset_settings(spec=spec, family="separation")
    assert var <= {s.key for s in sep}
    assert len(sep) == 3 * 2 + 2  # three K = 2 separations x two ratios, two K = 3 separations
    assert sorted({s.mixture.mu for s in sep if s.mixture.K == 2}) == [0.75, 1.5, 3.0]
    with pytest.raises(ValueError, match="family"):
        ex.preset_settings(spec=spec, family="nope")


def test_rule_verdict_names_tied_rules_together():
    maes = {"bound": 0.5, "oracle": 0.6, "ldam": 0.3, "uniform": 0.3}
    base = dict(
        K=2, loss="additive", criterion="balanced", d=2, n_per_class=10, settings=4, bias=0.0, in_ci=0.5
    )
    rows = [dict(base, rule=rule, mae=mae) for rule, mae in maes.items()]
    rv = rule_verdict(pd.DataFrame(rows)).iloc[0]
    assert rv["best"] == "ldam/uniform" and rv["runner_up"] == "bound"
    assert rv["margin"] == pytest.approx(0.2)
