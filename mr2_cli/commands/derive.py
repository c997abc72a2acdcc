"""``mr2 derive``: derive the margin bound and its optimal margins in SymPy, print them, write THEOREM.md."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "derive the class-sensitive margin bound and its optimal margins in SymPy; write THEOREM.md"

DEFAULT_OUT = "results/derive"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"folder for THEOREM.md (default {DEFAULT_OUT})"
    )
    parser.add_argument("--latex", action="store_true", help="print the steps as LaTeX instead of plain text")


def run(args: argparse.Namespace) -> int:
    # heavy imports here, not at module level: `mr2 --help` must stay fast
    from mr2_core.io import check_writable_dir, code_version, write_text

    check_writable_dir(args.out, "--out")  # before SymPy is imported and the derivation's seconds
    from theory.derivation import derivation
    from theory.theorem import rules_summary, theorem_markdown

    t0 = time.perf_counter()
    d = derivation()
    seconds = time.perf_counter() - t0
    print(d.latex() if args.latex else d.text())
    print()
    print(rules_summary(d))
    path = Path(args.out) / "THEOREM.md"
    write_text(path, theorem_markdown(d, code_version=code_version(), seconds=seconds))
    print()
    if not d.verified:
        for c in d.failed:
            print(f"FAILED: {c}")
        print(f"wrote {path}; {len(d.failed)} of {len(d.checks)} checks FAILED")
        return 1
    print(f"wrote {path}; all {len(d.checks)} checks passed (derivation built in {seconds:.1f} s)")
    return 0
