"""Where the figures find their data, and how a missing piece is produced (only that piece).

The layout under ``--results DIR`` follows docs/CONTRACTS.md:

* ``DIR/sims/``: ``mr2 simulate --preset NAME [--quick] --out DIR/sims`` writes
  ``margin_vs_variance.csv``, ``theory_vs_uniform.csv``, ``bound_vs_gap.csv``, ``manifest.json``;
* ``DIR/runs/<study>/<loss>/seed<k>/metrics.json``: ``mr2 train`` run directories;
* ``DIR/bench/loss_bench.csv``: ``mr2 bench loss --out DIR/bench``.

A file that exists is read as it is (quick or full, whichever made it); a missing one is made by the
owning pillar's library call (``paper_figs.plans``, ``sims``, ``mr2.bench``), run in-process, and the
equivalent ``mr2`` command is recorded for the index.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from mr2_core.checks import bad
from mr2_core.contracts import LOSS_BENCH_FILE, SIMS_FILES
from paper_figs.common import FigureContext

__all__ = [
    "make_missing",
    "sims_file",
    "loss_bench_file",
    "read_table",
    "find_study",
    "training_study",
    "probe_study",
]

# `mr2 bench loss` options under --quick: fewer timed repetitions (same K, B, d as the full benchmark)
QUICK_BENCH = {"reps": 5, "warmup": 1}
QUICK_BENCH_ARGS = [a for k, v in QUICK_BENCH.items() for a in (f"--{k}", str(v))]  # as command options
SIMS_JOBS = 2  # workers of a sims preset made for the figures (as `mr2 simulate`'s default)


def make_missing(ctx: FigureContext, command: str, make: Any) -> None:
    """Run ``make()`` (a library call) to produce missing data; record ``command`` (that call, or the
    equivalent ``mr2`` command line) in ``ctx.produced`` for the figure index."""
    print(f"[figures] missing data: running {command}", flush=True)
    make()
    ctx.produced.append(command)


def sims_file(ctx: FigureContext, filename: str) -> Path:
    """Path of a sims result ``filename`` under ``RESULTS/sims``, running its preset if it is missing."""
    if filename not in SIMS_FILES:
        raise bad("filename", filename, f"one of {sorted(SIMS_FILES)}")
    folder = ctx.results / "sims"
    path = folder / filename
    if not path.is_file():
        from sims.simulate import run_preset

        preset = SIMS_FILES[filename]  # the preset that writes it
        argv = ["simulate", "--preset", preset, "--out", str(folder)] + (["--quick"] if ctx.quick else [])
        command = "mr2 " + shlex.join(argv)
        make_missing(ctx, command, lambda: run_preset(preset, folder, quick=ctx.quick, n_jobs=SIMS_JOBS))
        if not path.is_file():
            raise RuntimeError(f"`{command}` ran but did not write {path}")
    return path


def sims_manifest(ctx: FigureContext) -> list[Path]:
    """``[RESULTS/sims/manifest.json]`` when it exists (it records the config and code version)."""
    path = ctx.results / "sims" / "manifest.json"
    return [path] if path.is_file() else []


def loss_bench_file(ctx: FigureContext) -> Path:
    """``RESULTS/bench/loss_bench.csv``, running ``mr2 bench loss`` if it is missing."""
    folder = ctx.results / "bench"
    path = folder / LOSS_BENCH_FILE
    if not path.is_file():
        from mr2.bench_loss import run_benchmark

        options = QUICK_BENCH if ctx.quick else {}
        argv = ["bench", "loss", "--out", str(folder)] + (QUICK_BENCH_ARGS if ctx.quick else [])
        command = "mr2 " + shlex.join(argv)
        make_missing(ctx, command, lambda: run_benchmark(folder, **options))
        if not path.is_file():
            raise RuntimeError(f"`{command}` ran but did not write {path}")
    return path


def read_table(path: str | Path, required: list[str] | tuple[str, ...]) -> Any:
    """Read a CSV (pandas) and check it holds the contract's columns; ValueError naming what is missing."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc}); delete it to recompute it") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise bad(str(path), list(frame.columns), f"the columns {list(required)} (missing {missing})")
    if frame.empty:
        raise ValueError(f"{path}: no rows; delete it to recompute it")
    return frame


def find_study(
    results: Path, losses: tuple[str, ...], *, exclude: tuple[str, ...] | None = None
) -> Path | None:
    """The study under ``RESULTS/runs`` with the most finished seeds holding every loss in ``losses``.

    ``exclude``: study names never chosen (default: the linear-probe studies, whose CE and MR2 runs
    train a head on frozen features and must not stand in for a training study).
    """
    if exclude is None:
        from paper_figs.plans import PROBE_STUDIES

        exclude = PROBE_STUDIES
    best, best_seeds = None, 0
    for study in sorted((results / "runs").glob("*")):
        if not study.is_dir() or study.name in exclude:
            continue
        seeds = [len(list((study / loss).glob("seed*/metrics.json"))) for loss in losses]
        if min(seeds, default=0) > best_seeds:
            best, best_seeds = study, min(seeds)
    return best


def training_study(ctx: FigureContext, losses: tuple[str, ...] = ("ce", "mr2")) -> Path:
    """The training study the figures read: ``--runs``, else one found under ``RESULTS/runs``, else
    one trained now with the training pillar's presets (quick preset under ``--quick``)."""
    if ctx.runs is not None:
        if not ctx.runs.is_dir():
            raise bad("runs", str(ctx.runs), "an existing study folder RUNS/<study>")
        return ctx.runs
    if "study" in ctx.cache:
        return ctx.cache["study"]
    study = find_study(ctx.results, losses)
    if study is None:
        study = train_missing(ctx, losses)
    ctx.cache["study"] = study
    return study


def train_missing(ctx: FigureContext, losses: tuple[str, ...]) -> Path:
    """Train the runs the figures need with the quick (``ctx.quick``) or full plan of
    ``paper_figs.plans``, under ``RESULTS/runs``, and return their study folder."""
    from paper_figs.plans import choose_plan

    plan = choose_plan(
        "quick" if ctx.quick else "full", notice=lambda m: print(f"[figures] {m}", file=sys.stderr)
    )
    runs = ctx.results / "runs"
    made: list[Path] = []
    make_missing(ctx, plan.describe(runs, losses), lambda: made.append(plan.run(runs, losses)))
    return made[0]


def probe_study(ctx: FigureContext) -> Path:
    """The linear-probe study figure 8 reads: ``RESULTS/runs/fmnist-probe`` or ``digits-probe`` when
    one holds finished runs, else the quick (``--quick``) or full probe plan run now."""
    from paper_figs.plans import PROBE_PLANS, choose_probe_plan

    if "probe" in ctx.cache:
        return ctx.cache["probe"]
    for plan in PROBE_PLANS.values():
        study = ctx.results / "runs" / plan.study
        if any(study.glob("*/seed*/metrics.json")):
            ctx.cache["probe"] = study
            return study
    plan = choose_probe_plan(
        "quick" if ctx.quick else "full", notice=lambda m: print(f"[figures] {m}", file=sys.stderr)
    )
    runs = ctx.results / "runs"
    made: list[Path] = []
    make_missing(ctx, plan.describe(runs), lambda: made.append(plan.run(runs)))
    ctx.cache["probe"] = made[0]
    return made[0]
