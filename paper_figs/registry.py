"""Every figure of the paper, by number: ``mr2 figures`` draws them in this order."""

from __future__ import annotations

import importlib
from types import ModuleType

from mr2_core.checks import bad

__all__ = ["FIGURES", "figure_module", "parse_only"]

FIGURES: dict[int, str] = {
    1: "paper_figs.fig1_class_accuracy",
    2: "paper_figs.fig2_spread_vs_error",
    3: "paper_figs.fig3_theory_margins",
    4: "paper_figs.fig4_margin_vs_variance",
    5: "paper_figs.fig5_bound_vs_gap",
    6: "paper_figs.fig6_loss_speed",
    7: "paper_figs.fig7_statistics_vs_error",
    8: "paper_figs.fig8_probe_effects",
    9: "paper_figs.fig9_rule_scores",
    10: "paper_figs.fig10_temperature_regimes",
}


def figure_module(number: int) -> ModuleType:
    """The module of figure ``number``."""
    if number not in FIGURES:
        raise bad("number", number, f"a figure number in {sorted(FIGURES)}")
    return importlib.import_module(FIGURES[number])


def parse_only(values: list[str] | None) -> list[int]:
    """Figure numbers from ``--only`` values such as ``["3"]`` or ``["1,2", "6"]``; all when None."""
    if not values:
        return sorted(FIGURES)
    numbers = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                n = int(part)
            except ValueError:
                raise bad("--only", value, f"figure numbers in {sorted(FIGURES)}, e.g. 3 or 1,2") from None
            if n not in FIGURES:
                raise bad("--only", value, f"figure numbers in {sorted(FIGURES)}, e.g. 3 or 1,2")
            if n not in numbers:
                numbers.append(n)
    if not numbers:
        raise bad("--only", values, f"at least one figure number in {sorted(FIGURES)}")
    return numbers
