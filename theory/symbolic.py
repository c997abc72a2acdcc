"""Small, rigorous SymPy rules that ``theory.derivation`` needs and SymPy does not apply by itself.

* :func:`sum_linear`: linearity of a finite sum (split sums, pull out factors free of the index);
* :func:`assume_in_range`: drop the ``Piecewise`` that SymPy adds when it differentiates a sum with
  respect to one of its terms (valid because a class index lies in 1..K);
* :func:`rademacher_expectation`: the exact expectation of a polynomial in independent random signs;
* :func:`zero_check`: build a :class:`theory.steps.Check` from a residual that must simplify to 0.

Each rule is a textbook identity applied mechanically, so that a derivation that uses it stays a
proof: nothing here guesses or evaluates numerically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sympy as sp

from theory.steps import Check

__all__ = [
    "sum_linear",
    "assume_in_range",
    "rademacher_expectation",
    "collapse_sums",
    "normalise_powers",
    "zero_check",
    "truth_check",
]


def _linear_one(summand: sp.Expr, limit: tuple) -> sp.Expr:
    """Sum(summand, limit) split over the terms of ``summand`` with index-free factors pulled out."""
    index, lo, hi = limit
    out = sp.S.Zero
    for term in sp.Add.make_args(sp.expand(summand)):
        const, dep = term.as_independent(index, as_Add=False)
        if dep == 1:  # a constant summand: the sum counts the terms
            out += const * (hi - lo + 1)
        else:
            out += const * sp.Sum(dep, (index, lo, hi))
    return out


def sum_linear(expr: sp.Expr) -> sp.Expr:
    """Apply linearity to every finite ``Sum`` in ``expr``, innermost first.

    ``Sum(a*f(i) + b, (i, lo, hi))`` becomes ``a*Sum(f(i), (i, lo, hi)) + b*(hi - lo + 1)`` when a and
    b do not depend on i. Multi-limit sums are treated as nested sums (innermost limit first).
    """
    if not isinstance(expr, sp.Basic) or not expr.has(sp.Sum):
        return expr
    if isinstance(expr, sp.Sum):
        summand = sum_linear(expr.function)  # bottom-up: inner sums first
        for limit in expr.limits:  # Sum(f, (i, ..), (c, ..)) = Sum(Sum(f, (i, ..)), (c, ..))
            summand = _linear_one(summand, limit)
        return summand
    return expr.func(*[sum_linear(a) for a in expr.args])


def assume_in_range(expr: sp.Expr, indices: Iterable[sp.Symbol]) -> sp.Expr:
    """Replace ``Piecewise((e, cond), (0, True))`` by ``e`` when ``cond`` only restricts ``indices``.

    SymPy differentiates ``Sum(f(j), (j, 1, K))`` with respect to ``x[k]`` as
    ``Piecewise((f'(k), (k >= 1) & (k <= K)), (0, True))``. A class index k lies in 1..K by
    definition, so the first branch is the derivative. Conditions that involve anything other than
    the index symbols and the number of classes are left alone.
    """
    allowed = set(indices)

    def fix(*args: Any) -> sp.Expr:
        if len(args) == 2 and args[1][1] == sp.true and args[1][0] == 0:
            cond = args[0][1]
            integers = {s for s in cond.free_symbols if s.is_integer}
            if cond.free_symbols == integers and integers & allowed:
                return args[0][0]
        return sp.Piecewise(*args)

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: fix(*e.args))


def rademacher_expectation(expr: sp.Expr, signs: Iterable[sp.Symbol]) -> sp.Expr:
    """E[expr] over independent uniform signs (each +1 or -1 with probability 1/2).

    ``expr`` must be a polynomial in ``signs``. E[prod_s s^e_s] = 1 if every e_s is even, else 0
    (independence and E[s] = 0, s^2 = 1); the expectation is linear in the monomials.
    """
    signs = list(signs)
    poly = sp.Poly(sp.expand(expr), *signs)
    return sp.Add(*[coeff for monom, coeff in poly.terms() if all(e % 2 == 0 for e in monom)])


def collapse_sums(expr: sp.Expr, replacements: dict[sp.Expr, sp.Symbol]) -> sp.Expr:
    """Replace every ``Sum`` whose summand simplifies to a key's summand (same limits) by its symbol.

    ``replacements`` maps ``Sum(f(j), limits)`` to a symbol that names it (``S`` for
    sum_j x_j^(1/(p+1))). Summands are compared after ``powsimp`` and ``simplify``, so that
    ``x_j * x_j**(-p/(p+1))`` is recognised as ``x_j**(1/(p+1))``.
    """

    def swap(node: sp.Sum) -> sp.Expr:
        for target, name in replacements.items():
            if node.limits == target.limits:
                diff = sp.powsimp(node.function, force=True) - target.function
                if sp.simplify(sp.powsimp(diff, force=True)) == 0:
                    return name
        return node

    return expr.replace(lambda e: isinstance(e, sp.Sum), swap)


def normalise_powers(expr: sp.Expr) -> sp.Expr:
    """Combine powers of the same base and bring every exponent to one fraction.

    ``x**(-p/(p+1) + 1 - 1/(p+1))`` becomes ``x**0 = 1``; ``simplify`` alone misses such exponents.
    Bases are positive symbols here, so ``force=True`` is valid.
    """
    expr = sp.powsimp(sp.expand_power_base(expr, force=True), force=True)
    return expr.replace(
        lambda e: isinstance(e, sp.Pow), lambda e: sp.Pow(e.base, sp.cancel(sp.together(e.exp)))
    )


def zero_check(claim: str, residual: sp.Expr, method: str, *, simplify: bool = True) -> Check:
    """A :class:`Check` that passes when ``residual`` simplifies to exactly 0.

    With ``simplify`` the residual is simplified with exponents normalised (:func:`normalise_powers`);
    without, it is only expanded (enough for polynomial identities, and much faster).
    """
    value = sp.simplify(normalise_powers(residual)) if simplify else sp.expand(residual)
    passed = value == 0
    return Check(claim, bool(passed), method, "residual 0" if passed else f"residual {value}")


def truth_check(claim: str, value: Any, method: str, detail: str = "") -> Check:
    """A :class:`Check` that passes when SymPy's three-valued answer ``value`` is ``True``.

    ``None`` (SymPy could not decide) counts as a failure: a check passes only when proven.
    """
    passed = value is True or value == sp.true
    return Check(claim, bool(passed), method, detail or f"SymPy answered {value}")
