"""Render the derivation as ``THEOREM.md`` (assumptions, theorem, rules, steps) and a rules summary.

The text around the formulas is fixed; every formula and exponent comes from the SymPy results of
``theory.derivation``, so the document cannot drift from what was derived.
"""

from __future__ import annotations

from typing import Any

from theory.steps import Derivation

__all__ = ["theorem_markdown", "rules_summary", "limits_table"]

REFERENCES = (
    "A. Maurer. A vector-contraction inequality for Rademacher complexities. ALT 2016 (Corollary 1).",
    "M. Mohri, A. Rostamizadeh, A. Talwalkar. Foundations of Machine Learning, 2nd ed., 2018 (Theorem 3.3).",
    "K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma. Learning Imbalanced Datasets with "
    "Label-Distribution-Aware Margin Loss. NeurIPS 2019.",
    "B. Zhu et al. Reducing Class-Wise Performance Disparity via Margin Regularization. ICLR 2026 "
    "(arXiv 2602.00205).",
)


def _latex(expr: Any) -> str:
    import sympy as sp

    return sp.latex(expr)


def _exponents(d: Derivation) -> dict[str, Any]:
    return dict(d.result("exponents"))


def _oracle_exponents(d: Derivation) -> dict[str, Any]:
    """The oracle's exponent on the variance: worst class (step 13), balanced near equal spreads (14)."""
    import sympy as sp

    s1, s2, _ = d.result("oracle_symbols")
    worst = sp.simplify(d.result("oracle_worst_log_ratio") / sp.log(s2**2 / s1**2))
    return {"worst": worst, "balanced": d.result("oracle_balanced_exponent")}


def limits_table(d: Derivation) -> list[str]:
    """Markdown rows: how the exponent depends on the budget and the criterion (steps 4, 5, 8-11)."""
    b = dict(d.result("budget_exponents"))
    e = _exponents(d)
    pc = dict(d.result("per_class_exponents"))
    wc = dict(d.result("worst_exponents"))
    tr = dict(d.result("tradeoff_exponents"))
    oracle = _oracle_exponents(d)

    J = "$\\sum_k x_k/\\gamma_k^p$"

    def pw(base: str, exp: Any) -> str:
        return f"${base}^{{{_latex(exp)}}}$"

    rows = [
        ("average risk (Thm 1)", "sum, $\\sum_k\\gamma_k = K\\bar c$", J, pw("x_k", b["sum"])),
        ("average risk (Thm 1)", "geometric, $\\prod_k\\gamma_k = \\bar c^K$", J, pw("x_k", b["geometric"])),
        ("largest term", "sum", "$\\max_k x_k/\\gamma_k^p$", pw("x_k", b["minimax"])),
        ("MR² (Thm 1, $p = 2$, balanced)", "sum", "$\\sum_k a_k/\\gamma_k^2$", pw("a_k", e["mr2"])),
        (
            "balanced error (Thm 1, $c_k = 1/(K\\pi_k)$)",
            "sum",
            "$\\sum_k (a_k/n_k)/\\gamma_k^2$",
            f"$a_k^{{{_latex(e['mr2'])}}}\\, n_k^{{{_latex(e['balanced_imbalanced'])}}}$",
        ),
        (
            "balanced error (mean of Thm 3)",
            "sum",
            "$\\sum_k \\sqrt{a_k/n_k}/\\gamma_k$",
            f"$a_k^{{{_latex(pc['a'])}}}\\, n_k^{{{_latex(pc['n'])}}}$ (LDAM at equal $a_k$)",
        ),
        (
            "worst class (max of Thm 3)",
            "sum",
            "$\\max_k \\sqrt{a_k/n_k}/\\gamma_k$",
            f"$a_k^{{{_latex(wc['a'])}}}\\, n_k^{{{_latex(wc['n'])}}}$",
        ),
        (
            "Thm 1 with the ramp risk kept (small margins)",
            "none",
            "$\\sum_k w_k R_k(\\gamma_k) + C\\sqrt{\\sum_k w_k a_k/\\gamma_k^2}$",
            f"$a_k^{{{_latex(tr['a'])}}}\\, f_k(0)^{{{_latex(tr['f0'])}}}$",
        ),
        (
            "Gaussian oracle, worst class (step 13)",
            "none",
            "$\\max_k Q(m_k/\\sigma_k)$, $m_1 + m_2 = \\delta$",
            f"$m_k \\propto (\\sigma_k^2)^{{{_latex(oracle['worst'])}}}$",
        ),
        (
            "Gaussian oracle, balanced (step 14)",
            "none",
            "$\\sum_k Q(m_k/\\sigma_k)$, $m_1 + m_2 = \\delta$",
            f"locally $(\\sigma_k^2)^{{{_latex(oracle['balanced'])}}}$",
        ),
    ]
    table = ["| criterion | budget | minimised | $\\gamma_k \\propto$ |", "|---|---|---|---|"]
    return table + [f"| {a} | {b_} | {c} | {g} |" for a, b_, c, g in rows]


def rules_summary(d: Derivation) -> str:
    """The resulting rules in plain text, each exponent read off the SymPy results."""
    import sympy as sp

    e = _exponents(d)
    gstar = sp.sstr(d.result("gamma_star"))
    oracle = _oracle_exponents(d)
    lines = [
        "Rules derived above (x_k = w_k a_k, a_k = ||mu_k||^2 + s_k^2, mean margin cbar):",
        f"  optimal margins       gamma_k = {gstar}",
        f"  general exponent      gamma_k ~ x_k^({e['general']})",
        f"  MR2 (p = 2, balanced) gamma_k ~ a_k^({e['mr2']})      <- the MR2 exponent is {e['mr2']}",
        f"  LDAM (p = 1, a_k ~ n_k^(-1/2))  gamma_k ~ n_k^({e['ldam']})",
        f"  imbalanced, equal spreads: risk bound gamma_k ~ n_k^({e['risk_imbalanced']}), "
        f"balanced-error bound gamma_k ~ n_k^({e['balanced_imbalanced']})",
        f"  gain over uniform     J(gamma*)/J(uniform) = {sp.sstr(d.result('gain_ratio'))}"
        " = M_{1/(p+1)}(x) / M_1(x) <= 1",
        f"  non-centred features  d log(gamma_k/gamma_l) / d log s_k^2 = {sp.sstr(d.result('elasticity'))}",
        f"  geometric budget      gamma_k ~ x_k^({sp.sstr(d.result('budget_exponents')['geometric'])}); "
        f"minimax gamma_k ~ x_k^({sp.sstr(d.result('budget_exponents')['minimax'])})",
        f"  worst class (Thm 3)   gamma_k ~ (a_k/n_k)^({d.result('worst_exponents')['a']}); "
        f"mean of per-class bounds gamma_k ~ (a_k/n_k)^({d.result('per_class_exponents')['a']})",
        f"  ramp risk kept        gamma_k ~ (a_k / f_k(0))^({d.result('tradeoff_exponents')['a']}) "
        "for small margins, f_k(0) = density of class k's margin at the boundary",
        "  with a bias           a_k = ||mu_k - mu_bar||^2 + s_k^2, mu_bar the weighted centroid",
        f"  Gaussian oracle       worst class m_k ~ (sigma_k^2)^({oracle['worst']}); balanced, near equal "
        f"spreads, (sigma_k^2)^({sp.sstr(oracle['balanced'])}) (delta = distance between the means)",
        f"  temperature CE(z/g)   a larger g lowers the gradient only while "
        f"{sp.sstr(d.result('temperature_crossover_condition'))} < 0 (v = logit gap / g)",
        "  numeric API           theory.optimal_margins(spread, mean_margin=1.0, weights=None, power=2, "
        "budget='sum'), theory.minimax_margins, theory.per_class_margins, theory.tradeoff_margins, "
        "theory.bound_term, theory.class_bound_term, theory.centred_spread, theory.oracle_margins, "
        "theory.temperature_crossover",
    ]
    return "\n".join(lines)


def theorem_markdown(
    d: Derivation, *, code_version: dict[str, Any] | None = None, seconds: float | None = None
) -> str:
    """THEOREM.md: assumptions, theorem, rules table, every step with its checks, references."""
    import sympy as sp

    e = _exponents(d)
    n_checks = len(d.checks)
    status = f"all {n_checks} checks passed" if d.verified else f"{len(d.failed)} of {n_checks} checks FAILED"
    meta = [f"SymPy {sp.__version__}", status]
    if code_version:
        dirty = " (uncommitted changes)" if code_version.get("git_dirty") else ""
        meta.insert(0, f"code {code_version.get('git_commit', 'unknown')}{dirty}")
    if seconds is not None:
        meta.append(f"built in {seconds:.1f} s")
    rows = [
        ("general", "any $x_k = w_k a_k$, $p$", f"$x_k^{{{_latex(e['general'])}}}$"),
        ("MR²", "$p = 2$, balanced", f"$a_k^{{{_latex(e['mr2'])}}}$"),
        ("LDAM", "$p = 1$, $a_k \\propto n_k^{-1/2}$", f"$n_k^{{{_latex(e['ldam'])}}}$"),
        (
            "risk bound, imbalanced",
            "$p = 2$, $w_k = \\hat\\pi_k$, equal $a_k$",
            f"$n_k^{{{_latex(e['risk_imbalanced'])}}}$",
        ),
        (
            "balanced-error bound, imbalanced",
            "$p = 2$, $w_k \\propto 1/\\pi_k$, equal $a_k$",
            f"$n_k^{{{_latex(e['balanced_imbalanced'])}}}$",
        ),
    ]
    table = ["| case | setting | $\\gamma_k \\propto$ |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    parts = [
        "# A class-sensitive margin bound and its optimal margins",
        "",
        f"*Written by `mr2 derive`: {'; '.join(meta)}. Every formula below is a SymPy result; "
        "each step lists the checks that were run.*",
        "",
        "## Assumptions",
        "",
        *[f"- {a}" for a in d.assumptions],
        "",
        "## Theorem",
        "",
        d.theorem,
        "",
        "## The rules",
        "",
        *table,
        "",
        "Numeric API: `theory.optimal_margins(spread, mean_margin=1.0, weights=None, power=2)` "
        "(NumPy or torch), `theory.margin_term`, `theory.gain_over_uniform`, `theory.ldam_margins`.",
        "",
        "## What fixes the exponent: the budget and the criterion",
        "",
        "Each row is read off a SymPy result (steps 4, 5 and 8-11); $x_k = w_k a_k$, $p$ the power of "
        "the margin in the term, $f_k(0)$ the density of class $k$'s margin at the decision boundary.",
        "",
        *limits_table(d),
        "",
        "Numeric API: `theory.optimal_margins(..., budget='geometric')`, `theory.minimax_margins`, "
        "`theory.per_class_margins`, `theory.tradeoff_margins`, `theory.bound_term`, "
        "`theory.class_bound_term`, `theory.centred_spread`.",
        "",
        "## Derivation, step by step",
        "",
        d.markdown(),
        "## References",
        "",
        *[f"- {r}" for r in REFERENCES],
        "",
    ]
    return "\n".join(parts)
