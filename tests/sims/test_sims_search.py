"""The margin search: a 1-D two-class case with a closed-form optimum that the search must recover."""

import numpy as np
import pytest
from scipy.special import ndtr

from sims.config import EvalConfig, LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.evaluate import criterion
from sims.search import STAGE_GRID, STAGE_THEORY, SettingResult, parabolic_argmin, run_setting
from theory import optimal_margins

GRID = 201  # log-ratio grid points on [-2, 2]: step 0.02
ATOL_LOG_RATIO = 0.02  # one grid step: the search must land within it of the closed form
MU, S0, S1, CBAR = 1.0, 1.0, 1.6, 1.0


@pytest.fixture(scope="module")
def one_d():
    """d = 1, additive margins: every allocation keeps w and only moves the bias (docs/sims.md)."""
    mix = MixtureConfig(sigmas=(S0, S1), n_per_class=(400, 400), d=1, mu=MU)
    setting = Setting(
        mix,
        LearnerConfig(loss="additive", mean_margin=CBAR, l2=1e-2, tol=1e-11),
        SearchConfig(grid_size=GRID, log_ratio_max=2.0),
        EvalConfig(),
        n_seeds=2,
    )
    return run_setting(setting)


def test_search_recovers_the_closed_form_optimum(one_d):
    res = one_d
    # The uniform-margin model's parameters are not stored; recover w and beta_u exactly from its
    # error rates, err_0 = Phi(-(mu + t) / s0) and err_1 = Phi((t - mu) / s1) with t = beta / w.
    from scipy.special import ndtri

    grid = res.stage == STAGE_GRID
    r = res.log_ratio[grid]
    for s in range(res.setting.n_seeds):
        e0, e1 = res.errors[s, res.uniform_index]
        t_u = -ndtri(e0) * S0 - MU  # beta_u / w
        assert abs(t_u - (ndtri(e1) * S1 + MU)) < 1e-6  # both classes agree on t_u
        # w from the spacing of the grid models: beta moves by exactly g0 - 1 (test_sims_learner)
        e0_far = res.errors[s, np.flatnonzero(grid)[-1], 0]
        g0_far = res.margins[np.flatnonzero(grid)[-1], 0]
        w = (-ndtri(e0_far) * S0 - MU - t_u) ** -1 * (g0_far - CBAR)
        t_worst = MU * (S0 - S1) / (S0 + S1)
        qa = 1 / S0**2 - 1 / S1**2
        qb = 2 * MU / S0**2 + 2 * MU / S1**2
        qc = MU**2 / S0**2 - MU**2 / S1**2 - 2 * np.log(S1 / S0)
        roots = np.roots([qa, qb, qc]).real
        t_bal = roots[np.abs(roots) < MU][0]
        for crit, t_star in (("worst_class", t_worst), ("balanced", t_bal)):
            delta = w * (t_star - t_u)  # beta* - beta_u
            expected = np.log((CBAR - delta) / (CBAR + delta))
            got, edge = parabolic_argmin(r, criterion(res.errors[s, grid], crit))
            assert not edge
            assert abs(got - expected) < ATOL_LOG_RATIO, (
                f"{crit}: search {got:.4f}, closed form {expected:.4f}"
            )
            # and the closed-form rule really is optimal: its errors are the curve's minimum
            e = np.array([ndtr(-(MU + t_star) / S0), ndtr((t_star - MU) / S1)])
            assert criterion(e, crit) <= criterion(res.errors[s, grid], crit).min() + 1e-9


def test_theory_allocation_is_trained_but_not_searched(one_d):
    res = one_d
    assert res.stage[res.theory_index] == STAGE_THEORY and not res.search_mask()[res.theory_index]
    expected = optimal_margins(res.spread, mean_margin=CBAR, weights=[0.5, 0.5])
    np.testing.assert_allclose(res.theory_margins, expected)
    np.testing.assert_allclose(res.margins[res.theory_index], expected)
    np.testing.assert_allclose(res.margins[res.uniform_index], [CBAR, CBAR])
    np.testing.assert_allclose(res.margins.sum(1), 2 * CBAR)  # every candidate keeps the budget


def test_result_round_trip(one_d):
    back = SettingResult.from_bytes(one_d.to_bytes())
    assert back.setting == one_d.setting
    np.testing.assert_array_equal(back.errors, one_d.errors)
    np.testing.assert_array_equal(back.bound["theory"]["ramp_risk"], one_d.bound["theory"]["ramp_risk"])


def test_parabolic_argmin():
    x = np.linspace(-1, 1, 11)
    assert abs(parabolic_argmin(x, (x - 0.137) ** 2)[0] - 0.137) < 1e-12  # exact on a parabola
    assert parabolic_argmin(x, x) == (-1.0, True)
    pts, edge = parabolic_argmin(x, np.stack([(x - 0.3) ** 2, -x]))
    np.testing.assert_allclose(pts, [0.3, 1.0])
    assert edge.tolist() == [False, True]


def test_multiclass_search_is_deterministic_and_keeps_the_budget():
    mix = MixtureConfig(sigmas=(0.5, 1.0, 2.0), n_per_class=(20,) * 3, d=2, mu=2.0)
    setting = Setting(
        mix,
        LearnerConfig(loss="temperature"),
        SearchConfig(beta_grid=5, refine_rounds=1),
        EvalConfig(),
        n_seeds=2,
        reference=1,
    )
    a, b = run_setting(setting), run_setting(setting)
    np.testing.assert_array_equal(a.errors, b.errors)
    np.testing.assert_allclose(a.margins.sum(1), 3.0)
    assert a.margins.shape[0] == 5 + 1 + 2 * 2 * 3  # beta grid, theory, one compass round per criterion


def test_bound_term_is_the_derived_per_class_term(one_d):
    """bound_vs_gap's margin_term is 4 B sqrt(K / n_k) sqrt(a_hat_k) / gamma_k (theory.class_bound_term,
    step 10 of the derivation), averaged over seeds; written out by hand here."""
    from sims.experiments import bound_vs_gap

    frame = bound_vs_gap([one_d]).set_index(["choice", "class"])
    n, K = np.asarray(one_d.setting.mixture.n_per_class, dtype=float), 2
    for choice, idx in (("uniform", one_d.uniform_index), ("theory", one_d.theory_index)):
        parts, gam = one_d.bound[choice], one_d.margins[idx]
        by_hand = 4 * parts["weight_norm"][:, None] * np.sqrt(K / n) * np.sqrt(parts["spread_emp"]) / gam
        for k in range(K):
            assert frame.loc[(choice, k), "margin_term"] == pytest.approx(by_hand[:, k].mean(), rel=1e-12)
