"""``mr2 simulate --preset NAME [--quick] --out DIR``: the Gaussian-mixture simulations (sims/)."""

from __future__ import annotations

import argparse

from mr2_core.contracts import SIMS_PRESETS

HELP = "Gaussian-mixture simulations: does the optimal margin grow with each class's variance?"
INTERRUPTED = (
    "interrupted; finished settings are cached in OUT/cache: run the same command again to compute "
    "only the others."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=SIMS_PRESETS, help="which experiment(s)")
    parser.add_argument("--quick", action="store_true", help="a small grid (under a minute on 2 cores)")
    parser.add_argument("--out", default="results/sims", help="output folder (default: results/sims)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="parallel workers, one process each (default 1, as every --jobs)"
    )
    parser.add_argument(
        "--backend",
        default="loky",
        choices=("loky", "sequential", "dask"),
        help="joblib backend; dask runs on the cluster named by --scheduler (or a local one)",
    )
    parser.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://host:8786")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one is only drawn on a terminal)"
    )


def run(args: argparse.Namespace) -> int:
    from mr2_core.checks import check_int
    from mr2_core.io import check_writable_dir

    check_int("--jobs", args.jobs, 1)
    check_writable_dir(args.out, "--out")  # before the sweep, and before its imports
    from sims.simulate import run_preset

    if args.backend == "dask":
        from mr2_core.parallel import dask_client

        with dask_client(args.scheduler, n_workers=args.jobs):  # a local cluster without --scheduler
            run_preset(
                args.preset,
                args.out,
                quick=args.quick,
                n_jobs=args.jobs,
                backend="dask",
                progress=not args.no_progress,
            )
        return 0
    if args.scheduler:
        raise ValueError(f"--scheduler={args.scheduler!r}: expected only with --backend dask")
    run_preset(
        args.preset,
        args.out,
        quick=args.quick,
        n_jobs=args.jobs,
        backend=args.backend,
        progress=not args.no_progress,
    )
    return 0
