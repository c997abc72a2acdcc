"""``mr2 bench loss``: the vectorised MR2 loss against a per-class loop, and against CE.

CPU part (default), all in one process, in the official configuration (``norm_p=5``, temperature
margins, 2 sbar target, EMA 0.999), batch B, feature dimension d, for each K:

* ``vectorised`` / ``loop`` / ``ce``: forward + backward of the loss alone, the logits (B, K) and
  features (B, d) given as leaf tensors (no head). ``loop`` is ``mr2.losses.reference.LoopMR2Loss``
  (two Python loops over classes per step, like the research code); ``ce`` is
  ``torch.nn.functional.cross_entropy`` on the same logits.
* ``vectorised+head`` / ``ce+head``: one linear head (d -> K) included, logits = head(h), forward +
  backward into the head and into h: MR2's whole cost over CE's as a training step sees it.

Timings are interleaved (one repetition of each implementation in turn) so that load from other
processes hits all of them alike, and by default they are CPU time of this process
(``time.process_time``) with one torch thread: on a shared machine wall time mostly measures the
neighbours. ``--clock wall`` measures wall time instead. The inputs (fresh leaf tensors) are built
outside the timed region. ``speedup`` = loop time / this row's time (loss-alone rows);
``ratio_to_ce`` = this row's time / the CE time of the same setting.

``--device cuda`` instead times a ResNet-18 training step (forward, backward, SGD step) at batch B
with MR2 and with CE and reports their ratio; it needs a CUDA GPU and says so when there is none.

Writes ``OUT/loss_bench.csv`` (columns ``K, B, d, impl, ms_mean, ms_std, speedup, ratio_to_ce,
ms_median``) or,
for ``--device cuda``, ``OUT/loss_bench_cuda.csv``, each with a ``.json`` manifest holding the
arguments, torch version, thread count and code version.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_SPEEDUP = {100: 10.0, 1000: 30.0}  # docs/method.md, Targets: vectorised over loop, loss alone
TARGET_CE_RATIO = 2.0  # MR2 + head over CE + head at K = 1000
TARGET_GPU_RATIO = 1.10  # ResNet-18 step time, MR2 over CE, on a GPU
CHECK_RTOL = 1e-4  # vectorised and loop losses must agree to this (float32)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mr2 bench loss", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--ks", type=int, nargs="+", default=[10, 100, 1000], help="numbers of classes K")
    p.add_argument("--batch", type=int, default=256, help="batch size B (default 256)")
    p.add_argument("--dim", type=int, default=512, help="feature dimension d (default 512)")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per implementation")
    p.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: steadier on a shared machine)"
    )
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu (default): CPU time of this process, robust to other processes on a shared machine; wall",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random batches")
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cpu: loss benchmark; cuda: ResNet-18 step"
    )
    p.add_argument("--image-size", type=int, default=224, help="cuda: input side in pixels (default 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="cuda: K of the ResNet-18 (default 1000)")
    p.add_argument("--amp", action="store_true", help="cuda: bf16 autocast, channels-last")
    return p


def _check_args(args: argparse.Namespace) -> None:
    from mr2_core.checks import bad

    for name in ("batch", "dim", "reps", "threads"):
        if getattr(args, name) < 1:
            raise bad(f"--{name}", getattr(args, name), "an integer >= 1")
    if args.warmup < 0:
        raise bad("--warmup", args.warmup, "an integer >= 0")
    if any(k < 2 for k in args.ks):
        raise bad("--ks", args.ks, "numbers of classes >= 2")
    if args.image_size < 32:
        raise bad("--image-size", args.image_size, "a side of at least 32 pixels")
    if args.num_classes < 2:
        raise bad("--num-classes", args.num_classes, "an integer >= 2")


def _time_interleaved(
    fns: dict[str, tuple[Callable[[int], Any], Callable[[Any], None]]],
    reps: int,
    warmup: int,
    clock: Callable[[], float],
    sync: Callable[[], None],
) -> dict[str, list[float]]:
    """Milliseconds per call of each ``run(prepare(r))``, one repetition of each in turn.

    ``prepare`` (untimed) builds the call's inputs, e.g. fresh leaf tensors; ``run`` is timed.
    """
    for w in range(warmup):
        for prepare, run in fns.values():
            run(prepare(w))
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(reps):
        for name, (prepare, run) in fns.items():
            inputs = prepare(r)
            sync()
            t0 = clock()
            run(inputs)
            sync()
            times[name].append(1e3 * (clock() - t0))
    return times


def _row(K: int, B: int, d: int, impl: str, ms: list[float]) -> dict[str, Any]:
    return {
        "K": K,
        "B": B,
        "d": d,
        "impl": impl,
        "ms_mean": statistics.fmean(ms),
        "ms_std": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "ms_median": statistics.median(ms),
    }


OFFICIAL = {"norm_p": 5.0, "margin_form": "temperature", "rep_target": "mean", "ema_decay": 0.999}


def _bench_k(K: int, args: argparse.Namespace, gen: Any, clock: Callable[[], float]) -> list[dict[str, Any]]:
    """Rows of the CPU benchmark for one K."""
    import torch
    import torch.nn.functional as F

    from mr2.losses import MR2Loss
    from mr2.losses.reference import LoopMR2Loss

    B, d = args.batch, args.dim
    n_batches = args.warmup + args.reps
    # features like a ReLU network's: non-negative, non-zero mean
    feats = [torch.randn(B, d, generator=gen).relu() for _ in range(n_batches)]
    logits = [torch.randn(B, K, generator=gen) for _ in range(n_batches)]
    labels = [torch.randint(K, (B,), generator=gen) for _ in range(n_batches)]
    vec, loop, head_mr2 = MR2Loss(K, **OFFICIAL), LoopMR2Loss(K, **OFFICIAL), MR2Loss(K, **OFFICIAL)
    head = torch.nn.Linear(d, K)

    # the two implementations must compute the same thing before their speeds mean anything
    v, lp = vec(logits[0], feats[0], labels[0]), loop(logits[0], feats[0], labels[0])
    if not torch.allclose(v, lp, rtol=CHECK_RTOL):
        raise RuntimeError(f"K={K}: vectorised loss {float(v)} != loop loss {float(lp)}")

    def leaves(r: int) -> tuple[Any, Any, Any]:
        return logits[r].clone().requires_grad_(), feats[r].clone().requires_grad_(), labels[r]

    def loss_alone(fn: Callable[..., Any]) -> Callable[[Any], None]:
        def run(inputs: tuple[Any, Any, Any]) -> None:
            lg, h, y = inputs
            (F.cross_entropy(lg, y) if fn is F.cross_entropy else fn(lg, h, y)).backward()

        return run

    def with_head(use_mr2: bool) -> Callable[[Any], None]:
        def run(inputs: tuple[Any, Any, Any]) -> None:
            _, h, y = inputs
            lg = head(h)
            (head_mr2(lg, h, y) if use_mr2 else F.cross_entropy(lg, y)).backward()

        return run

    fns = {
        "vectorised": (leaves, loss_alone(vec)),
        "loop": (leaves, loss_alone(loop)),
        "ce": (leaves, loss_alone(F.cross_entropy)),
        "vectorised+head": (leaves, with_head(True)),
        "ce+head": (leaves, with_head(False)),
    }
    times = _time_interleaved(fns, args.reps, args.warmup, clock, lambda: None)
    loop_ms = statistics.fmean(times["loop"])
    rows = []
    for impl, ms in times.items():
        row = _row(K, B, d, impl, ms)
        with_head_row = impl.endswith("+head")
        row["speedup"] = float("nan") if with_head_row else loop_ms / row["ms_mean"]
        row["ratio_to_ce"] = row["ms_mean"] / statistics.fmean(times["ce+head" if with_head_row else "ce"])
        rows.append(row)
    return rows


def bench_cpu(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows of the CPU benchmark (module docstring), for every K of ``args.ks``."""
    import torch

    from mr2_core.progress import progress_bar

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    gen = torch.Generator().manual_seed(args.seed)
    rows: list[dict[str, Any]] = []
    for K in progress_bar(args.ks, desc="bench loss", unit="K"):
        rows += _bench_k(K, args, gen, clock)
    return rows


def _resnet18(num_classes: int):  # noqa: ANN202 - a torch module, built lazily
    """A standard (ImageNet-layout) ResNet-18 split into a feature trunk and a linear head."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.b1(self.c1(x)))
            return torch.relu(self.b2(self.c2(y)) + self.short(x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), nn.Linear(512, num_classes)


def bench_train_step(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """ResNet-18 training-step time with MR2 and with CE on ``device`` (rows impl mr2 / ce)."""
    import torch
    import torch.nn.functional as F

    from mr2.losses import MR2Loss

    torch.manual_seed(args.seed)
    K, B = args.num_classes, args.batch
    trunk, head = _resnet18(K)
    model = torch.nn.ModuleDict({"trunk": trunk, "head": head}).to(device)
    fmt = torch.channels_last if args.amp else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # as the training loop runs it on a GPU: value checks (a read-back) every log_every = 20 steps
    mr2 = MR2Loss(K, norm_p=5.0, check_every=20 if device.startswith("cuda") else None).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    x = torch.randn(B, 3, args.image_size, args.image_size, device=device, generator=gen)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(K, (B,), device=device, generator=gen)
    is_cuda = device.startswith("cuda")

    def step(use_mr2: bool) -> tuple[Callable[[int], None], Callable[[None], None]]:
        def run(_: None) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(
                device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=args.amp
            ):
                h = model["trunk"](x)
                logits = model["head"](h)
                loss = mr2(logits, h, y) if use_mr2 else F.cross_entropy(logits, y)
            loss.backward()
            opt.step()

        return (lambda r: None), run

    sync = torch.cuda.synchronize if is_cuda else (lambda: None)
    times = _time_interleaved(
        {"mr2": step(True), "ce": step(False)}, args.reps, args.warmup, time.perf_counter, sync
    )
    ce_ms = statistics.fmean(times["ce"])
    rows = []
    for impl, ms in times.items():
        row = _row(K, B, 512, f"resnet18-{impl}", ms)
        row["speedup"] = float("nan")
        row["ratio_to_ce"] = row["ms_mean"] / ce_ms
        rows.append(row)
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'K':>5} {'B':>4} {'d':>4}  {'impl':<16} {'ms_mean':>9} {'ms_std':>8} {'speedup':>8} {'x CE':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        sp = "" if r["speedup"] != r["speedup"] else f"{r['speedup']:.1f}"
        print(
            f"{r['K']:>5} {r['B']:>4} {r['d']:>4}  {r['impl']:<16} {r['ms_mean']:>9.2f} {r['ms_std']:>8.2f}"
            f" {sp:>8} {r['ratio_to_ce']:>6.2f}"
        )


def _verdicts(rows: list[dict[str, Any]]) -> list[str]:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    by = {(r["K"], r["impl"]): r for r in rows}
    for K, target in TARGET_SPEEDUP.items():
        if (K, "vectorised") in by:
            s = by[(K, "vectorised")]["speedup"]
            out.append(
                f"K={K}: vectorised {s:.1f}x faster than the loop (target >= {target:g}x): {met(s >= target)}"
            )
    if (1000, "vectorised+head") in by:
        q = by[(1000, "vectorised+head")]["ratio_to_ce"]
        out.append(
            f"K=1000: MR2/CE same head {q:.2f} (target <= {TARGET_CE_RATIO:g}): {met(q <= TARGET_CE_RATIO)}"
        )
    for r in rows:
        if r["impl"] == "resnet18-mr2":
            q = r["ratio_to_ce"]
            out.append(
                f"ResNet-18 MR2/CE {q:.3f} (target <= {TARGET_GPU_RATIO:g}): {met(q <= TARGET_GPU_RATIO)}"
            )
    return out


def run_benchmark(out: str | Path = "results/bench", **options: Any) -> Any:
    """Run the benchmark with ``options`` (the command's long options, e.g. ``reps=5``; the rest take
    the command's defaults), print the table, write the CSV and its JSON manifest under ``out``.

    Returns the table (a pandas DataFrame). Raises ValueError for a bad option or value.
    """
    parser = build_parser()
    known = {a.dest for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(options) - known)
    if unknown:
        from mr2_core.checks import bad

        raise bad("options", unknown, f"options of `mr2 bench loss` ({', '.join(sorted(known))})")
    args = parser.parse_args([])
    for key, value in {**options, "out": str(out)}.items():
        setattr(args, key, value)
    return _run(args)


def main(argv: list[str] | None = None) -> int:
    """``mr2 bench loss``: parse ``argv`` and run the benchmark (see ``run_benchmark``)."""
    _run(build_parser().parse_args(argv))
    return 0


def _run(args: argparse.Namespace) -> Any:
    import pandas as pd
    import torch

    from mr2_core.contracts import LOSS_BENCH_COLUMNS
    from mr2_core.io import code_version, write_csv, write_json

    _check_args(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        if args.device == "cuda":
            if not torch.cuda.is_available():
                from mr2_core.checks import bad

                raise bad(
                    "--device",
                    "cuda",
                    "a machine with a CUDA GPU (torch.cuda.is_available() is False here); "
                    "run without --device for the CPU benchmark",
                )
            rows = bench_train_step(args, "cuda")
            name = "loss_bench_cuda"
        else:
            rows = bench_cpu(args)
            name = "loss_bench"
    finally:
        torch.set_num_threads(threads)  # a library call must not change the caller's thread count
    _print_table(rows)
    verdicts = _verdicts(rows)
    for line in verdicts:
        print(line)
    out = Path(args.out)
    table = pd.DataFrame(rows, columns=list(LOSS_BENCH_COLUMNS))
    write_csv(out / f"{name}.csv", table)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    write_json(
        out / f"{name}.json",
        {
            "args": vars(args),
            "torch": torch.__version__,
            "threads": args.threads,
            "device": device_name,
            "verdicts": verdicts,
            "code_version": code_version(),
        },
    )
    print(f"wrote {out / (name + '.csv')}")
    return table


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except ValueError as exc:
        print(f"mr2 bench loss: error: {exc}", file=sys.stderr)
        sys.exit(2)
