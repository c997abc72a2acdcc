"""Exact error formula against Monte Carlo (input space and logit space), named tolerances."""

import numpy as np
import pytest

from sims.config import MixtureConfig
from sims.evaluate import (
    criterion,
    exact_two_class_errors,
    mc_errors,
    mc_errors_input_space,
    ramp_risk,
    train_errors,
)

N_SAMPLES = 100_000  # Monte Carlo points per class
N_SIGMA = 4.5  # tolerance in binomial standard errors: sqrt(p (1 - p) / N_SAMPLES)


def _tol(p):
    return N_SIGMA * np.sqrt(np.maximum(p * (1 - p), 1e-4) / N_SAMPLES)


@pytest.mark.parametrize("cov_diag", [None, (1.0, 0.3, 3.0)])
def test_exact_two_class_matches_monte_carlo(cov_diag):
    m = MixtureConfig(sigmas=(1.0, 2.0), n_per_class=(5, 5), d=3, mu=1.2, cov_diag=cov_diag)
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2))
    exact = exact_two_class_errors(W, b, m)
    for mc in (mc_errors(W, b, m, N_SAMPLES, 1), mc_errors_input_space(W, b, m, N_SAMPLES, 2)):
        err = np.abs(mc - exact)
        assert np.all(err <= _tol(exact)), f"expected {exact}, Monte Carlo gave {mc}"


def test_logit_space_mc_matches_input_space_for_five_classes():
    m = MixtureConfig(sigmas=(0.5, 0.7, 1.0, 1.4, 2.0), n_per_class=(5,) * 5, d=6, mu=2.0, means="orthogonal")
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(3, 5, 6)), rng.normal(size=(3, 5))
    a = mc_errors(W, b, m, N_SAMPLES, 4)
    c = mc_errors_input_space(W, b, m, N_SAMPLES, 5)
    # two independent estimates: their difference has sqrt(2) times one standard error
    assert np.all(np.abs(a - c) <= np.sqrt(2) * _tol(c)), f"logit space {a} vs input space {c}"
    np.testing.assert_array_equal(a, mc_errors(W, b, m, N_SAMPLES, 4))  # same seed, same numbers


def test_rank_deficient_logit_covariance():
    # W has rank 1 < K: W Sigma W^T has rank 1, the eigen square root must still be exact
    m = MixtureConfig(sigmas=(1.0, 1.0, 1.0), n_per_class=(5,) * 3, d=2, mu=1.0)
    W = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]])
    b = np.zeros((1, 3))
    a = mc_errors(W, b, m, N_SAMPLES, 0)
    c = mc_errors_input_space(W, b, m, N_SAMPLES, 1)
    assert np.all(np.abs(a - c) <= np.sqrt(2) * _tol(c))


def test_constant_rule_and_criteria():
    m = MixtureConfig(sigmas=(1.0, 2.0), n_per_class=(5, 5), d=2)
    err = exact_two_class_errors(np.zeros((1, 2, 2)), np.array([[1.0, 0.0]]), m)
    np.testing.assert_array_equal(err, [[0.0, 1.0]])  # always class 0
    e = np.array([[0.1, 0.3], [0.2, 0.2]])
    np.testing.assert_allclose(criterion(e, "balanced"), [0.2, 0.2])
    np.testing.assert_allclose(criterion(e, "worst_class"), [0.3, 0.2])
    with pytest.raises(ValueError, match="criterion"):
        criterion(e, "median")


def test_train_error_and_ramp_risk_by_hand():
    X = np.array([[[2.0], [0.5], [-1.0], [-0.2]]])  # one set, 4 points in 1-D
    y = np.array([0, 0, 1, 1])
    W = np.array([[[[1.0], [-1.0]]]])  # (S=1, A=1, K=2, d=1): z_0 - z_1 = 2x
    b = np.zeros((1, 1, 2))
    rho = np.array([4.0, 1.0, 2.0, 0.4])  # margins of the four points
    np.testing.assert_array_equal(train_errors(W, b, X, y), [[[0.0, 0.0]]])
    gamma = np.array([2.0, 1.0])
    ramp = np.clip(1 - rho / gamma[y], 0, 1)
    np.testing.assert_allclose(ramp_risk(W, b, X, y, gamma), [[[ramp[:2].mean(), ramp[2:].mean()]]])
