"""One outlier batch cannot ruin MR2's statistics: no overflow from finite features, and a statistic
that is still not finite is left out of the EMA (which keeps its previous values)."""

from __future__ import annotations

import warnings

import pytest
import torch

import mr2
from mr2.losses import MR2Loss
from mr2.losses.class_stats import batch_class_statistics, overflow_scale, overflow_shift, sq_norm

RTOL_F32 = 1e-5  # float32 statistics against a float64 computation of the same definition


def _lp_sq_f64(x: torch.Tensor, p: float) -> torch.Tensor:
    """||x||_p^2 in float64 with the largest entry factored out (cannot overflow)."""
    x = x.double()
    top = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-300)
    return top.squeeze(-1) ** 2 * ((x / top).abs() ** p).sum(dim=-1) ** (2.0 / p)


def _stats_f64(h: torch.Tensor, y: torch.Tensor, K: int, p: float):
    mean_norm, spread = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    for k in range(K):
        f = h[y == k].double()
        if len(f):
            mu = f.mean(dim=0)
            mean_norm[k] = _lp_sq_f64(mu, p)
            spread[k] = _lp_sq_f64(f - mu, p).mean()
    return mean_norm, spread


def test_reported_batch_gives_finite_loss_and_ema():
    torch.manual_seed(0)
    loss = mr2.make_loss("mr2", 5, norm_p=5.0)
    logits, feats, y = torch.randn(8, 5), torch.randn(8, 16) * 3e7, torch.arange(8) % 5
    value = loss(logits, feats, y)
    assert torch.isfinite(value)
    assert torch.isfinite(loss.mean_norm_ema).all() and torch.isfinite(loss.spread_ema).all()
    mean_norm, spread = _stats_f64(feats, y, 5, 5.0)
    torch.testing.assert_close(loss.mean_norm_ema.double(), mean_norm, rtol=RTOL_F32, atol=0)
    torch.testing.assert_close(loss.spread_ema.double(), spread, rtol=RTOL_F32, atol=0)
    assert int(loss.last["stats_skipped"]) == 0
    for _ in range(3):  # and the run goes on
        assert torch.isfinite(loss(torch.randn(8, 5), torch.randn(8, 16), y))


@pytest.mark.parametrize("layout", ["compact", "dense"])
@pytest.mark.parametrize("p", [5.0, 8.0, 3.0, 2.5, 12.0, 1.0])
@pytest.mark.parametrize("scale", [1e9, 1e15])
def test_no_overflow_while_the_statistic_is_representable(p, scale, layout):
    """Whenever ||h||_p^2 fits in float32, the float32 statistic equals the float64 one."""
    gen = torch.Generator().manual_seed(1)
    K, d = 3, 64
    h = torch.randn(24, d, generator=gen) * scale
    y = torch.arange(24) % K
    if float(_lp_sq_f64(h, p).max()) * 4 > torch.finfo(torch.float32).max:
        pytest.skip("not representable in float32 at this scale")
    mean_norm, spread = _stats_f64(h, y, K, p)
    for check_values in (True, False):  # host-side and on-device choice of the rescaling
        loss = MR2Loss(K, norm_p=p, check_values=check_values, layout=layout)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss(torch.randn(24, K, generator=gen), h, y)
        torch.testing.assert_close(loss.mean_norm_ema.double(), mean_norm, rtol=RTOL_F32, atol=0)
        torch.testing.assert_close(loss.spread_ema.double(), spread, rtol=RTOL_F32, atol=0)


@pytest.mark.parametrize("layout", ["compact", "dense"])
def test_non_finite_statistic_leaves_the_ema_unchanged_and_warns(layout):
    gen = torch.Generator().manual_seed(2)
    K = 4
    y = torch.arange(8) % K
    loss = MR2Loss(K, norm_p=2.0, statistic="centred", layout=layout)
    loss(torch.randn(8, K, generator=gen), torch.randn(8, 16, generator=gen), y)
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    # ||h||_2^2 ~ 16 * 9e38: beyond float32, whatever the rescaling
    huge = torch.randn(8, 16, generator=gen) * 3e19
    huge[y == 1] = torch.randn(2, 16, generator=gen)  # class 1 is fine and is updated
    with pytest.warns(RuntimeWarning, match=r"classes \[0, 2, 3\] are not finite in torch.float32.*float64"):
        loss(torch.randn(8, K, generator=gen), huge, y)
    assert int(loss.last["stats_skipped"]) == 3
    after = loss.state_dict()
    for name, value in before.items():
        for k in (0, 2, 3):
            assert torch.equal(after[name][k], value[k]), (name, k)
        assert name == "observations" or not torch.equal(after[name][1], value[1]), name
    assert loss.observations.tolist() == [1, 2, 1, 1]
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    # the next ordinary batch is finite and updates every class again
    value = loss(torch.randn(8, K, generator=gen), torch.randn(8, 16, generator=gen), y)
    assert torch.isfinite(value) and loss.observations.tolist() == [2, 3, 2, 2]


@pytest.mark.parametrize("layout", ["compact", "dense"])
def test_skip_without_value_checks_is_silent_and_identical(layout):
    gen = torch.Generator().manual_seed(3)
    K = 3
    y = torch.arange(9) % K
    batches = [
        torch.randn(9, 8, generator=gen),
        torch.randn(9, 8, generator=gen) * 3e19,
        torch.randn(9, 8, generator=gen),
    ]
    checked = MR2Loss(K, norm_p=2.0, layout=layout)
    silent = MR2Loss(K, norm_p=2.0, check_values=False, layout=layout)
    for i, h in enumerate(batches):
        logits = torch.randn(9, K, generator=gen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if i == 1 else "error")
            checked(logits, h, y)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no read-back, no warning
            silent(logits, h, y)
        for name, value in checked.state_dict().items():
            assert torch.equal(value, silent.state_dict()[name]), (i, name)
    assert int(silent.last["stats_skipped"]) == 0 and checked.observations.tolist() == [2, 2, 2]


def test_below_the_threshold_nothing_is_rescaled_and_the_bits_are_kept():
    """Ordinary features take the unscaled path (host), and the on-device scale is exactly 1."""
    assert (
        overflow_scale(1e5, 5.0, torch.float32) is None and overflow_scale(1e14, 2.0, torch.float32) is None
    )
    assert overflow_scale(3e7, 5.0, torch.float32) is not None
    gen = torch.Generator().manual_seed(4)
    h, y = 40 * torch.randn(64, 32, generator=gen), torch.randint(10, (64,), generator=gen)
    plain = batch_class_statistics(h, y, 10, norm_p=5.0)
    one = batch_class_statistics(h, y, 10, norm_p=5.0, scale=torch.ones(()))
    assert torch.equal(plain.mean_norm, one.mean_norm) and torch.equal(plain.spread, one.spread)


@pytest.mark.parametrize("p", [2.0, 5.0, 3.0, 2.5])
def test_power_of_two_scaling_is_exact(p):
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s = 2.0**-30
    scaled = sq_norm(x, p, scale=s) * 2.0**60
    if p == 2.0:
        assert torch.equal(scaled, sq_norm(x, p))  # products and sums of scaled binary floats are exact
    else:
        torch.testing.assert_close(scaled, sq_norm(x, p), rtol=1e-14, atol=0)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 5.0, 8.0])
def test_threshold_is_safe(p):
    """Features just under 2^T (the threshold that skips the rescaling) give finite statistics."""
    T = overflow_shift(p, torch.float32)
    h = torch.full((8, 4096), 2.0**T * 0.999)
    h[::2] *= -1
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    stats = batch_class_statistics(h, y, 2, norm_p=p)
    assert torch.isfinite(stats.mean_norm + stats.spread).all()
    assert float(stats.spread.max()) > 0
