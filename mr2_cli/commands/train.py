"""``mr2 train --preset NAME``: run every (loss, seed) of a preset; finished runs are skipped."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

HELP = "train a preset's studies (mr2 train --list) over methods and seeds; finished runs are skipped"
INTERRUPTED = (
    "interrupted; every finished epoch is checkpointed: run the same command with --resume to continue "
    "(finished runs are skipped)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="the study to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--loss", nargs="+", metavar="L", help="losses to run (default: the preset's)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds (default: the preset's)")
    parser.add_argument("--out", default="runs", help="runs folder; a run goes to OUT/<study>/<loss>/seed<k>")
    parser.add_argument("--study", help="study folder name (default: the preset's name)")
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument("--data-dir", help="dataset folder, looked at before $MR2_DATA and system paths")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (e.g. lr=0.1) or a loss option (loss.lam=0.2); repeatable",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue unfinished runs from their checkpoints"
    )
    parser.add_argument("--overwrite", action="store_true", help="discard existing runs and train them again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--jobs",
        type=int,
        help="runs trained at once, one process each (default 1); with --backend dask and no --scheduler, "
        "the workers of the local cluster (default: one per core)",
    )
    parser.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs)")
    parser.add_argument(
        "--backend",
        default="loky",
        choices=("loky", "dask"),
        help="loky: local processes (default); dask: each run is a task on the cluster named by "
        "--scheduler (or a local one); the study folder must be shared (docs/cluster.md)",
    )
    parser.add_argument("--scheduler", help="dask scheduler address, e.g. tcp://host:8786")


def run(args: argparse.Namespace) -> int:
    import time

    from mr2_core.checks import check_int
    from mr2_core.io import check_writable_dir

    if args.preset and not args.list:  # cheap checks first: before torch is imported and data loaded
        if args.jobs is not None:
            check_int("--jobs", args.jobs, 1)
        if args.scheduler is not None and args.backend != "dask":
            raise ValueError(f"--scheduler={args.scheduler!r}: expected only with --backend dask")
        if args.threads is not None:
            check_int("--threads", args.threads, 1)
        check_writable_dir(args.out, "--out")
    from mr2.train import PRESETS, get_preset, is_main_process, run_study

    if args.list or not args.preset:
        for p in PRESETS.values():
            print(
                f"{p.name:14s} {p.description}\n{'':14s} losses {','.join(p.losses)}; seeds {list(p.seeds)}"
            )
        return 0 if args.list else 2
    study = study_arguments(args)
    study["preset"] = get_preset(study["preset"])
    local_cluster = args.backend == "dask" and not args.scheduler
    jobs = args.jobs or ((os.cpu_count() or 1) if local_cluster else 1)
    t0 = time.perf_counter()
    records = run_study(
        **study, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress, jobs=jobs,
        threads=args.threads, backend=args.backend, scheduler=args.scheduler,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    failed = [r for r in records if r["status"] == "diverged"]
    if not is_main_process():  # under torchrun every rank holds the same records; rank 0 prints them
        return 1 if failed else 0
    print(f"{'loss':10s} {'seed':>4s} {'status':8s} {'acc':>6s} {'worst':>6s} {'train_s':>8s}  run_dir")
    for r in records:
        acc = f"{r['accuracy']:.4f}" if "accuracy" in r else "-"
        worst = f"{r['worst_class_accuracy']:.4f}" if "worst_class_accuracy" in r else "-"
        secs = f"{r['train_time_s']:.0f}" if "train_time_s" in r else "-"
        head = f"{r['loss']:10s} {r['seed']:4d} {r['status']:8s}"
        print(f"{head} {acc:>6s} {worst:>6s} {secs:>8s}  {r['run_dir']}")
    print(f"{len(records)} runs in {wall:.0f} s wall time")
    for r in failed:
        print(f"diverged: {r['run_dir']}: {r['error']}")
    busy = [r for r in records if r["status"] == "busy"]
    for r in busy:
        print(f"skipped, busy: {r['error']}; run again once it has finished to read its result")
    return 1 if failed or busy else 0


def study_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The ``mr2.train.run_study`` arguments that say which runs the flags ask for (preset, runs,
    losses, seeds, overrides, study); ``command_line`` is the inverse."""
    from mr2_core.checks import bad

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise bad("--set", item, "KEY=VALUE")
        overrides[key.strip()] = value.strip()
    for key, value in (("epochs", args.epochs), ("data_dir", args.data_dir), ("device", args.device)):
        if value is not None:
            overrides[key] = value
    return {
        "preset": args.preset,
        "runs": args.out,
        "losses": args.loss,
        "seeds": args.seeds,
        "overrides": overrides,
        "study": args.study,
    }


def command_line(
    *,
    preset: str,
    runs: str | os.PathLike,
    losses: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    overrides: dict[str, Any] | None = None,
    study: str | None = None,
) -> list[str]:
    """The ``mr2 train`` arguments for these ``run_study`` arguments (e.g. a figure plan's
    ``study_kwargs``): the one place outside the parser that knows the flags."""
    argv = ["train", "--preset", preset, "--out", str(runs)]
    if study is not None:
        argv += ["--study", study]
    if losses:
        argv += ["--loss", *losses]
    if seeds is not None:
        argv += ["--seeds", *map(str, seeds)]
    for key, value in (overrides or {}).items():
        argv += ["--set", f"{key}={value}"]
    return argv
