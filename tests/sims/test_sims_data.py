"""The generator: shapes, moments, determinism, stability of seeds, common random numbers."""

import numpy as np
import pytest

from sims.config import MixtureConfig
from sims.data import sample, sample_training_sets

N_SAMPLES = 200_000
ATOL_MOMENT = 0.02  # about 4 standard errors of a mean or variance estimate from N_SAMPLES / K points


def test_moments_match_the_config():
    m = MixtureConfig(
        sigmas=(0.5, 2.0), n_per_class=(N_SAMPLES // 2,) * 2, d=3, mu=1.5, cov_diag=(1.0, 0.5, 0.25)
    )
    X, y = sample(m, 0)
    assert X.shape == (N_SAMPLES, 3) and y.shape == (N_SAMPLES,)
    for k in range(2):
        xk = X[y == k]
        np.testing.assert_allclose(xk.mean(0), m.mean_vectors()[k], atol=ATOL_MOMENT * m.sigmas[k])
        np.testing.assert_allclose(xk.var(0) / m.cov_diagonals()[k], 1.0, atol=ATOL_MOMENT)


def test_same_seed_same_numbers_and_generator_accepted():
    m = MixtureConfig(sigmas=(1.0, 2.0, 3.0), n_per_class=(4, 5, 6), d=2)
    a, ya = sample(m, 7)
    b, yb = sample(m, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, [0] * 4 + [1] * 5 + [2] * 6)
    assert not np.array_equal(a, sample(m, 8)[0])
    with pytest.raises(ValueError, match="seed"):
        sample(m, None)


def test_training_sets_stable_and_common_noise():
    m1 = MixtureConfig(sigmas=(1.0, 2.0), n_per_class=(5, 5), d=2)
    m2 = MixtureConfig(sigmas=(1.0, 4.0), n_per_class=(5, 5), d=2)
    X3, _ = sample_training_sets(m1, 3, np.random.SeedSequence(1))
    X5, _ = sample_training_sets(m1, 5, np.random.SeedSequence(1))
    np.testing.assert_array_equal(X3, X5[:3])  # adding seeds keeps the earlier training sets
    root = np.random.SeedSequence(1)
    np.testing.assert_array_equal(sample_training_sets(m1, 2, root)[0], sample_training_sets(m1, 2, root)[0])
    Y, y = sample_training_sets(m2, 3, np.random.SeedSequence(1))
    eps1 = (X3 - m1.mean_vectors()[y]) / np.sqrt(m1.cov_diagonals()[y])
    eps2 = (Y - m2.mean_vectors()[y]) / np.sqrt(m2.cov_diagonals()[y])
    np.testing.assert_allclose(eps1, eps2, rtol=1e-12)  # the same noise under another sigma
