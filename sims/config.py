"""Typed, validated configurations of the Gaussian-mixture simulations (units in comments).

One frozen dataclass per concept:

* :class:`MixtureConfig`: the data (K classes in R^d, means, per-class covariances, sample sizes);
* :class:`LearnerConfig`: the margin loss and its solver;
* :class:`SearchConfig`: which margin allocations are tried;
* :class:`EvalConfig`: how test error is measured;
* :class:`Setting`: one cell of a sweep (all of the above plus seeds), with a stable ``key``.

Every constructor checks its arguments and raises ``ValueError`` through ``mr2_core.checks.bad`` so
that a bad config fails where it is written, not deep inside a batched solve.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mr2_core.checks import bad, check_int, positive_floats
from mr2_core.contracts import MARGIN_FORMS

__all__ = [
    "LOSS_FORMS",
    "MEAN_LAYOUTS",
    "MixtureConfig",
    "LearnerConfig",
    "SearchConfig",
    "EvalConfig",
    "Setting",
]

LOSS_FORMS = MARGIN_FORMS  # the margin forms' one home: mr2_core.contracts
MEAN_LAYOUTS = ("simplex", "orthogonal")
MIN_MC_PER_CLASS = 100_000  # our floor for Monte Carlo test points per class (docs/method.md, Targets)


@dataclass(frozen=True)
class MixtureConfig:
    """K Gaussian classes in R^d: x | y=k ~ N(mu_k, sigma_k^2 diag(cov_diag)).

    Means: ``simplex`` puts the K means at the vertices of a regular simplex centred at 0, each of
    norm ``mu`` (K = 2 gives +mu e1 and -mu e1; needs d >= K - 1); ``orthogonal`` puts mu_k = mu e_k
    (needs d >= K).
    """

    sigmas: tuple[float, ...]  # per-class standard deviation sigma_k (feature units); K = len(sigmas)
    n_per_class: tuple[int, ...]  # training examples per class n_k (count); balanced when all equal
    d: int  # input dimension (features)
    mu: float = 1.5  # norm of every class mean ||mu_k|| (feature units)
    means: str = "simplex"  # layout of the means: "simplex" or "orthogonal"
    cov_diag: tuple[float, ...] | None = None  # anisotropy: diag shape, length d, entries > 0; None = I

    def __post_init__(self) -> None:
        sig = positive_floats("sigmas", self.sigmas)
        if len(sig) < 2:
            raise bad("sigmas", self.sigmas, "one sigma per class and K >= 2 classes")
        object.__setattr__(self, "sigmas", sig)
        if isinstance(self.n_per_class, (int, np.integer)):
            raise bad("n_per_class", self.n_per_class, f"a sequence of {len(sig)} counts, one per class")
        n = tuple(check_int("n_per_class", v, 2) for v in self.n_per_class)
        if len(n) != len(sig):
            raise bad("n_per_class", self.n_per_class, f"{len(sig)} counts (one per sigma), got {len(n)}")
        object.__setattr__(self, "n_per_class", n)
        object.__setattr__(self, "d", check_int("d", self.d, 1))
        if not (isinstance(self.mu, (int, float, np.floating)) and math.isfinite(self.mu) and self.mu >= 0):
            raise bad("mu", self.mu, "a finite real number >= 0")
        object.__setattr__(self, "mu", float(self.mu))
        if self.means not in MEAN_LAYOUTS:
            raise bad("means", self.means, f"one of {MEAN_LAYOUTS}")
        need = self.K - 1 if self.means == "simplex" else self.K
        if self.d < need:
            raise bad("d", self.d, f"d >= {need} for {self.K} classes with {self.means} means")
        if self.cov_diag is not None:
            cd = positive_floats("cov_diag", self.cov_diag)
            if len(cd) != self.d:
                raise bad("cov_diag", self.cov_diag, f"{self.d} entries (one per dimension), got {len(cd)}")
            object.__setattr__(self, "cov_diag", cd)

    @property
    def K(self) -> int:
        return len(self.sigmas)

    @property
    def class_weights(self) -> np.ndarray:
        """pi_k = n_k / n, shape (K,): the class priors of the training set."""
        n = np.asarray(self.n_per_class, dtype=np.float64)
        return n / n.sum()

    def mean_vectors(self) -> np.ndarray:
        """The class means mu_k, shape (K, d), each of norm ``mu``."""
        K, d = self.K, self.d
        out = np.zeros((K, d))
        if self.means == "orthogonal":
            out[np.arange(K), np.arange(K)] = self.mu
            return out
        # Regular simplex: centre the K standard basis vectors of R^K, then write them in an
        # orthonormal basis of the (K-1)-dim subspace they span (QR), so that they fit in d >= K-1.
        centred = np.eye(K) - 1.0 / K
        q, _ = np.linalg.qr(centred.T)  # columns span the centred subspace (rank K-1)
        coords = centred @ q[:, : K - 1]  # shape (K, K-1)
        coords /= np.linalg.norm(coords, axis=1, keepdims=True)
        if K == 2:  # orient as docs/sims.md writes it: class 0 at +mu e1, class 1 at -mu e1
            coords *= np.sign(coords[0, 0])
        out[:, : K - 1] = self.mu * coords
        return out

    def cov_diagonals(self) -> np.ndarray:
        """Diagonals of Sigma_k, shape (K, d) (feature units squared)."""
        shape = np.ones(self.d) if self.cov_diag is None else np.asarray(self.cov_diag)
        return np.asarray(self.sigmas)[:, None] ** 2 * shape[None, :]

    def spread(self) -> np.ndarray:
        """Population a_k = ||mu_k||^2 + tr(Sigma_k), shape (K,): the theory's per-class spread."""
        return (self.mean_vectors() ** 2).sum(axis=1) + self.cov_diagonals().sum(axis=1)


@dataclass(frozen=True)
class LearnerConfig:
    """Linear softmax classifier z = W x + b trained on a margin loss to a gradient tolerance.

    Objective (convex in (W, b) for fixed margins in both forms; see docs/sims.md)::

        F(W, b) = (1/N) sum_i CE(u_i, y_i) + (l2 / 2) ||W||_F^2,   bias unregularised,
        additive:     u_i = z_i - gamma_{y_i} e_{y_i}   (LDAM-style, margin subtracted from the target)
        temperature:  u_i = z_i / gamma_{y_i}           (MR2's official code: logits / gamma[y])
    """

    loss: str = "additive"  # "additive" or "temperature"
    mean_margin: float = 1.0  # cbar: margin budget sum_k gamma_k = K cbar (logit units); official: 1
    l2: float = 1e-2  # lambda > 0: L2 penalty on W (per unit of mean loss); keeps F strictly convex
    tol: float = 1e-8  # stop when max |grad F| < tol (objective units per parameter unit)
    max_iter: int = 60  # Newton iterations before a model is declared not converged

    def __post_init__(self) -> None:
        if self.loss not in LOSS_FORMS:
            raise bad("loss", self.loss, f"one of {LOSS_FORMS}")
        for name in ("mean_margin", "l2", "tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
                raise bad(name, v, "a finite real number > 0")
            object.__setattr__(self, name, float(v))
        object.__setattr__(self, "max_iter", check_int("max_iter", self.max_iter, 1))


@dataclass(frozen=True)
class SearchConfig:
    """Margin allocations tried for one setting (the budget sum_k gamma_k = K cbar is kept).

    K = 2: a grid of ``grid_size`` log-ratios r = log(gamma_1 / gamma_0), uniform on
    [-log_ratio_max, log_ratio_max] (odd size, so r = 0, uniform margins, is on it).
    K > 2: gamma_k proportional to a_k^beta over ``beta_grid`` values uniform on [beta_min, beta_max],
    then ``refine_rounds`` rounds of a compass search in log-margin space from the best beta per
    criterion (step ``refine_step``, halved when no move helps).
    """

    grid_size: int = 41  # K = 2: number of log-ratios (odd)
    log_ratio_max: float = 3.0  # K = 2: largest |log(gamma_1 / gamma_0)| (nats)
    beta_grid: int = 21  # K > 2: number of exponents beta
    beta_min: float = -1.5  # K > 2: smallest beta (gamma_k ~ a_k^beta)
    beta_max: float = 1.5  # K > 2: largest beta
    refine_rounds: int = 3  # K > 2: compass-search rounds after the beta grid (0 = none)
    refine_step: float = 0.25  # K > 2: first compass step in log-margin units (nats)

    def __post_init__(self) -> None:
        g = check_int("grid_size", self.grid_size, 3)
        if g % 2 == 0:
            raise bad("grid_size", self.grid_size, "an odd integer (so that uniform margins are on the grid)")
        for name in ("log_ratio_max", "refine_step"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
                raise bad(name, v, "a finite real number > 0")
        check_int("beta_grid", self.beta_grid, 2)
        check_int("refine_rounds", self.refine_rounds, 0)
        if not self.beta_min < self.beta_max:
            raise bad("beta_max", self.beta_max, f"a number > beta_min={self.beta_min}")


@dataclass(frozen=True)
class EvalConfig:
    """How test error is measured: exact (Phi formula) for K = 2, Monte Carlo otherwise."""

    mc_per_class: int = MIN_MC_PER_CLASS  # Monte Carlo test points per class (>= 1e5)
    exact_two_class: bool = True  # K = 2: use the closed form instead of Monte Carlo

    def __post_init__(self) -> None:
        check_int("mc_per_class", self.mc_per_class, MIN_MC_PER_CLASS)


@dataclass(frozen=True)
class Setting:
    """One cell of a sweep: data, learner, search and evaluation, over ``n_seeds`` training draws.

    ``tag`` names the experiment family (e.g. ``"k2"``); ``varied`` and ``reference`` are the class
    indices whose margin ratio the K = 2 reports use (ignored for K > 2, which reports every class
    against ``reference``).
    """

    mixture: MixtureConfig
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    n_seeds: int = 20  # independent training sets (the unit of the bootstrap)
    base_seed: int = 0  # seeds are derived from (base_seed, key); same seed, same numbers
    tag: str = ""
    reference: int = 0  # index of the reference class (sigma_ref)

    def __post_init__(self) -> None:
        check_int("n_seeds", self.n_seeds, 2)
        check_int("base_seed", self.base_seed, 0)
        if not 0 <= self.reference < self.mixture.K:
            raise bad("reference", self.reference, f"a class index in [0, {self.mixture.K})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Setting:
        def tup(v: Any) -> Any:
            return tuple(v) if isinstance(v, list) else v

        mix = {k: tup(v) for k, v in d["mixture"].items()}
        return cls(
            mixture=MixtureConfig(**mix),
            learner=LearnerConfig(**d["learner"]),
            search=SearchConfig(**d["search"]),
            evaluation=EvalConfig(**d["evaluation"]),
            n_seeds=d["n_seeds"],
            base_seed=d["base_seed"],
            tag=d["tag"],
            reference=d["reference"],
        )

    @property
    def key(self) -> str:
        """A stable 16-hex-digit hash of the whole setting: the cache file name."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=float)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def seed_sequence(self, stream: int = 0) -> np.random.SeedSequence:
        """The root of this setting's draws: stream 0 = training sets, stream 1 = test points.

        It depends on ``base_seed`` and on the *shapes* of the mixture only (K, d, n_k, layout), not
        on sigma, mu or the learner. Settings that differ in sigma or loss therefore see the same
        standard-normal noise (common random numbers): comparisons across them are paired, and the
        bootstrap resamples seed indices jointly across them.
        """
        m = self.mixture
        shape = json.dumps([m.K, m.d, list(m.n_per_class), m.means])
        h = int(hashlib.sha256(shape.encode()).hexdigest()[:8], 16)
        return np.random.SeedSequence([self.base_seed, h, stream])
