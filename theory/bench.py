"""``mr2 bench theory``: speed and accuracy of the margin rule, and the cold time of ``mr2 derive``.

Three figures, printed as a table and written to ``DIR/theory_bench.csv``:

1. ``optimal_margins`` on 100,000 classes, NumPy and torch, best of N calls on one thread
   (target: under 10 ms);
2. the largest relative error between ``optimal_margins`` and SciPy's numeric constrained optimiser
   (``theory.reference``) over random instances with K up to 1,000 (target: below 1e-6);
3. the wall time of a cold ``mr2 derive`` in a fresh interpreter (target: under 20 s).

Timings on a shared machine are noisy: the best of N is the figure least disturbed by other work.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# the project's targets (docs/method.md, Targets)
TARGET_MS_100K = 10.0  # ms for 100,000 classes on one CPU core
TARGET_REL_ERR = 1e-6  # vs a numeric constrained optimiser, K up to 1,000
TARGET_DERIVE_S = 20.0  # cold `mr2 derive`

AGREEMENT_SIZES = (2, 3, 10, 100, 300, 1000)
SLSQP_MAX_K = 100  # SLSQP's cost grows as K^3: small K only
COLUMNS = ["benchmark", "impl", "K", "dtype", "value", "unit", "n_runs", "target", "passed"]


def _best_ms(fn: Any, repeats: int, sync: Any = None) -> tuple[float, float]:
    """(best, median) wall time of ``fn()`` in ms over ``repeats`` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = np.empty(repeats)
    for r in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times[r] = (time.perf_counter() - t0) * 1e3
    return float(times.min()), float(np.median(times))


def time_margins(n_classes: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """Best-of-``repeats`` time of ``optimal_margins`` on ``n_classes`` classes, one thread."""
    import torch

    from theory.margins import optimal_margins

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0.0, 1.0, n_classes)
    w = rng.uniform(0.5, 1.5, n_classes)
    cases = [
        ("numpy", "float64", True, lambda: optimal_margins(a, weights=w)),
        ("numpy", "float64", False, lambda: optimal_margins(a, weights=w, validate=False)),
    ]
    for dtype in (torch.float32, torch.float64):
        at, wt = torch.as_tensor(a, dtype=dtype), torch.as_tensor(w, dtype=dtype)
        name = str(dtype).removeprefix("torch.")
        cases.append(("torch", name, True, lambda at=at, wt=wt: optimal_margins(at, weights=wt)))
        cases.append(
            ("torch", name, False, lambda at=at, wt=wt: optimal_margins(at, weights=wt, validate=False))
        )
    rows = []
    for impl, dtype, validate, fn in cases:
        best, median = _best_ms(fn, repeats)
        label = f"{impl} ({'validated' if validate else 'validate=False'})"
        rows.append(
            _row("optimal_margins time (best)", label, n_classes, dtype, best, "ms", repeats, TARGET_MS_100K)
        )
        rows.append(
            _row("optimal_margins time (median)", label, n_classes, dtype, median, "ms", repeats, None)
        )
    return rows


def agreement(
    instances_per_size: int, seed: int, sizes: tuple[int, ...] = AGREEMENT_SIZES
) -> list[dict[str, Any]]:
    """Max relative error of the closed form vs SciPy over random instances, per method."""
    from mr2_core.progress import progress_bar
    from theory.margins import optimal_margins
    from theory.reference import scipy_optimal_margins

    rng = np.random.default_rng(seed)
    worst = {"softmax": 0.0, "slsqp": 0.0}
    count = {"softmax": 0, "slsqp": 0}
    jobs = [K for K in sizes for _ in range(instances_per_size)]
    for K in progress_bar(jobs, desc="scipy agreement", leave=False):
        p = float(rng.uniform(0.25, 4.0))
        a = np.exp(rng.uniform(-6.0, 6.0, K))  # spreads over about five decades
        w = rng.uniform(0.1, 1.0, K)
        cbar = float(rng.uniform(0.1, 5.0))
        closed = optimal_margins(a, mean_margin=cbar, weights=w, power=p)
        for method in ("softmax", "slsqp"):
            if method == "slsqp" and K > SLSQP_MAX_K:
                continue
            ref = scipy_optimal_margins(a, mean_margin=cbar, weights=w, power=p, method=method)
            worst[method] = max(worst[method], float(np.max(np.abs(closed - ref) / ref)))
            count[method] += 1
    return [
        _row(
            "max rel err vs scipy",
            f"scipy {method}",
            max(sizes) if method == "softmax" else max(K for K in sizes if K <= SLSQP_MAX_K),
            "float64",
            worst[method],
            "relative",
            count[method],
            TARGET_REL_ERR,
        )
        for method in ("softmax", "slsqp")
        if count[method]
    ]


def cold_derive(runs: int) -> list[dict[str, Any]]:
    """Wall time of ``python -m mr2 derive`` in a fresh interpreter (best and worst of ``runs``)."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "mr2", "derive", "--out", tmp],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
            )
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"mr2 derive failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return [
        _row("cold mr2 derive (best)", "subprocess", 0, "", min(times), "s", runs, TARGET_DERIVE_S),
        _row("cold mr2 derive (worst)", "subprocess", 0, "", max(times), "s", runs, TARGET_DERIVE_S),
    ]


def _row(
    benchmark: str, impl: str, K: int, dtype: str, value: float, unit: str, n: int, target: float | None
):
    passed = "" if target is None else bool(value < target)
    return dict(zip(COLUMNS, [benchmark, impl, K, dtype, value, unit, n, target, passed], strict=True))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mr2 bench theory", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/bench", metavar="DIR", help="folder for theory_bench.csv")
    p.add_argument("--classes", type=int, default=100_000, help="K for the timing (default 100000)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per case; the best is reported")
    p.add_argument("--instances", type=int, default=10, help="random instances per K for the agreement")
    p.add_argument(
        "--sizes",
        default=",".join(map(str, AGREEMENT_SIZES)),
        help="comma-separated K values for the agreement (default %(default)s)",
    )
    p.add_argument("--derive-runs", type=int, default=2, help="cold `mr2 derive` runs")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from mr2_core.checks import bad
    from mr2_core.io import write_csv

    args = build_parser().parse_args(argv)
    for name in ("classes", "repeats", "instances", "derive_runs"):
        if getattr(args, name) < 1:
            raise bad(f"--{name.replace('_', '-')}", getattr(args, name), "an integer >= 1")
    try:
        sizes = tuple(int(v) for v in args.sizes.split(","))
    except ValueError:
        raise bad("--sizes", args.sizes, "comma-separated integers such as 2,10,1000") from None
    if min(sizes) < 2:
        raise bad("--sizes", args.sizes, "class counts >= 2")
    rows = time_margins(args.classes, args.repeats, args.seed)
    rows += agreement(args.instances, args.seed, sizes)
    rows += cold_derive(args.derive_runs)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    path = Path(args.out) / "theory_bench.csv"
    write_csv(path, frame)
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format
    ):
        print(frame.to_string(index=False))
    print(f"\nwrote {path}")
    return 0
