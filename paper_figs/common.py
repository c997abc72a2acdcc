"""What every figure script shares: its context, its record for the index, and its ``main(argv)``.

A figure module defines ``NUMBER``, ``NAME``, ``TITLE``, ``CAPTION``, a plot function taking ``ax=``
and returning ``(fig, ax)``, and ``make(ctx) -> Made``, which reads (or, if missing, produces) its data
and draws the figure. Its ``main(argv)`` is one line: ``return figure_main(__name__, argv)``.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from paper_figs import style

__all__ = ["FigureContext", "Made", "FigureRecord", "figure_parser", "render", "figure_main"]

DEFAULT_RESULTS = "results"
DEFAULT_OUT = "results/figures"


@dataclass
class FigureContext:
    """Where a figure finds its data and writes its files.

    Attributes:
        results: root of the cached results: ``sims/`` (``mr2 simulate``), ``runs/<study>/``
            (``mr2 train``) and ``bench/`` (``mr2 bench loss``), as fixed in docs/CONTRACTS.md.
        out: folder that receives ``fig<N>_<name>.pdf`` and ``.png``.
        quick: produce missing data with the quick presets.
        runs: an explicit training study folder ``RUNS/<study>`` (else found under ``results/runs``).
        seed: seed of the bootstrap CIs drawn in the figures.
        produced: commands this process ran to make missing data (shared across figures so that
            figures 1 and 2 train once).
    """

    results: Path = Path(DEFAULT_RESULTS)
    out: Path = Path(DEFAULT_OUT)
    quick: bool = False
    runs: Path | None = None
    seed: int = 0
    produced: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass
class Made:
    """What ``make(ctx)`` returns: the drawn figure, the data files it read, notes for the caption."""

    fig: Any
    data_files: list[Path]
    notes: list[str] = field(default_factory=list)
    table: Any = None  # a pandas DataFrame of the plotted numbers, saved beside the figure as CSV


@dataclass
class FigureRecord:
    """One entry of ``INDEX.md``."""

    number: int
    name: str
    title: str
    caption: str
    command: str
    data_files: list[str]
    outputs: list[str]
    produced: list[str] = field(default_factory=list)
    error: str | None = None
    kept_from: str | None = None  # drawn by an earlier run (its command and date), kept in the index


def _module(mod: str | ModuleType) -> ModuleType:
    return importlib.import_module(mod) if isinstance(mod, str) else mod


def figure_command(mod: ModuleType, ctx: FigureContext) -> str:
    """The shell command that redraws this figure alone from the same data."""
    parts = [
        "mr2",
        "figures",
        "--only",
        str(mod.NUMBER),
        "--results",
        str(ctx.results),
        "--out",
        str(ctx.out),
    ]
    if ctx.quick:
        parts.append("--quick")
    if ctx.runs is not None:
        parts += ["--runs", str(ctx.runs)]
    return shlex.join(parts)


def render(mod: str | ModuleType, ctx: FigureContext) -> FigureRecord:
    """Draw one figure, save it as PDF and PNG under ``ctx.out`` and return its index record."""
    import matplotlib.pyplot as plt

    mod = _module(mod)
    style.set_theme()
    before = len(ctx.produced)
    made = mod.make(ctx)
    stem = f"fig{mod.NUMBER}_{mod.NAME}"
    try:
        paths = style.save_figure(made.fig, ctx.out, stem)
    finally:
        plt.close(made.fig)
    if made.table is not None:
        from mr2_core.io import write_csv

        write_csv(ctx.out / f"{stem}.csv", made.table)
        paths.append(ctx.out / f"{stem}.csv")
    caption = mod.CAPTION.strip()
    if made.notes:
        caption += " " + " ".join(made.notes)
    return FigureRecord(
        number=mod.NUMBER,
        name=mod.NAME,
        title=mod.TITLE,
        caption=caption,
        command=figure_command(mod, ctx),
        data_files=[str(p) for p in made.data_files],
        outputs=[str(p) for p in paths],
        produced=list(ctx.produced[before:]),
    )


def figure_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every figure script and ``mr2 figures`` share."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    add_common_arguments(p)
    return p


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", default=DEFAULT_OUT, help=f"folder for the PDF and PNG files (default {DEFAULT_OUT})"
    )
    p.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help="root of cached results: sims/, runs/<study>/, bench/ (default results); missing ones are made",
    )
    p.add_argument("--quick", action="store_true", help="make missing data with the quick presets")
    p.add_argument(
        "--runs",
        default=None,
        help="a training study folder RUNS/<study> (default: found under RESULTS/runs)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap CIs (default 0)")


def context_from_args(args: argparse.Namespace) -> FigureContext:
    return FigureContext(
        results=Path(args.results),
        out=Path(args.out),
        quick=bool(args.quick),
        runs=Path(args.runs) if args.runs else None,
        seed=int(args.seed),
    )


def figure_main(mod: str | ModuleType, argv: list[str] | None = None) -> int:
    """``main(argv)`` of a figure script: parse the shared options, draw, save, print the paths."""
    mod = _module(mod)
    parser = figure_parser(f"python -m {mod.__name__}", f"Figure {mod.NUMBER}: {mod.TITLE}")
    args = parser.parse_args(argv)
    try:
        rec = render(mod, context_from_args(args))
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    for path in rec.outputs:
        print(path)
    return 0
