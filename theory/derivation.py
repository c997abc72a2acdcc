"""The class-sensitive margin bound and its optimal margins, derived and checked in SymPy.

A thin public facade over the step modules (the layout of neural-tangents' ``stax.py`` over
``_src/``): it re-exports what a user or a notebook needs and holds no logic.

Every step is a :class:`theory.steps.Step` that prints (``str``, ``pretty()``), renders LaTeX
(``latex()``, Jupyter) and carries the checks SymPy ran when it was built:

1-3. ``theory.bound_derivation``: :func:`setting` (linear head ||W||_F <= B, ramp loss with margin
     gamma_y), :func:`identity` ((1/n) sum_i ||h_i||^2 = ||mu||^2 + s^2) and :func:`bound` (Maurer's
     vector contraction: the margin term sqrt(sum_k w_k a_k / gamma_k^2)).
4-5. ``theory.allocation_derivation``: :func:`allocation` (minimise sum_k x_k / gamma_k^p under
     sum_k gamma_k = K cbar) and :func:`special_cases` (MR2's a_k^(1/3), LDAM's n_k^(-1/4)).
6-7. ``theory.gain_derivation``: :func:`gain` (M_{1/(p+1)}(x) / M_1(x) <= 1) and :func:`non_centred`.
8.   ``theory.tradeoff_derivation``: the empirical ramp risk that the allocation leaves out.
9-11. ``theory.limits``: the budget, one bound per class, LDAM's place.
12.  ``theory.centring``: a bias in the head.
13-15. ``theory.oracle_derivation`` (two classes) and ``theory.oracle_kclass_derivation`` (K > 2):
       the Gaussian oracle.
16.  ``theory.temperature_derivation``: the temperature regime of CE(z/gamma).

:func:`derivation` (``theory.assembly``) assembles all sixteen, built once per process, and
:func:`numeric` (``theory.numeric_rules``) returns NumPy functions lambdified from the SymPy results,
which ``tests/theory`` compares with ``theory.margins``. The shared symbols and symbolic helpers live
in ``theory.symbolic``.
"""

from __future__ import annotations

from theory.allocation_derivation import allocation, special_cases
from theory.assembly import ASSUMPTIONS, builders, derivation
from theory.bound_derivation import bound, identity, setting
from theory.gain_derivation import gain, non_centred
from theory.numeric_rules import NumericRules, numeric
from theory.symbolic import symbols

__all__ = [
    "ASSUMPTIONS",
    "symbols",
    "setting",
    "identity",
    "bound",
    "allocation",
    "special_cases",
    "gain",
    "non_centred",
    "builders",
    "derivation",
    "numeric",
    "NumericRules",
]
