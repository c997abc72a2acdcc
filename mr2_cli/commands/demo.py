"""``mr2 demo [--quick] [--out DIR]``: the whole story on a fresh machine in a few minutes.

It runs, in order and each through its own pillar's command (nothing is re-implemented here):

1. ``mr2 derive``: the bound and its optimal margins, derived in SymPy (``DIR/derive``);
2. ``mr2 simulate --preset all --quick``: the Gaussian-mixture verdicts (``DIR/sims``);
3. ``mr2 train``: CE against MR2 on Fashion-MNIST, a quick study (``DIR/runs``), falling back to
   scikit-learn digits with a notice when Fashion-MNIST is absent; then ``mr2 report``;
4. ``mr2 bench loss`` (few repetitions) and ``mr2 figures --quick``: every figure (``DIR/figures``);

and writes ``DIR/SUMMARY.md`` linking all of it. Finished steps are reused when run again.
"""

from __future__ import annotations

import argparse

HELP = "run the whole story quickly: derive, quick sims, quick training (CE vs MR2), report, figures"

DEFAULT_OUT = "results/demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder for everything (default {DEFAULT_OUT})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smallest settings (scikit-learn digits, quick sims): a check that every step runs, in ~1-2 min",
    )
    parser.add_argument("--tiny", dest="quick", action="store_true", help=argparse.SUPPRESS)  # old spelling
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars in any step (the step lines stay)"
    )


def run(args: argparse.Namespace) -> int:
    from mr2_cli.demo import run_demo
    from mr2_core.io import check_writable_dir

    check_writable_dir(args.out, "--out")
    return run_demo(args.out, tiny=args.quick)
