"""The derivation assembled: the sixteen steps in order, the assumptions and the theorem text.

Steps 1-3 (``theory.bound_derivation``), 4-5 (``theory.allocation_derivation``), 6-7
(``theory.gain_derivation``), 8 (``theory.tradeoff_derivation``), 9-11 (``theory.limits``), 12
(``theory.centring``), 13-14 (``theory.oracle_derivation``), 15 (``theory.oracle_kclass_derivation``)
and 16 (``theory.temperature_derivation``). The step modules import only
``theory.steps``, ``theory.symbolic`` and earlier steps; this module is the only one that imports them
all, and ``theory.derivation`` re-exports it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import sympy as sp

from theory.allocation_derivation import allocation, special_cases
from theory.bound_derivation import bound, identity, setting
from theory.centring import bias
from theory.gain_derivation import gain, non_centred
from theory.limits import budget, per_class, worst_class
from theory.oracle_derivation import oracle_balanced, oracle_worst
from theory.oracle_kclass_derivation import oracle_many
from theory.steps import Derivation, Step
from theory.temperature_derivation import temperature
from theory.tradeoff_derivation import tradeoff

__all__ = ["ASSUMPTIONS", "BUILDERS", "builders", "derivation", "theorem_text"]

ASSUMPTIONS = (
    "**A1 (data).** The sample $S = \\{(h_i, y_i)\\}_{i=1}^n$ is drawn i.i.d. from a distribution $D$ on "
    "$\\mathbb{R}^d \\times \\{1, \\dots, K\\}$. The features $h = \\phi(x)$ come from a fixed map that "
    "was not fitted on $S$ (a frozen backbone); a representation learnt on $S$ is not covered.",
    "**A2 (hypotheses).** A linear head $f_W(h) = W h$, $W \\in \\mathbb{R}^{K \\times d}$, "
    "$\\|W\\|_F \\le B$. No bias: a bias is a constant feature 1 appended to $h$, which adds 1 to every "
    "$a_k$.",
    "**A3 (margins).** $\\gamma_k > 0$ are fixed before $S$ is seen. Margins computed from the same "
    "training features (as MR² does) need a union bound over a grid of margin vectors, which adds "
    "$O(\\sqrt{\\log(\\text{grid size}) / n})$.",
    "**A4 (loss).** The ramp loss $\\ell_{\\gamma_y}$ of the multi-class margin "
    "$m_W(h, y) = (Wh)_y - \\max_{j \\ne y} (Wh)_j$, weighted by $c_y > 0$: $c \\equiv 1$ bounds the "
    "risk $P_D(m_W \\le 0)$; $c_y = 1 / (K \\pi_y)$ with the true class priors $\\pi_y$ bounds the "
    "balanced error $\\frac{1}{K}\\sum_k P_D(m_W \\le 0 \\mid y = k)$. Both coincide when classes are "
    "balanced.",
    "**A5 (statistics).** $a_k = \\frac{1}{n_k} \\sum_{i: y_i = k} \\|h_i\\|_2^2 = \\|\\mu_k\\|_2^2 + s_k^2$ "
    "on the sample (L2 norms, uncentred features), $\\hat\\pi_k = n_k / n$, every $n_k \\ge 1$.",
)

# Every step's builder, in the order of the derivation.
BUILDERS: tuple[Callable[[], Step], ...] = (
    setting,
    identity,
    bound,
    allocation,
    special_cases,
    gain,
    non_centred,
    tradeoff,
    budget,
    worst_class,
    per_class,
    bias,
    oracle_worst,
    oracle_balanced,
    oracle_many,
    temperature,
)


def _theorems_1_2() -> str:
    term = sp.latex(bound().results["margin_term"])
    gstar = sp.latex(allocation().results["gamma_star"])
    return (
        "**Theorem 1 (class-sensitive margin bound).** Under A1-A5, for every $\\delta \\in (0, 1)$, "
        "with probability at least $1 - \\delta$ over the sample, every $W$ with $\\|W\\|_F \\le B$ "
        "satisfies\n\n$$\n\\sum_{k=1}^K \\pi_k c_k \\, P_D(m_W(h, y) \\le 0 \\mid y = k) \\le "
        "\\frac{1}{n}\\sum_{i=1}^n c_{y_i} \\ell_{\\gamma_{y_i}}(m_W(h_i, y_i)) + "
        f"4 B \\sqrt{{\\frac{{K}}{{n}}}}\\, {term} "
        "+ 3 \\max_k c_k \\sqrt{\\frac{\\log(2/\\delta)}{2n}}\n$$\n\n"
        "with $w_k = \\hat\\pi_k c_k^2$. With $c \\equiv 1$ the left side is the risk, and it is the "
        "balanced error when classes are balanced ($w_k = \\hat\\pi_k = 1/K$); with $c_k = 1/(K\\pi_k)$ "
        "it is the balanced error for any priors.\n\n"
        "**Theorem 2 (optimal margins).** For $x_k = w_k a_k > 0$ and $p > 0$, the unique minimiser of "
        "$J(\\gamma) = \\sum_k x_k / \\gamma_k^p$ subject to "
        "$\\frac{1}{K}\\sum_k \\gamma_k = \\bar c$ is\n\n"
        f"$$\n\\gamma_k^* = {gstar}\n$$\n\n"
        "and $J(\\gamma^*) / J(\\bar c\\,\\mathbf{1}) = M_{1/(p+1)}(x) / M_1(x) \\le 1$, with equality "
        "iff all $x_k$ are equal. The bound's margin term is $J^{1/2}$ ($p = 2$).\n\n"
        "**Corollary.** MR² (balanced, $p = 2$): $\\gamma_k \\propto a_k^{1/3}$. LDAM ($p = 1$, "
        "$x_k \\propto n_k^{-1/2}$): $\\gamma_k \\propto n_k^{-1/4}$."
    )


def _theorem_3_and_limits() -> str:
    """Theorem 3 (one bound per class) and what steps 8-12 add, Markdown with LaTeX from the results."""
    T = sp.latex(worst_class().results["class_term"])
    conf = sp.latex(worst_class().results["class_confidence"])
    return (
        "**Theorem 3 (one bound per class).** Under A1-A5 with $c \\equiv 1$, for every "
        "$\\delta \\in (0, 1)$, with probability at least $1 - \\delta$ every $W$ with "
        "$\\|W\\|_F \\le B$ satisfies, for every class $k$ at once,\n\n"
        f"$$\nP_D(m_W(h, y) \\le 0 \\mid y = k) \\le \\hat L_k(W) + {T} + {conf}\n$$\n\n"
        "with $\\hat L_k$ the empirical ramp risk of class $k$. Its average over the classes bounds the "
        "balanced error and its maximum the worst class.\n\n"
        "**What the allocation leaves out.** Theorem 2 minimises the complexity term only. Which "
        "exponent comes out depends on the budget (sum: $1/(p+1)$; geometric: $1/p$) and on the "
        "criterion (average of per-class bounds: $(a_k/n_k)^{1/4}$, LDAM's family; worst class: "
        "$(a_k/n_k)^{1/2}$); the bound keeps the empirical ramp risk that the allocation drops, and "
        "keeping it replaces $a_k^{1/3}$ by $(a_k/f_k(0))^{1/3}$ in the limit of small margins "
        "($f_k(0)$ the density of class $k$'s margin at the boundary), a limit reached only at "
        "enormous $n$; a head with a bias supports $a_k = \\|\\mu_k - \\bar\\mu\\|^2 + s_k^2 + 1$ "
        "when the norm constraint is placed on the re-centred parameters (steps 8-12)."
    )


def theorem_text() -> str:
    """Theorems 1-3 and what steps 8-12 add, Markdown with LaTeX from the SymPy results."""
    return _theorems_1_2() + "\n\n" + _theorem_3_and_limits()


def builders() -> tuple[Callable[[], Step], ...]:
    """Every step's builder in order (:data:`BUILDERS`)."""
    return BUILDERS


@functools.cache
def derivation() -> Derivation:
    """All sixteen steps, built and checked once per process (seconds after SymPy is imported)."""
    steps = tuple(build() for build in BUILDERS)
    return Derivation(steps, ASSUMPTIONS, theorem_text())
