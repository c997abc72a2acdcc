"""``mr2 report RUNS/<study>``: per-class tables with t-based CIs, paired tests against CE (Holm-adjusted,
with the MDE and the TOST bound), under each model-selection rule, and plots.

``mr2 report --over RUNS/<study-b0> RUNS/<study-b1> ...``: one protocol repeated on several backbones
(seeds nested in each): each method's effect against CE with an interval and a test over backbones,
and the backbone's share of the variance (``mr2.report_backbones``).

The tables and the Markdown come from ``mr2.report``; the plots from ``paper_figs.study_plots``.
"""

from __future__ import annotations

import argparse

from mr2_core.contracts import BASELINE_LOSS, CI_METHODS, SELECTION_RULES

HELP = (
    "report a training study: per-class accuracy over seeds with t CIs, paired tests vs CE (Holm, MDE, "
    "TOST) under each selection rule, plots; --over: one protocol over several backbones"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "study_dir", nargs="?", help="the study folder, RUNS/<study> (holding <loss>/seed<k>/)"
    )
    parser.add_argument(
        "--over",
        nargs="+",
        metavar="STUDY",
        help="instead of STUDY_DIR: >= 2 study folders of one protocol on different backbones (seeds "
        "nested in each); reports each method vs the baseline over backbones (t interval and test over "
        "backbones, Holm, backbone share of the variance) to --out (default "
        "<parent>/<common prefix>-over-backbones)",
    )
    parser.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    parser.add_argument(
        "--baseline",
        default=BASELINE_LOSS,
        help=f"loss the others are paired against (default {BASELINE_LOSS})",
    )
    parser.add_argument(
        "--ci",
        choices=CI_METHODS,
        default="t",
        help="interval over seeds: t (Student t, default), bca (BCa bootstrap), percentile (bootstrap)",
    )
    parser.add_argument(
        "--selection",
        nargs="+",
        choices=SELECTION_RULES,
        default=None,
        help="model-selection rule(s) to report (default: every rule the runs record; runs without "
        "'selections' are reported under their select_metric)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    parser.add_argument(
        "--n-boot",
        type=int,
        default=2000,
        help="bootstrap resamples with --ci bca|percentile (>= 100; default 2000)",
    )
    parser.add_argument("--no-plots", action="store_true", help="tables only")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mr2_core.io import check_writable_dir

    if bool(args.over) == bool(args.study_dir):
        raise ValueError(
            f"study_dir={args.study_dir!r}, --over={args.over!r}: expected one study folder or --over with "
            ">= 2 study folders, not both"
        )
    if args.over:
        return _run_over(args)

    check_writable_dir(args.out or Path(args.study_dir) / "report", "--out")  # before the heavy imports
    from mr2.report import write_report

    figures = None
    if not args.no_plots:
        from paper_figs.study_plots import draw_report_figures

        figures = draw_report_figures
    paths = write_report(
        args.study_dir,
        args.out,
        baseline=args.baseline,
        ci=args.ci,
        selection=args.selection,
        rng=args.seed,
        n_boot=args.n_boot,
        figures=figures,
    )
    print(paths["report"].read_text())
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _run_over(args: argparse.Namespace) -> int:
    from mr2.report_backbones import default_out, write_over_report
    from mr2_core.io import check_writable_dir

    out = args.out or default_out(args.over)
    check_writable_dir(out, "--out")
    paths = write_over_report(args.over, out, baseline=args.baseline, selection=args.selection)
    print(paths["report"].read_text())
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0
