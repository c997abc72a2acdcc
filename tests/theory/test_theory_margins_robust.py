"""The margin rules on half-precision tensors and at zero spreads (gradients stay finite)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theory import gain_over_uniform, margin_objective, margin_term, optimal_margins

RTOL_HALF = {torch.bfloat16: 1e-2, torch.float16: 2e-3}  # about 3 (bf16) and 4 (fp16) significant digits
RTOL_GRAD = 1e-9  # float64 autograd against the analytic derivative
SPREAD = (1.0, 2.0, 4.0, 8.0, 27.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_in_half_precision_out(dtype):
    a64 = np.array(SPREAD)
    a = torch.tensor(SPREAD, dtype=dtype)
    g = optimal_margins(a, mean_margin=1.5)
    assert g.dtype == dtype and g.device == a.device
    ref = optimal_margins(a64, mean_margin=1.5)
    np.testing.assert_allclose(g.double().numpy(), ref, rtol=RTOL_HALF[dtype])
    ref_g = torch.tensor(ref, dtype=dtype)
    for fn in (margin_objective, margin_term):
        out = fn(a, ref_g)
        assert out.dtype == dtype
        expected = fn(a64, ref_g.double().numpy())
        assert float(out) == pytest.approx(float(expected), rel=RTOL_HALF[dtype])
    gain = gain_over_uniform(a)
    assert gain.dtype == dtype
    assert float(gain) == pytest.approx(float(gain_over_uniform(a64)), rel=RTOL_HALF[dtype])
    # the unvalidated hot path (the losses) and the all-zero case too
    assert optimal_margins(a, validate=False).dtype == dtype
    torch.testing.assert_close(optimal_margins(torch.zeros(3, dtype=dtype)), torch.ones(3, dtype=dtype))
    assert gain_over_uniform(torch.zeros(3, dtype=dtype)).dtype == dtype


def test_half_precision_bad_input_still_names_the_argument():
    with pytest.raises(ValueError, match=r"^spread=.*non-negative"):
        optimal_margins(torch.tensor([1.0, -2.0], dtype=torch.bfloat16))


def _analytic_jacobian(a: np.ndarray, e: float) -> np.ndarray:
    """d gamma_i / d a_j of gamma = K t / sum t, t = a^e: K e a_j^(e-1) (delta_ij S - t_i) / S^2."""
    K, t = a.size, a**e
    S = t.sum()
    with np.errstate(divide="ignore", invalid="ignore"):  # a_j = 0: inf (only healthy columns are read)
        dt = e * a ** (e - 1.0)
        return K * dt[None, :] * (np.eye(K) * S - t[:, None]) / S**2


@pytest.mark.parametrize("power", [2.0, 1.0, 3.5])
def test_zero_spread_leaves_the_other_gradients_finite_and_exact(power):
    a_np = np.array([0.0, 8.0, 27.0, 0.0, 5.0])
    healthy = a_np > 0
    jac = _analytic_jacobian(a_np, 1.0 / (power + 1.0))
    for i in range(a_np.size):
        a = torch.tensor(a_np, dtype=torch.float64, requires_grad=True)
        optimal_margins(a, power=power)[i].backward()
        grad = a.grad.numpy()
        assert np.all(np.isfinite(grad)), f"gamma_{i}: grad {grad}"
        np.testing.assert_allclose(grad[healthy], jac[i, healthy], rtol=RTOL_GRAD, atol=1e-15)
        assert np.all(grad[~healthy] == 0.0)  # the infinite one-sided derivative is reported as 0


def test_issue_example_and_finite_differences():
    a = torch.tensor([0.0, 8.0, 27.0], dtype=torch.float64, requires_grad=True)
    g = optimal_margins(a)
    g[1].backward()
    assert torch.isfinite(a.grad).all()
    # central differences on the healthy entries
    h = 1e-6
    for j in (1, 2):
        up, down = a.detach().clone(), a.detach().clone()
        up[j] += h
        down[j] -= h
        fd = (optimal_margins(up)[1] - optimal_margins(down)[1]) / (2 * h)
        assert float(a.grad[j]) == pytest.approx(float(fd), rel=1e-7)
    assert float(a.grad[1]) == pytest.approx(0.03, rel=1e-12)  # 3 * (1/12) * (5 - 2) / 25


def test_values_unchanged_by_the_safe_power():
    """The double where gives exactly x ** e (same bits) wherever x > 0, and 0 at 0."""
    rng = np.random.default_rng(3)
    a = np.exp(rng.uniform(-20, 20, 50))
    a[[3, 17]] = 0.0
    x = a / 50  # the uniform weights 1/K
    x = x / x.max()
    t = x ** (1.0 / 3.0)
    np.testing.assert_array_equal(optimal_margins(a), 50 * t / t.sum())
    at = torch.tensor(a, dtype=torch.float32)
    xt = torch.full_like(at, 1.0 / 50) * at
    xt = xt / xt.max()
    tt = xt ** (1.0 / 3.0)
    assert torch.equal(optimal_margins(at, validate=False), 50 * tt / tt.sum())
