"""theory: the class-sensitive margin bound and its optimal margins.

* ``theory.margins``: the numeric rules (NumPy or torch), the single source of truth for ``mr2`` and
  ``sims``.
* ``theory.derivation``: the SymPy derivation, step by step (imported lazily: SymPy is slow to load);
  ``theory.steps`` holds the printable ``Step``/``Derivation`` objects, ``theory.symbolic`` the
  summation and expectation rules the derivation applies, ``theory.theorem`` renders THEOREM.md.
* ``theory.reference``: SciPy's numeric constrained optimiser, the independent check of the closed form.
* ``theory.bench``: ``mr2 bench theory``.
"""

from theory.margins import (
    gain_over_uniform,
    ldam_margins,
    margin_objective,
    margin_term,
    optimal_margins,
    power_mean,
)

__all__ = [
    "optimal_margins",
    "margin_objective",
    "margin_term",
    "gain_over_uniform",
    "power_mean",
    "ldam_margins",
]
