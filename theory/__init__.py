"""theory: the class-sensitive margin bound and its optimal margins.

* ``theory.margins``: the numeric rules (NumPy or torch), the single source of truth for ``mr2`` and
  ``sims``: the optimal margins under a sum or geometric budget, the minimax and per-class-bound
  rules, and the bound's complexity terms with their derived constant.
* ``theory.tradeoff``: the margins that minimise the bound with its empirical ramp risk kept
  (Gaussian class margins; NumPy and SciPy).
* ``theory.oracle``: the Gaussian oracle, the error-optimal margins of isotropic Gaussian classes
  (worst-class and balanced error; exact for two classes, nearest rival for more) and the
  temperature crossover of CE(z/gamma).
* ``theory.derivation``: the SymPy derivation, step by step (imported lazily: SymPy is slow to load);
  steps 8-12 on what the bound does and does not say live in ``theory.tradeoff_derivation``,
  ``theory.limits`` and ``theory.centring`` (the statistic with a bias in the head).
  ``theory.steps`` holds the printable ``Step``/``Derivation`` objects,
  ``theory.symbolic`` the summation and expectation rules the derivation applies, ``theory.theorem``
  renders THEOREM.md.
* ``theory.reference``: SciPy's numeric constrained optimiser, the independent check of the closed form.
* ``theory.bench``: ``mr2 bench theory``.
"""

from theory.margins import (
    BUDGETS,
    bound_term,
    centred_spread,
    class_bound_term,
    gain_over_uniform,
    ldam_margins,
    margin_objective,
    margin_term,
    minimax_margins,
    optimal_margins,
    per_class_margins,
    power_mean,
)
from theory.oracle import oracle_log_ratio, oracle_margins, oracle_share, temperature_crossover
from theory.tradeoff import Tradeoff, gaussian_ramp_risk, tradeoff_margins, two_gaussians

__all__ = [
    "BUDGETS",
    "optimal_margins",
    "minimax_margins",
    "per_class_margins",
    "margin_objective",
    "margin_term",
    "bound_term",
    "class_bound_term",
    "centred_spread",
    "gain_over_uniform",
    "power_mean",
    "ldam_margins",
    "Tradeoff",
    "tradeoff_margins",
    "gaussian_ramp_risk",
    "two_gaussians",
    "oracle_margins",
    "oracle_share",
    "oracle_log_ratio",
    "temperature_crossover",
]
