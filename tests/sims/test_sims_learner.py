"""The batched Newton learner: against scikit-learn at zero margins, a naive float64 loop, autograd,
the additive-margin identity for K = 2, the per-model loop, and determinism."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from sims.config import LearnerConfig, MixtureConfig
from sims.data import sample_training_sets
from sims.learner import fit, objective

RTOL_SKLEARN = 1e-5  # sklearn's lbfgs stops at its own tolerance; ours is 1e-10 in the gradient
ATOL_LOOP = 1e-12  # float64 agreement of vectorised code with a naive loop
ATOL_PARAMS = 1e-7  # two solves of one strictly convex problem to max |grad| < 1e-10


def _data(K=3, d=4, n=30, sets=2, seed=0):
    m = MixtureConfig(sigmas=tuple(np.linspace(0.7, 1.5, K)), n_per_class=(n,) * K, d=d)
    return sample_training_sets(m, sets, np.random.SeedSequence(seed))


def test_zero_margins_equal_multinomial_logistic_regression():
    X, y = _data(K=3)
    cfg = LearnerConfig(l2=0.05, tol=1e-10)
    res = fit(X, y, np.zeros((1, 3)), cfg)  # additive form with zero margins = plain cross-entropy
    assert res.converged.all()
    N = len(y)
    for s in range(X.shape[0]):
        # sklearn: C * sum_i CE + ||W||^2 / 2  ==  N C [mean CE + ||W||^2 / (2 N C)]  ->  l2 = 1 / (N C)
        clf = LogisticRegression(C=1 / (N * cfg.l2), tol=1e-12, max_iter=10_000).fit(X[s], y)
        np.testing.assert_allclose(res.W[s, 0], clf.coef_, rtol=RTOL_SKLEARN, atol=RTOL_SKLEARN)
        b = clf.intercept_ - clf.intercept_.mean()  # the same gauge: biases sum to 0
        np.testing.assert_allclose(res.b[s, 0], b, rtol=RTOL_SKLEARN, atol=RTOL_SKLEARN)


def test_zero_margins_two_classes_equal_binary_logistic_regression():
    X, y = _data(K=2)
    cfg = LearnerConfig(l2=0.05, tol=1e-10)
    res = fit(X, y, np.zeros((1, 2)), cfg)
    N = len(y)
    # two rows W_0 = -W_1 = -w / 2 penalised by l2/2 (|W_0|^2 + |W_1|^2) = l2/4 |w|^2  ->  C = 2 / (N l2)
    clf = LogisticRegression(C=2 / (N * cfg.l2), tol=1e-12, max_iter=10_000).fit(X[0], y)
    np.testing.assert_allclose(res.W[0, 0, 1] - res.W[0, 0, 0], clf.coef_[0], rtol=RTOL_SKLEARN)
    np.testing.assert_allclose(res.b[0, 0, 1] - res.b[0, 0, 0], clf.intercept_[0], rtol=RTOL_SKLEARN)


def _naive_objective(W, b, X, y, gamma, loss, l2):
    """F(W, b) with a loop over samples, in float64 (the reference for the vectorised code)."""
    total = 0.0
    for x, t in zip(X, y, strict=True):
        z = W @ x + b
        u = z - gamma[t] * np.eye(len(z))[t] if loss == "additive" else z / gamma[t]
        total += np.log(np.exp(u - u.max()).sum()) + u.max() - u[t]
    return total / len(y) + 0.5 * l2 * (W**2).sum()


@pytest.mark.parametrize("loss", ["additive", "temperature"])
def test_objective_and_gradient_against_a_naive_loop(loss):
    X, y = _data(K=3, sets=1)
    rng = np.random.default_rng(1)
    W = rng.normal(size=(1, 2, 3, 4))
    b = rng.normal(size=(1, 2, 3))
    gamma = np.array([[0.5, 1.0, 1.5], [1.2, 0.9, 0.9]])
    cfg = LearnerConfig(loss=loss, l2=0.1)
    Wt = torch.tensor(W, requires_grad=True)
    F = objective(Wt, torch.tensor(b), torch.tensor(X), torch.tensor(y), torch.tensor(gamma), cfg)
    for a in range(2):
        ref = _naive_objective(W[0, a], b[0, a], X[0], y, gamma[a], loss, cfg.l2)
        got = float(F[0, a].detach())
        assert abs(got - ref) < ATOL_LOOP, (got, ref)
    # at the learner's solution, autograd's gradient of the same objective vanishes
    res = fit(X, y, gamma, LearnerConfig(loss=loss, l2=0.1, tol=1e-10))
    Ws = torch.tensor(res.W, requires_grad=True)
    bs = torch.tensor(res.b, requires_grad=True)
    objective(Ws, bs, torch.tensor(X), torch.tensor(y), torch.tensor(gamma), cfg).sum().backward()
    assert Ws.grad.abs().max() < 1e-9 and bs.grad.abs().max() < 1e-9


def test_additive_margins_only_shift_the_bias_for_two_classes():
    # K = 2, additive form, unpenalised bias: the objective in (w, beta - (g0 - g1)/2) depends on
    # g0 + g1 only (docs/sims.md), so every allocation of one budget has the same W.
    X, y = _data(K=2, d=3, n=40, sets=2)
    g0 = np.linspace(0.2, 1.8, 5)
    gamma = np.stack([g0, 2.0 - g0], 1)
    res = fit(X, y, gamma, LearnerConfig(l2=0.02, tol=1e-11))
    np.testing.assert_allclose(res.W, np.broadcast_to(res.W[:, :1], res.W.shape), atol=ATOL_PARAMS)
    beta = res.b[..., 0] - res.b[..., 1]
    # beta = b_0 - b_1 = beta_uniform + (g0 - g1) / 2 = beta_uniform + g0 - 1
    shift = np.broadcast_to(g0 - g0[0], beta.shape)
    np.testing.assert_allclose(beta - beta[:, :1], shift, atol=ATOL_PARAMS)


def test_temperature_margins_change_the_direction():
    X, y = _data(K=2, d=3, n=40, sets=1)
    res = fit(X, y, np.array([[0.5, 1.5], [1.5, 0.5]]), LearnerConfig(loss="temperature", l2=0.02))
    w = res.W[0, :, 0] - res.W[0, :, 1]
    cos = (w[0] @ w[1]) / np.linalg.norm(w[0]) / np.linalg.norm(w[1])
    assert cos < 1 - 1e-6  # not a pure bias shift: the form is not the additive one in disguise


@pytest.mark.parametrize("loss", ["additive", "temperature"])
def test_batched_equals_per_model_loop_and_is_deterministic(loss):
    X, y = _data(K=3, sets=3)
    gamma = np.array([[1.0, 1.0, 1.0], [0.3, 1.2, 1.5], [2.0, 0.5, 0.5]])
    cfg = LearnerConfig(loss=loss, l2=0.05, tol=1e-10)
    batch = fit(X, y, gamma, cfg)
    assert batch.converged.all()
    for s in range(3):
        for a in range(3):
            one = fit(X[s : s + 1], y, gamma[a : a + 1], cfg)
            np.testing.assert_allclose(one.W[0, 0], batch.W[s, a], atol=ATOL_PARAMS)
            np.testing.assert_allclose(one.b[0, 0], batch.b[s, a], atol=ATOL_PARAMS)
    again = fit(X, y, gamma, cfg)
    np.testing.assert_array_equal(again.W, batch.W)


def test_warm_start_reaches_the_same_solution():
    X, y = _data(K=3, sets=1)
    gamma = np.array([[0.3, 1.2, 1.5]])
    cfg = LearnerConfig(loss="temperature", l2=0.05, tol=1e-10)
    cold = fit(X, y, gamma, cfg)
    warm = fit(X, y, gamma, cfg, init=(cold.W + 0.3, cold.b - 0.2))
    np.testing.assert_allclose(warm.W, cold.W, atol=ATOL_PARAMS)


def test_bad_inputs():
    X, y = _data(K=2, sets=1)
    with pytest.raises(ValueError, match="^margins="):
        fit(X, y, np.array([[0.0, 2.0]]), LearnerConfig(loss="temperature"))
    with pytest.raises(ValueError, match="^margins="):
        fit(X, y, np.array([[-0.1, 2.0]]), LearnerConfig())
    with pytest.raises(ValueError, match="^y="):
        fit(X, np.zeros_like(y), np.ones((1, 2)), LearnerConfig())
    with pytest.raises(ValueError, match="^X="):
        fit(X[0], y, np.ones((1, 2)), LearnerConfig())
