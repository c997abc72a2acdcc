"""Printable derivation steps: :class:`Check`, :class:`Step` and :class:`Derivation`.

A step holds SymPy statements together with its assumptions, a short explanation and the checks that
SymPy (or, where said so, NumPy) actually ran when the step was built. Nothing here derives anything;
the step modules build them and ``theory.assembly`` puts them in order. Every object prints as text
(``str``, ``pretty()``), as LaTeX (``latex()``) and renders in Jupyter (``_repr_latex_``,
``_repr_markdown_``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["Check", "Step", "Derivation"]


def _latex(expr: Any) -> str:
    import sympy as sp

    return sp.latex(expr)  # symbols with non-LaTeX names carry their own (theory.symbolic.named)


def _pretty(expr: Any) -> str:
    import sympy as sp

    return sp.pretty(expr, use_unicode=True, wrap_line=False)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


@dataclasses.dataclass(frozen=True)
class Check:
    """One verification that was run while building a step.

    Attributes:
        claim: what was verified, in words.
        passed: the outcome (never assumed: it is the result of the computation).
        method: how, e.g. "symbolic, general n and d", "symbolic, (n, d) in {(2, 1), ...}",
            "numeric, 20,000 random instances".
        detail: the residual or the numbers that decided it.
    """

    claim: str
    passed: bool
    method: str
    detail: str = ""

    def __str__(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        detail = f" [{self.detail}]" if self.detail else ""
        return f"[{mark}] {self.claim} ({self.method}){detail}"

    def markdown(self) -> str:
        mark = "✅" if self.passed else "❌"
        detail = f" — {self.detail}" if self.detail else ""
        return f"{mark} {self.claim} *({self.method})*{detail}"


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the derivation.

    Attributes:
        key: short identifier (``"allocation"``); ``Derivation[key]`` returns the step.
        title: one line.
        assumptions: what the step assumes, in words (LaTeX allowed between ``$...$``).
        statements: the SymPy statements the step establishes (``Eq``, ``Le``, expressions).
        explanation: a few sentences (Markdown, LaTeX between ``$...$``).
        checks: the verifications run while building the step.
        results: named SymPy expressions that later steps and the numeric tests use.
    """

    key: str
    title: str
    assumptions: tuple[str, ...]
    statements: tuple[Any, ...]
    explanation: str
    checks: tuple[Check, ...]
    results: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", MappingProxyType(dict(self.results)))

    @property
    def verified(self) -> bool:
        """True when the step has checks and every one of them passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def pretty(self) -> str:
        """Plain-text rendering: title, assumptions, statements (SymPy's 2-D pretty form), checks."""
        lines = [self.title, "=" * len(self.title)]
        if self.assumptions:
            lines.append("Assumptions:")
            lines += [f"  - {a}" for a in self.assumptions]
        lines.append("Statements:")
        for s in self.statements:
            lines.append(_indent(_pretty(s)))
            lines.append("")
        lines.append(self.explanation)
        lines.append("Checks:")
        lines += [f"  {c}" for c in self.checks]
        return "\n".join(lines)

    def latex(self) -> str:
        """The statements as one LaTeX ``aligned`` block (no surrounding ``$$``)."""
        rows = [_latex(s) for s in self.statements]
        return "\\begin{aligned}\n" + " \\\\\n".join(f"& {r}" for r in rows) + "\n\\end{aligned}"

    def markdown(self, number: int | None = None) -> str:
        """Markdown with LaTeX: heading, assumptions, display maths, explanation, checks."""
        head = f"{number}. {self.title}" if number is not None else self.title
        parts = [f"### {head}", ""]
        if self.assumptions:
            parts.append("**Assumptions.**")
            parts += [f"- {a}" for a in self.assumptions]
            parts.append("")
        parts += ["$$", self.latex(), "$$", "", self.explanation, "", "**Checks.**"]
        parts += [f"- {c.markdown()}" for c in self.checks]
        return "\n".join(parts) + "\n"

    def _repr_latex_(self) -> str:
        return f"$$\\text{{{self.title}}}\\\\\n{self.latex()}$$"

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.pretty()


@dataclasses.dataclass(frozen=True)
class Derivation:
    """The steps in order, with the assumptions and the theorem they lead to.

    Attributes:
        steps: the steps, in the order of the argument.
        assumptions: the global assumptions (A1, A2, ...), Markdown.
        theorem: the theorem statement, Markdown with LaTeX.
    """

    steps: tuple[Step, ...]
    assumptions: tuple[str, ...] = ()
    theorem: str = ""

    def __getitem__(self, key: str) -> Step:
        for s in self.steps:
            if s.key == key:
                return s
        raise KeyError(f"no step {key!r}; steps are {[s.key for s in self.steps]}")

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(c for s in self.steps for c in s.checks)

    @property
    def verified(self) -> bool:
        """True when every step is verified."""
        return all(s.verified for s in self.steps)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def result(self, name: str) -> Any:
        """The named SymPy result from whichever step produced it."""
        for s in self.steps:
            if name in s.results:
                return s.results[name]
        raise KeyError(f"no result {name!r}; results are {sorted(k for s in self.steps for k in s.results)}")

    def text(self) -> str:
        """Plain text: every step's pretty form, numbered."""
        blocks = [f"Step {i}. {s.pretty()}" for i, s in enumerate(self.steps, 1)]
        return "\n\n".join(blocks)

    def latex(self) -> str:
        """LaTeX of every step's statements, each in its own display block."""
        return "\n\n".join(f"% {i}. {s.title}\n\\[\n{s.latex()}\n\\]" for i, s in enumerate(self.steps, 1))

    def markdown(self) -> str:
        """Markdown with LaTeX: the steps, numbered."""
        return "\n".join(s.markdown(i) for i, s in enumerate(self.steps, 1))

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.text()
