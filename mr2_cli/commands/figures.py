"""``mr2 figures [--quick] --out DIR [--results DIR] [--only N]``: redraw every figure of the paper.

Each figure reads the cached results under ``--results`` (sims CSVs, training run folders, benchmark
CSVs; docs/CONTRACTS.md) and runs only what is missing, with the quick presets under ``--quick``. It
writes ``fig<N>_<name>.pdf`` and ``.png`` per figure and ``INDEX.md`` (caption, command and data per
figure) in ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "redraw every figure (PDF + PNG) from cached results, making only what is missing; writes INDEX.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from paper_figs.common import add_common_arguments

    add_common_arguments(parser)
    parser.add_argument(
        "--only",
        action="append",
        metavar="N",
        help="draw only these figures, e.g. --only 3 or --only 1,2 (repeatable; default all)",
    )


def run(args: argparse.Namespace) -> int:
    from mr2_core.io import check_writable_dir

    check_writable_dir(args.out, "--out")  # before the heavy imports
    check_writable_dir(args.results, "--results")  # missing results are made there
    from paper_figs.build import build_figures, write_index
    from paper_figs.common import context_from_args
    from paper_figs.registry import parse_only

    numbers = parse_only(args.only)
    ctx = context_from_args(args)
    records = build_figures(ctx, numbers)
    index = write_index(records, ctx, command=_command(args, numbers))
    failed = [r for r in records if r.error]
    print(f"[figures] {len(records) - len(failed)} of {len(records)} figures in {ctx.out}; index: {index}")
    for r in failed:
        print(f"[figures] figure {r.number} not drawn: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _command(args: argparse.Namespace, numbers: list[int]) -> str:
    parts = ["mr2", "figures", "--results", str(args.results), "--out", str(args.out)]
    if args.quick:
        parts.append("--quick")
    if args.runs:
        parts += ["--runs", str(args.runs)]
    if args.only:
        parts += ["--only", ",".join(map(str, numbers))]
    return shlex.join(parts)
