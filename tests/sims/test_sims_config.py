"""Every bad config fails where it is written, with a message naming the argument."""

import numpy as np
import pytest

from sims.config import EvalConfig, LearnerConfig, MixtureConfig, SearchConfig, Setting

GOOD = dict(sigmas=(1.0, 2.0), n_per_class=(10, 10), d=2)


@pytest.mark.parametrize(
    "change, name",
    [
        ({"sigmas": (1.0, 0.0)}, "sigmas"),
        ({"sigmas": (1.0, -2.0)}, "sigmas"),
        ({"sigmas": (1.0, float("nan"))}, "sigmas"),
        ({"sigmas": (1.0,), "n_per_class": (10,)}, "sigmas"),  # K < 2
        ({"n_per_class": (10, 1)}, "n_per_class"),  # n < 2
        ({"n_per_class": (10, 10, 10)}, "n_per_class"),  # mismatched lengths
        ({"n_per_class": 10}, "n_per_class"),
        ({"d": 0}, "d"),
        ({"mu": -1.0}, "mu"),
        ({"means": "circle"}, "means"),
        ({"cov_diag": (1.0,)}, "cov_diag"),  # mismatched with d
        ({"cov_diag": (1.0, 0.0)}, "cov_diag"),
        ({"sigmas": (1.0,) * 5, "n_per_class": (10,) * 5, "d": 3}, "d"),  # simplex needs d >= K - 1
        ({"sigmas": (1.0,) * 3, "n_per_class": (10,) * 3, "d": 2, "means": "orthogonal"}, "d"),
    ],
)
def test_bad_mixture(change, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        MixtureConfig(**{**GOOD, **change})


@pytest.mark.parametrize(
    "cls, kwargs, name",
    [
        (LearnerConfig, {"loss": "hinge"}, "loss"),
        (LearnerConfig, {"l2": 0.0}, "l2"),
        (LearnerConfig, {"mean_margin": -1.0}, "mean_margin"),
        (LearnerConfig, {"tol": 0.0}, "tol"),
        (LearnerConfig, {"max_iter": 0}, "max_iter"),
        (SearchConfig, {"grid_size": 20}, "grid_size"),
        (SearchConfig, {"log_ratio_max": 0.0}, "log_ratio_max"),
        (SearchConfig, {"beta_min": 1.0, "beta_max": 0.0}, "beta_max"),
        (EvalConfig, {"mc_per_class": 1000}, "mc_per_class"),
    ],
)
def test_bad_other_configs(cls, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        cls(**kwargs)


def test_bad_setting():
    mix = MixtureConfig(**GOOD)
    with pytest.raises(ValueError, match="^n_seeds="):
        Setting(mix, n_seeds=1)
    with pytest.raises(ValueError, match="^reference="):
        Setting(mix, reference=2)


def test_setting_round_trip_and_key():
    s = Setting(MixtureConfig(**GOOD, cov_diag=(1.0, 0.5)), LearnerConfig(loss="temperature"))
    back = Setting.from_dict(s.to_dict())
    assert back == s and back.key == s.key
    assert Setting(MixtureConfig(**GOOD), LearnerConfig(l2=0.1)).key != Setting(MixtureConfig(**GOOD)).key


def test_spread_and_means():
    m = MixtureConfig(sigmas=(0.5, 1.0, 2.0), n_per_class=(5, 5, 5), d=4, mu=2.0, cov_diag=(1, 2, 3, 4))
    mu = m.mean_vectors()
    assert mu.shape == (3, 4)
    assert abs(mu.sum(0)).max() < 1e-12  # simplex: centred
    assert abs((mu**2).sum(1) - 4.0).max() < 1e-12
    expected = 4.0 + 10.0 * np.array(m.sigmas) ** 2  # ||mu_k||^2 + sigma_k^2 tr(diag)
    np.testing.assert_allclose(m.spread(), expected, rtol=1e-12)
    two = MixtureConfig(sigmas=(1.0, 2.0), n_per_class=(3, 3), d=2, mu=1.5).mean_vectors()
    assert two.tolist() == [[1.5, 0.0], [-1.5, 0.0]]
