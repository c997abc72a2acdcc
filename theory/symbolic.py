"""Small, rigorous SymPy rules that ``theory.derivation`` needs and SymPy does not apply by itself.

* :func:`sum_linear`: linearity of a finite sum (split sums, pull out factors free of the index);
* :func:`assume_in_range`: drop the ``Piecewise`` that SymPy adds when it differentiates a sum with
  respect to one of its terms (valid because a class index lies in 1..K);
* :func:`rademacher_expectation`: the exact expectation of a polynomial in independent random signs;
* :func:`zero_check`: build a :class:`theory.steps.Check` from a residual that must simplify to 0;
* :func:`named`, :func:`symbols`, :func:`replace_indexed`, :func:`elasticity`, :func:`lambdify_numpy`
  and :func:`pad_from_one`: the helpers every step module shares (one home, public, no module state:
  a symbol carries its own LaTeX name).

Each rule is a textbook identity applied mechanically, so that a derivation that uses it stays a
proof: nothing here guesses or evaluates numerically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np
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
    "NamedSymbol",
    "named",
    "symbols",
    "replace_indexed",
    "elasticity",
    "lambdify_numpy",
    "pad_from_one",
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


# ------------------------------------------------------------------------------------------------
# shared helpers of the step modules


class NamedSymbol(sp.Symbol):
    """A SymPy symbol printed as its (Unicode) name and rendered in LaTeX as ``latex_name``.

    The LaTeX name travels with the symbol (SymPy's printers call ``_latex``), so no shared table of
    names is needed. Equal names and assumptions give the same (cached) symbol.
    """

    def __new__(cls, name: str, latex_name: str, **assumptions: Any) -> NamedSymbol:
        obj = super().__new__(cls, name, **assumptions)
        obj._latex_name = latex_name
        return obj

    def __getnewargs_ex__(self) -> tuple[tuple[str, str], dict[str, Any]]:
        return (self.name, self._latex_name), dict(self.assumptions0)

    def _latex(self, printer: Any) -> str:
        return self._latex_name


# SymPy orders the terms of a sum (when printing) and the arguments of commutative operations by
# comparing class names; under its own name a NamedSymbol would sort unlike a plain symbol and change
# how every formula prints. Named "Symbol", it sorts, hashes and prints exactly like one.
NamedSymbol.__name__ = "Symbol"


def named(text: str, latex: str, **assumptions: Any) -> NamedSymbol:
    """A symbol printed as ``text`` and rendered in LaTeX as ``latex``."""
    return NamedSymbol(text, latex, **assumptions)


@functools.cache
def symbols() -> SimpleNamespace:
    """The symbols shared by every step (indices run from 1)."""
    ns = SimpleNamespace()
    ns.K, ns.n, ns.d = sp.symbols("K n d", integer=True, positive=True)
    ns.i, ns.j, ns.k, ns.l, ns.c = sp.symbols("i j k l c", integer=True, positive=True)
    ns.p, ns.lam, ns.cbar, ns.B, ns.delta = sp.symbols("p lambda cbar B delta", positive=True)
    ns.S = named("S", r"S", positive=True)  # S = sum_j x_j^(1/(p+1))
    ns.T = named("T", r"T", positive=True)  # T = sum_j x_j
    ns.q = 1 / (ns.p + 1)
    ns.x = sp.IndexedBase("x", positive=True)  # x_k = w_k a_k
    ns.a = sp.IndexedBase("a", positive=True)  # a_k = ||mu_k||^2 + s_k^2
    ns.w = sp.IndexedBase("w", positive=True)  # weights in the objective
    ns.g = sp.IndexedBase("gamma", positive=True)  # margins
    ns.pihat = sp.IndexedBase("pihat", positive=True)  # n_k / n on the sample
    ns.pi = sp.IndexedBase("pi", positive=True)  # true class priors
    ns.cw = sp.IndexedBase("c", positive=True)  # loss weights c_k
    ns.L = sp.IndexedBase("L", positive=True)  # Lipschitz constant of class k's loss
    ns.nk = sp.IndexedBase("n", positive=True)  # n_k, samples of class k
    ns.rho = sp.IndexedBase("rho", positive=True)  # rho[k, i] = ||h_{k,i}||^2
    ns.count = sp.IndexedBase("N", positive=True)  # class sizes in the special cases
    return ns


def replace_indexed(expr: sp.Expr, base: sp.IndexedBase, fn: Callable[[Any], sp.Expr]) -> sp.Expr:
    """Substitute ``base[idx] -> fn(idx)`` everywhere, inside sums too."""
    return expr.replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == base,
        lambda e: fn(e.indices[0]),
    )


def elasticity(ratio: sp.Expr, var: sp.Expr) -> sp.Expr:
    """d log(ratio) / d log(var): the exponent e in ratio ~ var^e."""
    dummy = sp.Symbol("v_", positive=True)
    expr = sp.expand_log(sp.log(ratio.xreplace({var: dummy})), force=True)
    return sp.simplify(dummy * sp.diff(expr, dummy))


def lambdify_numpy(args: tuple, expr: sp.Expr) -> Callable[..., Any]:
    """``sympy.lambdify`` to NumPy."""
    return sp.lambdify(args, expr, modules="numpy")


def pad_from_one(v: Any) -> np.ndarray:
    """Indices run from 1 in the derivation: prepend a NaN so that v[1..K] are the entries (and any
    accidental use of v[0] shows up as NaN)."""
    v = np.asarray(v, dtype=np.float64)
    return np.concatenate([[np.nan], v])
