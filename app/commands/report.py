"""``mr2 report RUNS/<study>``: per-class tables with bootstrap CIs, paired against CE, and plots."""

from __future__ import annotations

import argparse

HELP = "report a training study: per-class accuracy over seeds with bootstrap CIs, paired vs CE, plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", help="the study folder, RUNS/<study> (holding <loss>/seed<k>/)")
    parser.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    parser.add_argument("--baseline", default="ce", help="loss the others are paired against (default ce)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")


def run(args: argparse.Namespace) -> int:
    from mr2.report import write_report

    paths = write_report(
        args.study_dir,
        args.out,
        baseline=args.baseline,
        rng=args.seed,
        n_boot=args.n_boot,
        plots=not args.no_plots,
    )
    print(paths["report"].read_text())
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0
