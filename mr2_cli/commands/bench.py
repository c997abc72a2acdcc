"""``mr2 bench {theory,sims,loss,train}``: speed benchmarks, each printed as a table and saved as CSV."""

from __future__ import annotations

import argparse
import importlib

HELP = "speed benchmarks: ratios measured in one process, printed and saved (theory, sims, loss, train)"

# target -> module with main(argv: list[str] | None) -> int
TARGETS = {
    "theory": "theory.bench",
    "sims": "sims.bench",
    "loss": "mr2.bench_loss",
    "train": "mr2.bench_train",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark (see --help)")


def run(args: argparse.Namespace) -> int:
    from mr2_core.io import check_writable_dir

    # each benchmark parses its own options; its --out is checked here, before minutes of timing
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--out")
    out = peek.parse_known_args(args.rest)[0].out
    if out is not None:
        check_writable_dir(out, "--out")
    return int(importlib.import_module(TARGETS[args.target]).main(args.rest) or 0)
