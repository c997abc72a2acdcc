"""``mr2 bench sims``: speed figures of the simulations, printed and saved as CSV.

* ``batched-vs-loop``: training 1,000 models (seeds x margin allocations) in one batched Newton
  solve against a Python loop that calls the *same* solver one model at a time, in one process with
  the same thread count (target: >= 20x);
* ``quick-preset``: wall time of ``mr2 simulate --preset all --quick`` from an empty folder with
  ``--jobs 2`` in a fresh process (target: < 60 s on 2 cores);
* ``full-preset`` (with ``--full``): the same for the full preset (target: < 600 s).

The machine's load average is saved beside every figure: the cores may be shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "batched_vs_loop"]

TARGET_SPEEDUP = 20.0
TARGET_QUICK_S = 60.0
TARGET_FULL_S = 600.0
# (K, d, n per class, loss): shapes of the presets' settings, from overhead-bound to memory-bound
CASES = (
    (2, 2, 10, "temperature"),
    (2, 20, 100, "temperature"),
    (5, 4, 10, "additive"),
    (5, 4, 100, "additive"),
)


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def batched_vs_loop(K: int, d: int, n: int, loss: str, models: int, threads: int = 1) -> dict:
    """Time ``models`` fits batched and in a per-model loop (same solver, same data, same margins)."""
    import torch

    from sims.config import LearnerConfig, MixtureConfig
    from sims.data import sample_training_sets
    from sims.learner import fit

    torch.set_num_threads(threads)
    seeds = 25 if models % 25 == 0 else 1
    allocs = models // seeds
    mix = MixtureConfig(sigmas=tuple(np.geomspace(0.5, 2.0, K)), n_per_class=(n,) * K, d=d)
    X, y = sample_training_sets(mix, seeds, np.random.SeedSequence(0))
    logg = np.random.default_rng(0).normal(scale=0.5, size=(allocs, K))
    margins = K * np.exp(logg) / np.exp(logg).sum(1, keepdims=True)
    cfg = LearnerConfig(loss=loss)
    fit(X[:1], y, margins[:1], cfg)  # warm-up, untimed: first-call costs (lazy init, allocator growth)
    t0 = time.perf_counter()
    batch = fit(X, y, margins, cfg)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    worst = 0.0
    for s in range(seeds):
        for a in range(allocs):
            one = fit(X[s : s + 1], y, margins[a : a + 1], cfg)
            worst = max(worst, float(np.abs(one.W[0, 0] - batch.W[s, a]).max()))
    t_loop = time.perf_counter() - t0
    return {
        "config": f"K={K} d={d} n={n} {loss} ({seeds} seeds x {allocs} allocations)",
        "models": seeds * allocs,
        "batched_s": t_batch,
        "loop_s": t_loop,
        "speedup": t_loop / t_batch,
        "max_param_diff": worst,
        "converged": bool(batch.converged.all()),
        "threads": threads,
    }


def _time_preset(quick: bool, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "mr2",
            "simulate",
            "--preset",
            "all",
            "--out",
            tmp,
            "--jobs",
            str(jobs),
            "--no-progress",
        ] + (["--quick"] if quick else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from mr2_core.io import write_csv

    p = argparse.ArgumentParser(prog="mr2 bench sims", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/bench", help="folder for sims_bench.csv")
    p.add_argument("--models", type=int, default=1000, help="models per batched-vs-loop case")
    p.add_argument("--jobs", type=int, default=2, help="workers for the preset timings")
    p.add_argument("--skip-presets", action="store_true", help="only the batched-vs-loop figure")
    p.add_argument("--full", action="store_true", help="also time the full preset (minutes)")
    args = p.parse_args(argv)
    if args.models < 1:
        raise ValueError(f"--models={args.models}: expected an integer >= 1")
    rows = []
    for K, d, n, loss in CASES:
        load = _load()
        r = batched_vs_loop(K, d, n, loss, args.models)
        rows.append(
            {
                "benchmark": "batched-vs-loop",
                **r,
                "seconds": r["batched_s"],
                "target": f">= {TARGET_SPEEDUP}x",
                "passed": r["speedup"] >= TARGET_SPEEDUP,
                "load_avg_1m": load,
            }
        )
        print(
            f"batched vs loop, {r['config']}: batched {r['batched_s']:.2f} s, loop {r['loop_s']:.2f} s, "
            f"speedup {r['speedup']:.1f}x (max |param diff| {r['max_param_diff']:.1e}, load {load})"
        )
    presets = [] if args.skip_presets else [("quick-preset", True, TARGET_QUICK_S)]
    if args.full and not args.skip_presets:
        presets.append(("full-preset", False, TARGET_FULL_S))
    for name, quick, target in presets:
        load = _load()
        secs = _time_preset(quick, args.jobs)
        rows.append(
            {
                "benchmark": name,
                "config": f"mr2 simulate --preset all{' --quick' if quick else ''} --jobs {args.jobs}",
                "seconds": secs,
                "target": f"< {target:.0f} s",
                "passed": secs < target,
                "load_avg_1m": load,
                "load_avg_1m_end": _load(),
            }
        )
        print(
            f"{name}: {secs:.1f} s with --jobs {args.jobs} "
            f"(target < {target:.0f} s; load {load} -> {_load()})"
        )
    df = pd.DataFrame(rows)
    df["cpu_count"] = os.cpu_count()
    out = Path(args.out) / "sims_bench.csv"
    write_csv(out, df)
    print(f"wrote {out}")
    return 0
