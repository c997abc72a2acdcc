"""``mr2 train --preset NAME``: run every (loss, seed) of a preset; finished runs are skipped.

``--quick`` is a smoke-sized version of the preset (``QUICK_*`` below; ``digits-smoke`` when no preset
is named): it checks that a preset runs end to end in seconds to minutes, not what it measures. A
backbone the preset starts from (``init_checkpoint="@<preset>/..."``) is still made by its own preset.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from mr2_core.contracts import LOSSES

DEFAULT_OUT = "runs"
# --quick: the preset's first seed, at most QUICK_EPOCHS epochs on at most QUICK_TRAIN_SAMPLES training
# images (stratified), into the study folder <preset>-quick
QUICK_PRESET = "digits-smoke"  # with --quick and no --preset
QUICK_EPOCHS = 2
QUICK_TRAIN_SAMPLES = 2000
QUICK_HELP = (
    f"a smoke-sized run of the preset (default {QUICK_PRESET}): its first seed, at most {QUICK_EPOCHS} "
    f"epochs on at most {QUICK_TRAIN_SAMPLES} training images, into OUT/<preset>-quick: a check that it "
    "runs, not a measurement (digits: under a minute on 2 cores); --seeds, --epochs, --study and --set apply"
)

HELP = "train a preset's studies (mr2 train --list) over methods and seeds; finished runs are skipped"
INTERRUPTED = (
    "interrupted; every finished epoch is checkpointed: run the same command with --resume to continue "
    "(finished runs are skipped)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", help="the study to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    parser.add_argument(
        "--loss",
        nargs="+",
        metavar="L",
        help="methods to run (default: the preset's; see --list): a loss name, one of "
        f"{', '.join(LOSSES)}, or a method a preset defines (e.g. ce-drw)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds (default: the preset's)")
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"runs folder (default {DEFAULT_OUT}/); a run goes to OUT/<study>/<loss>/seed<k>",
    )
    parser.add_argument("--study", help="study folder name (default: the preset's name)")
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="dataset folder, looked at before $MR2_DATA and system paths; your own images: "
        "--set dataset=folder with DIR/train/<class>/*.png and DIR/test/<class>/*.png (docs/your-data.md)",
    )
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (e.g. lr=0.1), a loss option of every method whose loss takes it "
        "(loss.lambda_rep=0.2) or of one method (mr2.statistic=separation); repeatable",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue unfinished runs from their checkpoints"
    )
    parser.add_argument("--overwrite", action="store_true", help="discard existing runs and train them again")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, the data-loading ones included (bars are only drawn on a terminal anyway); "
        "the per-epoch lines stay",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once, one process each (default 1); with --backend dask and no --scheduler, "
        "the workers of the local cluster",
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

    from mr2_core.checks import bad, check_workers
    from mr2_core.io import check_writable_dir

    if args.quick and not args.preset:
        args.preset = QUICK_PRESET
    if not args.list:  # cheap checks first: before torch is imported and data loaded
        if not args.preset:
            raise bad(
                "--preset",
                None,
                "the name of a study to run (mr2 train --list shows them; --quick runs a smoke study)",
            )
        check_workers(args.jobs, args.threads, prefix="--")
        if args.scheduler is not None and args.backend != "dask":
            raise bad("--scheduler", args.scheduler, "only with --backend dask")
        check_writable_dir(args.out, "--out")
    from mr2.train import PRESETS, get_preset, is_main_process, run_study

    if args.list:
        _print_presets(PRESETS.values())
        return 0
    preset = get_preset(args.preset)
    if args.quick:
        _shrink(preset, args)
    # --set values stay text, parsed once against each field's (or loss option's) declared type by
    # apply_overrides; the typed flags are passed as values, not as text to parse back
    study = study_arguments(args)
    study["preset"] = preset
    jobs = args.jobs
    t0 = time.perf_counter()
    records = run_study(
        **study, resume=args.resume, overwrite=args.overwrite, progress=True, jobs=jobs,
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


def _shrink(preset, args: argparse.Namespace) -> None:
    """``--quick``: the preset's first seed, at most ``QUICK_EPOCHS`` epochs on at most
    ``QUICK_TRAIN_SAMPLES`` images, in the study ``<preset>-quick``; the user's own options win."""
    args.seeds = args.seeds or list(preset.seeds[:1])
    args.study = args.study or f"{preset.name}-quick"
    if args.epochs is None:
        args.epochs = min(preset.config.epochs, QUICK_EPOCHS)
    if not any(item.partition("=")[0].strip() == "max_train_samples" for item in args.set):
        limit = preset.config.max_train_samples
        args.set = [f"max_train_samples={min(limit or QUICK_TRAIN_SAMPLES, QUICK_TRAIN_SAMPLES)}", *args.set]


def _print_presets(presets) -> None:
    """One block per preset: its name on a line of its own (names run past 20 characters), then its
    description and its methods and seeds, indented and wrapped to the terminal."""
    import shutil
    import textwrap

    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 110))
    indent = " " * 4
    for p in presets:
        print(p.name)
        seeds = sorted({s for m in p.losses for s in p.method_seeds(m)})
        lines = [p.description, f"methods: {', '.join(p.losses)}", f"seeds: {_ranges(seeds)}"]
        for text in lines:
            print(textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent + "  "))


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts) or "-"


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
