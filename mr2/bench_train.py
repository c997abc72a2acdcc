"""``mr2 bench train``: full training steps of every loss, where MR²'s time goes, and the end-to-end
throughput of a real training epoch.

Three parts, all in one process:

1. **Steps.** Forward, loss, backward and optimiser step of each method (``ce``, ``mr2``,
   ``mr2-separation``, ``focal``, ``ldam``, ``cdb``), each with its own copy of the model built and
   optimised exactly as ``mr2 train`` builds it (the preset's config: small CNN as in ``fmnist-verify``,
   ResNet-18 as in ``fmnist-gpu``; LDAM with its cosine head), on 1x28x28 images. The methods take one
   step each in turn (interleaved, so load from other processes hits all alike), after warm-up; the
   figure is the median over repetitions. On a CPU the clock is this process's CPU time with one
   thread (as ``mr2 bench loss``); on a GPU it is wall time of a block of steps between two
   synchronisations, with bf16 autocast and channels-last, and the losses check their values every
   ``log_every`` steps, as the training loop sets them there.
2. **Breakdown** of one MR² step (and CE's, for reference) into phases timed one by one: the model's
   forward, the input check (the host read-back), the statistics, the margins, the logit term, the
   representation term, the loss's backward, the model's backward and the optimiser step; and the
   number of operations in a steady-state step that would make a GPU wait (``mr2.host_syncs``), both
   as configured on this device and as the training loop configures a GPU (there the loss's value
   check, one read-back, comes every ``log_every`` steps; the step counted falls between two).
3. **Throughput**: images per second of a real ``mr2 train`` epoch (``train_epoch``: batching,
   augmentation, normalisation, the loss, the NaN checks and the progress accounting; on the real
   dataset) against pure steps of the same run on batches its pipeline prepared beforehand (timed just
   before and just after the epoch); the difference is what the pipeline and the bookkeeping cost.
   The pipeline alone (a step's images and labels) is also timed directly, which is far less noisy
   on a shared machine. Validation, timed apart, is reported too (not for ResNet-18 on a CPU).

Writes ``OUT/train_bench.csv`` (one row per model and method: ``ms_median``, ``ratio_to_ce``, ...),
``OUT/train_bench_breakdown.csv``, ``OUT/train_bench_throughput.csv`` and ``OUT/train_bench.json`` (the
arguments, torch version, threads, device, code version and the verdicts against the targets).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mr2.bench_breakdown import PHASES, breakdown_step  # part 2 (light: imports torch when called)

TARGET_CPU_RATIO = 1.05  # MR2 step / CE step, small CNN and ResNet-18 on a CPU
TARGET_GPU_RATIO = 1.10  # MR2 step / CE step, ResNet-18 on a GPU
TARGET_PIPELINE_OVERHEAD = 0.10  # a real epoch's time per image over the pure step's, minus 1
# the methods timed by default; --methods takes any of the registry (mr2_core.contracts.METHODS)
METHODS = ("ce", "mr2", "mr2-separation", "focal", "ldam", "cdb")
MODELS = ("small-cnn", "resnet18")
PRESET_OF = {"small-cnn": "fmnist-verify", "resnet18": "fmnist-gpu"}  # the config each model trains with
CPU_BATCH = 128  # images per step on a CPU, both models (fmnist-gpu's 512 is for a GPU)
DEFAULT_REPS = {
    ("cpu", "small-cnn"): 30,
    ("cpu", "resnet18"): 4,
    ("cuda", "small-cnn"): 30,
    ("cuda", "resnet18"): 30,
}
STEPS_PER_REP = {"cpu": 1, "cuda": 10}  # steps between two clock reads (a GPU needs a block)
IMAGE_SIDE, NUM_CLASSES = 28, 10  # Fashion-MNIST
CSV_FILE, BREAKDOWN_FILE, THROUGHPUT_FILE = (
    "train_bench.csv",
    "train_bench_breakdown.csv",
    "train_bench_throughput.csv",
)
CSV_COLUMNS = ["device", "model", "method", "batch", "ms_median", "ms_mean", "ms_std", "reps", "ratio_to_ce",
               "images_per_s", "syncs_per_step"]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mr2 bench train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the steps run")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to time")
    from mr2_core.contracts import METHODS as REGISTERED

    p.add_argument(
        "--methods", nargs="+", choices=tuple(REGISTERED), default=list(METHODS), metavar="METHOD",
        help=f"methods to time (default: {' '.join(METHODS)}; any registered method)",
    )  # fmt: skip
    p.add_argument(
        "--reps", type=int, default=None, help="timed repetitions (default 30; ResNet-18 on CPU 4)"
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (default 2)")
    p.add_argument(
        "--batch", type=int, default=None, help="images per step (default: the preset's on a GPU, 128 on CPU)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument(
        "--clock", choices=("cpu", "wall"), default=None, help="default: cpu on a CPU, wall on a GPU"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the random batches")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (the config's compile)")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false", help="skip part 2")
    p.add_argument(
        "--throughput", choices=("on", "off"), default="on", help="part 3, the real epoch (default on)"
    )
    p.add_argument("--dataset", default="fashion-mnist", help="part 3's dataset (default fashion-mnist)")
    p.add_argument(
        "--train-samples", type=int, default=None,
        help="part 3: training images of the epoch (default: all; ResNet-18 on CPU 1024)",
    )  # fmt: skip
    return p


def _check_args(args: argparse.Namespace) -> None:
    from mr2_core.checks import MAX_THREADS, bad, check_scalar

    check_scalar(args.threads, "--threads", "int", low=1, high=MAX_THREADS)
    for name in ("reps", "batch", "train_samples"):
        if getattr(args, name) is not None:
            check_scalar(getattr(args, name), f"--{name.replace('_', '-')}", "int", low=1)
    check_scalar(args.warmup, "--warmup", "int", low=0)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise bad(
                "--device", "cuda", "a machine with a CUDA GPU (torch.cuda.is_available() is False here)"
            )


# ------------------------------------------------------------------------------------ set-up
def train_config(model: str, method: str, device: str, **overrides: Any):  # noqa: ANN201 - a TrainConfig
    """The config ``mr2 train`` uses for ``method`` with ``model`` (``PRESET_OF``), on ``device``."""
    from mr2.train import get_preset

    preset = get_preset(PRESET_OF[model])
    options = {"device": device, **overrides}  # the method's own overrides come from the registry
    if device == "cpu":
        options.setdefault("batch_size", CPU_BATCH)
    # another batch takes the preset's learning rate by the linear scaling rule (lr proportional to
    # the batch), so that a real epoch at that batch trains rather than diverges
    options.setdefault("lr", preset.config.lr * options.get("batch_size", preset.config.batch_size)
                       / preset.config.batch_size)  # fmt: skip
    return preset.config_for(method, 0, **options)


@dataclasses.dataclass
class Trainee:
    """One method's model, loss and optimiser, as the training loop builds them."""

    method: str
    cfg: Any
    model: Any
    net: Any  # the model, or its torch.compile wrapper
    loss: Any
    optimizer: Any
    amp_dtype: Any


def build_trainee(model_name: str, method: str, device: Any, args: argparse.Namespace) -> Trainee:
    import torch

    from mr2.losses import make_loss
    from mr2.models import build_model
    from mr2.train.runtime import amp_dtype, make_optimizer

    overrides = {"compile": bool(args.compile)}
    if args.batch is not None:
        overrides["batch_size"] = args.batch
    cfg = train_config(model_name, method, device.type, **overrides)
    torch.manual_seed(args.seed)  # every method starts from the same weights
    model = build_model(
        cfg.model, num_classes=NUM_CLASSES, in_channels=1, image_size=IMAGE_SIDE, width=cfg.width,
        hidden=cfg.hidden, head=cfg.head,
    ).to(device)  # fmt: skip
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss = make_loss(cfg.loss, NUM_CLASSES, **cfg.loss_options).to(device)
    if device.type != "cpu" and loss.check_every is None:  # what mr2.train.fast does on a GPU
        loss.check_every = cfg.log_every
    net = torch.compile(model) if cfg.compile else model
    return Trainee(
        method, cfg, model, net, loss, make_optimizer(model.parameters(), cfg), amp_dtype(device, cfg.amp)
    )


def _batches(n: int, batch: int, device: Any, seed: int, channels_last: bool) -> list[tuple[Any, Any]]:
    """``n`` random batches of normalised 1x28x28 images and balanced labels, on ``device``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 1, IMAGE_SIDE, IMAGE_SIDE, generator=gen)
        y = torch.randperm(batch, generator=gen) % NUM_CLASSES
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        out.append((x.to(device), y.to(device)))
    return out


def train_step(t: Trainee, x: Any, y: Any) -> Any:
    """One step as ``loop.train_epoch`` takes it: forward under autocast, the loss in float32,
    backward, optimiser step. Returns the loss (a device tensor)."""
    import torch

    with torch.autocast(x.device.type, dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
        logits, feats = t.net(x)
    loss = t.loss(logits.float(), feats.float(), y)
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    t.optimizer.step()
    return loss


# ------------------------------------------------------------------------------------ part 1
def _sync_fn(device: Any) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def time_steps(
    trainees: list[Trainee], batches: list[tuple[Any, Any]], reps: int, warmup: int, steps: int,
    clock: Callable[[], float], sync: Callable[[], None],
) -> dict[str, list[float]]:  # fmt: skip
    """Milliseconds per step of each trainee: blocks of ``steps`` steps, one block of each in turn."""
    times: dict[str, list[float]] = {t.method: [] for t in trainees}
    for r in range(warmup + reps):
        for t in trainees:
            sync()
            t0 = clock()
            for i in range(steps):
                x, y = batches[(r * steps + i) % len(batches)]
                train_step(t, x, y)
            sync()
            if r >= warmup:
                times[t.method].append(1e3 * (clock() - t0) / steps)
    return times


def count_step_syncs(t: Trainee, x: Any, y: Any, *, gpu_config: bool) -> int:
    """Operations that would synchronise a GPU (``mr2.host_syncs``) in one steady-state step of ``t``
    that falls between two of its loss's scheduled value checks (with ``check_every`` = 1, every step
    checks: one read-back). ``gpu_config``: with the loss as the training loop configures it on a GPU
    (fixed-shape layout, value checks every ``log_every`` steps), on whatever device ``t`` is."""
    import copy

    from mr2.host_syncs import count_host_syncs

    if gpu_config:
        t = dataclasses.replace(t, loss=copy.deepcopy(t.loss))
        if hasattr(t.loss, "layout"):
            t.loss.layout = "dense"
        t.loss.check_every = t.loss.check_every or t.cfg.log_every
    t.loss.skip_scheduled_check()  # a steady-state step: between two scheduled value checks
    with count_host_syncs() as counter:
        train_step(t, x, y)
    return counter.total


# ------------------------------------------------------------------------------------ part 3
def epoch_throughput(
    model: str, method: str, device: Any, args: argparse.Namespace, clock: Callable[[], float]
) -> dict[str, Any]:
    """Images per second of ``method``'s pure training step and of one real training epoch
    (``loop.train_epoch``) of the same run, on the same data; and the time of one validation.

    The pure step runs on batches the epoch's own pipeline prepared beforehand (gathered, augmented,
    normalised), so the two differ only by what the epoch adds: the pipeline and the bookkeeping.
    """
    from mr2.train import loop, session
    from mr2.train.fast import EpochFeed, configure_value_checks, training_net
    from mr2.train.rundir import RunPaths

    sync = _sync_fn(device)
    samples = args.train_samples
    if samples is None and device.type == "cpu" and model == "resnet18":
        samples = 1024
    overrides: dict[str, Any] = {"dataset": args.dataset, "epochs": 1, "compile": bool(args.compile)}
    if samples is not None:
        overrides["max_train_samples"] = samples
    if args.batch is not None:
        overrides["batch_size"] = args.batch
    cfg = train_config(model, method, device.type, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        s = session.open_session(cfg, RunPaths(Path(tmp)), resume=False, feature_cache=False)
        s.model.train()
        feed = EpochFeed(s, 0)
        full = [i for i, idx in enumerate(feed.batches) if len(idx) == s.per_rank_batch]
        ready = [(feed.images(i, feed.batches[i]), s.y_train[feed.batches[i]]) for i in full[:4]]
        configure_value_checks(s)  # as the loop configures the loss on this device
        t = Trainee(method, cfg, s.model, training_net(s), s.loss_fn, s.optimizer, s.amp_dtype)
        steps = STEPS_PER_REP[device.type]
        reps = max(2, min(args.reps or DEFAULT_REPS[(device.type, model)], len(feed.batches)))
        # pure steps just before and just after the epoch: a drift in the machine's load hits both
        pure = time_steps([t], ready, reps, args.warmup, steps, clock, sync)[method]
        sync()
        t0 = clock()
        train = loop.train_epoch(s, 0, show=False)
        sync()
        epoch_s = clock() - t0
        pure += time_steps([t], ready, reps, 0, steps, clock, sync)[method]
        pipeline = []  # the pipeline alone, timed directly: images and labels of a step
        for i in full[: 2 * reps]:
            sync()
            t0 = clock()
            feed.images(i, feed.batches[i])
            s.y_train.index_select(0, feed.batches[i])
            sync()
            pipeline.append(1e3 * (clock() - t0))
        val_s = float("nan")
        if device.type != "cpu" or model == "small-cnn":  # ResNet-18 on a CPU: minutes, not timed
            t0 = clock()
            session.validate(s)
            sync()
            val_s = clock() - t0
    n = len(s.y_train)
    pure_ms = statistics.median(pure)
    pure_rate = 1e3 * s.per_rank_batch / pure_ms
    return {
        "model": model, "method": method, "batch": s.per_rank_batch, "images": n, "epoch_s": epoch_s,
        "validation_s": val_s, "images_per_s_epoch": n / epoch_s, "images_per_s_pure": pure_rate,
        "pipeline_overhead": pure_rate / (n / epoch_s) - 1.0, "pipeline_ms": statistics.median(pipeline),
        "pipeline_share": statistics.median(pipeline) / pure_ms, "train_loss": train["train_loss"],
    }  # fmt: skip


# ------------------------------------------------------------------------------------ the run
def _verdicts(rows: list[dict[str, Any]], throughput: list[dict[str, Any]], device: str) -> list[str]:
    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    for r in rows:
        if r["method"] != "mr2":
            continue
        target = TARGET_GPU_RATIO if device == "cuda" else TARGET_CPU_RATIO
        if device == "cuda" and r["model"] != "resnet18":
            continue
        q = r["ratio_to_ce"]
        out.append(
            f"{r['model']} on {device}: MR2 step / CE step {q:.3f} (target <= {target:g}): {met(q <= target)}"
        )
    for r in throughput:
        o = r["pipeline_overhead"]
        out.append(
            f"{r['model']} {r['method']}: a real epoch costs {100 * o:+.1f}% per image over the pure step "
            f"({r['images_per_s_epoch']:.0f} vs {r['images_per_s_pure']:.0f} images/s; target <= "
            f"{100 * TARGET_PIPELINE_OVERHEAD:.0f}%): {met(o <= TARGET_PIPELINE_OVERHEAD)}; the data "
            f"pipeline alone {r['pipeline_ms']:.2f} ms a step = {100 * r['pipeline_share']:.1f}% of the step"
        )
    return out


def run_benchmark(out: str | Path = "results/bench", **options: Any) -> Any:
    """Run the benchmark with ``options`` (the command's long options with underscores, e.g.
    ``reps=5, models=["small-cnn"]``), print the tables, write the files under ``out``.

    Returns the step table (a pandas DataFrame). Raises ValueError for a bad option or value.
    """
    parser = build_parser()
    known = {a.dest for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(options) - known)
    if unknown:
        from mr2_core.checks import bad

        raise bad("options", unknown, f"options of `mr2 bench train` ({', '.join(sorted(known))})")
    args = parser.parse_args([])
    for key, value in {**options, "out": str(out)}.items():
        setattr(args, key, value)
    return _run(args)


def main(argv: list[str] | None = None) -> int:
    """``mr2 bench train``: parse ``argv`` and run the benchmark (see ``run_benchmark``)."""
    _run(build_parser().parse_args(argv))
    return 0


def _run(args: argparse.Namespace) -> Any:
    import pandas as pd
    import torch

    from mr2_core.io import code_version, write_csv, write_json

    _check_args(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows, parts, throughput = _measure(args)
    finally:
        torch.set_num_threads(threads)  # a library call must not change the caller's thread count
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if parts:
        print(pd.DataFrame(parts).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if throughput:
        print(pd.DataFrame(throughput).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    verdicts = _verdicts(rows, throughput, args.device)
    for line in verdicts:
        print(line)
    out = Path(args.out)
    write_csv(out / CSV_FILE, table)
    if parts:
        write_csv(out / BREAKDOWN_FILE, pd.DataFrame(parts))
    if throughput:
        write_csv(out / THROUGHPUT_FILE, pd.DataFrame(throughput))
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    write_json(out / "train_bench.json", {
        "args": vars(args), "torch": torch.__version__, "threads": args.threads, "device": device_name,
        "verdicts": verdicts, "code_version": code_version(),
    })  # fmt: skip
    print(f"wrote {out / CSV_FILE}")
    return table


def _measure(args: argparse.Namespace) -> tuple[list[dict], list[dict], list[dict]]:
    import torch

    device = torch.device(args.device)
    clock_name = args.clock or ("wall" if device.type == "cuda" else "cpu")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    sync = _sync_fn(device)
    rows, parts, throughput = [], [], []
    methods = list(dict.fromkeys(["ce", *args.methods]))  # CE first: every ratio needs it
    for model in args.models:
        trainees = [build_trainee(model, m, device, args) for m in methods]
        batch = trainees[0].cfg.batch_size
        batches = _batches(4, batch, device, args.seed, trainees[0].cfg.channels_last)
        reps = args.reps or DEFAULT_REPS[(device.type, model)]
        times = time_steps(trainees, batches, reps, args.warmup, STEPS_PER_REP[device.type], clock, sync)
        ce_ms = statistics.median(times["ce"])
        x, y = batches[0]
        for t in trainees:
            ms = times[t.method]
            med = statistics.median(ms)
            rows.append({
                "device": device.type, "model": model, "method": t.method, "batch": batch,
                "ms_median": med, "ms_mean": statistics.fmean(ms),
                "ms_std": statistics.stdev(ms) if len(ms) > 1 else 0.0, "reps": len(ms),
                "ratio_to_ce": med / ce_ms, "images_per_s": 1e3 * batch / med,
                "syncs_per_step": count_step_syncs(t, x, y, gpu_config=False),
            })  # fmt: skip
        if args.breakdown:
            for t in trainees:
                if t.method not in ("ce", "mr2"):
                    continue
                laps = [breakdown_step(t, *batches[r % len(batches)], clock, sync) for r in range(reps + 1)][
                    1:
                ]
                gpu_syncs = count_step_syncs(t, x, y, gpu_config=True)
                for phase in PHASES:
                    parts.append({"model": model, "method": t.method, "phase": phase,
                                  "ms_median": statistics.median(lap[phase] for lap in laps)})  # fmt: skip
                parts.append({"model": model, "method": t.method, "phase": "syncs per step (GPU config)",
                              "ms_median": float(gpu_syncs)})  # fmt: skip
        del trainees, batches
        if args.throughput == "on":
            for method in [m for m in ("ce", "mr2") if m in methods]:
                throughput.append(epoch_throughput(model, method, device, args, clock))
    return rows, parts, throughput


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except ValueError as exc:
        print(f"mr2 bench train: error: {exc}", file=sys.stderr)
        sys.exit(2)
