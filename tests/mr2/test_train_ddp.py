"""DDP on CPU (gloo): two processes train like one, every rank ends with the same model and numbers, and
a run killed under torchrun resumes to the numbers of the uninterrupted run.

The two-process runs share one ``torch.multiprocessing.spawn`` (module fixture ``two_ranks``): starting
the interpreters costs more than the runs. The one-process references run in the test process.

What must hold for two processes to equal one (docs/training.md, Several GPUs and several nodes): the
ranks' batches of a step union to the one-process batch (n_train and batch_size multiples of the world
size: 387 requested digits give n_train = 386, batch 64 = 2 x 32, and a last step of 2 = 2 x 1), no
augmentation (each rank draws its own), synchronised batch norm, deterministic kernels, and MR²'s
representation term over the gathered batch (``sync_rep``, its default).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mr2.metrics import class_feature_stats
from mr2.models import build_model
from mr2.train import get_preset, train_run
from mr2.train.evaluation import class_feature_sums, feature_stats_from_sums, shard
from mr2.train.runtime import Dist
from mr2.train.sync_bn import GlobalBatchNorm, convert_sync_batchnorm, resolve_sync_bn

REPO = Path(__file__).resolve().parents[2]
WORLD = 2
# Two processes reduce float32 sums in another order than one (gradients averaged over ranks, batch-norm
# and MR² statistics from all-reduced sums), so each step differs by float32 rounding (~1e-7 relative)
# and training carries that forward. Measured after 21 steps (3 epochs of 7): at most 1.3e-6 of a
# tensor's largest entry (parameters, batch-norm buffers, MR²'s EMAs), 2.4e-7 relative on the logged
# values. The tolerance leaves about ten times that, relative to each tensor's largest entry (an
# elementwise relative test is meaningless for entries near 0); without synchronised batch norm the
# runs are 0.3 apart (tested below as the control).
STATE_RTOL = 1e-5
LOG_RTOL = 1e-5  # logged losses, margins, statistics, validation numbers
BN_ATOL = 1e-12  # GlobalBatchNorm in float64 against one process: summation order only
EQUIVALENCE = {
    "max_train_samples": 387,  # -> n_train = 386 = 2 x 193 (the stratified subsample rounds)
    "epochs": 3,  # the SIGKILL test needs time to kill after the first checkpoint
    "deterministic": True,
    "sync_bn": True,
    "save_model": True,
    "device": "cpu",
}
# name -> (loss, overrides); "mr2-resumed" stops after one epoch (epoch_budget) and resumes
RUNS = {
    "ce": ("ce", {}),
    "mr2": ("mr2", {}),
    "ce-no-sync-bn": ("ce", {"sync_bn": False}),
    "mr2-resumed": ("mr2", {}),
}


def _cfg(loss: str, **extra):
    return get_preset("digits-smoke").config_for(loss, 0, **{**EQUIVALENCE, **extra})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_global_batch_norm(rank: int, out: Path) -> None:
    """GlobalBatchNorm on unequal per-rank batches (3 and 5 images), float64: outputs, input and
    parameter gradients (summed over ranks, as DDP would up to its 1/N) and running statistics."""
    gen = torch.Generator().manual_seed(0)
    x = 2.0 + 3.0 * torch.randn(8, 4, 3, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(8, 4, 3, 3, generator=gen, dtype=torch.float64)
    part = slice(0, 3) if rank == 0 else slice(3, 8)
    bn = GlobalBatchNorm(4).double()
    xr = x[part].clone().requires_grad_(True)
    (bn(xr) * w[part]).sum().backward()
    y = bn(x[part].clone()).detach()  # a second step: the running statistics move again
    grads = torch.cat([bn.weight.grad, bn.bias.grad])
    dist.all_reduce(grads)
    torch.save(
        {"out": y, "x_grad": xr.grad, "grads": grads, "state": bn.state_dict()}, out / f"bn_rank{rank}.pt"
    )


def _worker(rank: int, port: int, out: Path) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    from mr2.train import loop

    dist.init_process_group("gloo")
    try:
        _check_global_batch_norm(rank, out)
        final_metrics = loop.final_metrics
        current = {}

        def spy(s):  # the model each rank ends with and the epochs it selected
            metrics = final_metrics(s)
            state = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
            best = {rule: b["epoch"] for rule, b in s.best.items()}
            torch.save({"state": state, "best": best}, out / f"{current['name']}_rank{rank}_final.pt")
            return metrics

        loop.final_metrics = spy
        for name, (loss, extra) in RUNS.items():
            current["name"] = name
            cfg = _cfg(loss, **extra)
            if name == "mr2-resumed":
                assert train_run(cfg, out / name, progress=False, epoch_budget=1) is None
                metrics = train_run(cfg, out / name, progress=False, resume=True)
            else:
                metrics = train_run(cfg, out / name, progress=False)
            (out / f"{name}_rank{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    return out


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.set_num_threads(1)
    try:
        for loss in ("ce", "mr2"):
            train_run(_cfg(loss), out / loss, progress=False)
    finally:  # deterministic=True switched torch's global flag on: give the other tests theirs back
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    return out


def _state_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per tensor: max |a - b| / max |a| (integer tensors must match exactly: gap 0 or inf)."""
    assert a.keys() == b.keys()
    gaps = {}
    for name, ta in a.items():
        tb = b[name]
        if not ta.is_floating_point():
            gaps[name] = 0.0 if torch.equal(ta, tb) else float("inf")
            continue
        scale = float(ta.double().abs().max().clamp_min(1e-30))
        gaps[name] = float((ta.double() - tb.double()).abs().max()) / scale
    return gaps


def _assert_close_lists(a, b, rtol, what):
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    torch.testing.assert_close(tb, ta, rtol=rtol, atol=0.0, msg=lambda m: f"{what}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "mr2"])
def test_two_processes_train_like_one(two_ranks, one_rank, loss):
    one, two = one_rank / loss, two_ranks / loss
    # parameters and batch-norm buffers of the selected model
    gaps = _state_gap(torch.load(one / "model.pt"), torch.load(two / "model.pt"))
    assert max(gaps.values()) <= STATE_RTOL, sorted(gaps.items(), key=lambda kv: -kv[1])[:4]
    # the loss's buffers (MR²: the class statistics behind the margins)
    ck1 = torch.load(one / "checkpoint.pt", weights_only=False)
    ck2 = torch.load(two / "checkpoint.pt", weights_only=False)
    gaps = _state_gap(ck1["loss"], ck2["loss"])
    assert max(gaps.values(), default=0.0) <= STATE_RTOL, gaps
    if loss == "mr2":
        assert {"mean_norm_ema", "spread_ema", "observations"} <= set(gaps)
    # the log: same columns, same numbers (time aside)
    log1, log2 = pd.read_csv(one / "log.csv"), pd.read_csv(two / "log.csv")
    assert list(log1.columns) == list(log2.columns)
    cols = [c for c in log1.columns if c != "time_s"]
    _assert_close_lists(log1[cols].to_numpy(), log2[cols].to_numpy(), LOG_RTOL, "log.csv")
    # the metrics: counts exactly, statistics and margins to the tolerance
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    for key in (
        "accuracy",
        "per_class_accuracy",
        "confusion_matrix",
        "val_per_class_accuracy",
        "selected_epoch",
    ):
        assert m1[key] == m2[key], key
    for rule, sel in m1["selections"].items():
        assert sel["selected_epoch"] == m2["selections"][rule]["selected_epoch"], rule
        assert sel["per_class_accuracy"] == m2["selections"][rule]["per_class_accuracy"], rule
    for key in ("class_spread", "class_mean_norm2", "class_within_spread"):
        _assert_close_lists(m1[key], m2[key], LOG_RTOL, key)
    if loss == "mr2":
        _assert_close_lists(m1["margins"], m2["margins"], LOG_RTOL, "margins")
    record = json.loads((two / "config.json").read_text())
    assert record["environment"]["world_size"] == WORLD and record["config"]["sync_bn"] is True
    assert m2["device"] == f"cpu x {WORLD}"


@pytest.mark.slow
def test_without_sync_bn_two_processes_do_not_train_like_one(two_ranks, one_rank):
    """The control that shows the tolerance can fail: per-rank batch norm is another computation."""
    gaps = _state_gap(
        torch.load(one_rank / "ce" / "model.pt"), torch.load(two_ranks / "ce-no-sync-bn" / "model.pt")
    )
    assert max(gaps.values()) > 100 * STATE_RTOL
    record = json.loads((two_ranks / "ce-no-sync-bn" / "config.json").read_text())
    assert record["config"]["sync_bn"] is False


@pytest.mark.slow
def test_every_rank_ends_with_the_same_model_and_numbers(two_ranks):
    for name in RUNS:
        per_rank = [json.loads((two_ranks / f"{name}_rank{r}.json").read_text()) for r in range(WORLD)]
        assert all(m == per_rank[0] for m in per_rank), name
        # rank 0 wrote metrics.json (the only writer)
        assert json.loads((two_ranks / name / "metrics.json").read_text()) == per_rank[0], name
        finals = [torch.load(two_ranks / f"{name}_rank{r}_final.pt") for r in range(WORLD)]
        assert all(f["best"] == finals[0]["best"] for f in finals), name
        for f in finals[1:]:
            gaps = _state_gap(finals[0]["state"], f["state"])
            assert max(gaps.values()) == 0.0, (name, gaps)  # bit for bit, batch-norm buffers included


@pytest.mark.slow
def test_resume_under_ddp_gives_the_uninterrupted_numbers(two_ranks):
    whole, resumed = two_ranks / "mr2", two_ranks / "mr2-resumed"
    m1 = json.loads((whole / "metrics.json").read_text())
    m2 = json.loads((resumed / "metrics.json").read_text())
    m1.pop("train_time_s"), m2.pop("train_time_s")
    assert m1 == m2
    log1, log2 = pd.read_csv(whole / "log.csv"), pd.read_csv(resumed / "log.csv")
    pd.testing.assert_frame_equal(log1.drop(columns="time_s"), log2.drop(columns="time_s"))
    gaps = _state_gap(torch.load(whole / "model.pt"), torch.load(resumed / "model.pt"))
    assert max(gaps.values()) == 0.0


@pytest.mark.slow
def test_global_batch_norm_equals_one_process_on_the_concatenated_batch(two_ranks):
    gen = torch.Generator().manual_seed(0)  # the batch _check_global_batch_norm split over the ranks
    x = 2.0 + 3.0 * torch.randn(8, 4, 3, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(8, 4, 3, 3, generator=gen, dtype=torch.float64)
    bn = torch.nn.BatchNorm2d(4).double()
    xr = x.clone().requires_grad_(True)
    (bn(xr) * w).sum().backward()
    y = bn(x.clone()).detach()
    ranks = [torch.load(two_ranks / f"bn_rank{r}.pt") for r in range(WORLD)]
    close = {"rtol": 0.0, "atol": BN_ATOL}
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), y, **close)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), xr.grad, **close)
    for r in ranks:
        torch.testing.assert_close(r["grads"], torch.cat([bn.weight.grad, bn.bias.grad]), **close)
        for name, value in bn.state_dict().items():
            torch.testing.assert_close(r["state"][name], value, **close)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every process it started, as a scheduler's preemption would (nothing when
    torchrun has ended: its workers ended before it, and its pid may be reused)."""
    if proc.poll() is not None:
        return
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc")
def test_torchrun_killed_after_a_checkpoint_resumes_to_the_same_numbers(two_ranks, tmp_path):
    """A real SIGKILL of torchrun and both ranks once epoch 1 is checkpointed; ``--resume`` then ends
    with the numbers of the uninterrupted two-process run, and prints one summary."""
    sets = [f"{k}={v}" for k, v in EQUIVALENCE.items() if k not in ("epochs", "device")]

    def launch():
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "mr2", "train", "--preset",
            "digits-smoke", "--loss", "mr2", "--seeds", "0", "--out", str(tmp_path), "--epochs",
            str(EQUIVALENCE["epochs"]), "--device", "cpu", "--no-progress", "--threads", "1", "--resume",
            *[a for s in sets for a in ("--set", s)],
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        env["OMP_NUM_THREADS"] = "1"
        return subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    run = tmp_path / "digits-smoke" / "mr2" / "seed0"
    proc = launch()
    deadline = time.monotonic() + 240
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    _kill_tree(proc)
    _, err = proc.communicate(timeout=60)
    assert (run / "checkpoint.pt").exists(), err[-3000:]
    assert not (run / "metrics.json").exists(), "the run ended before the kill: nothing was resumed"
    assert torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] < EQUIVALENCE["epochs"]

    proc = launch()
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        _kill_tree(proc)  # nothing is left behind if it hangs
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    assert out.count("runs in") == 1 and out.count("loss       seed status") == 1, out  # one summary
    resumed = json.loads((run / "metrics.json").read_text())
    whole = json.loads((two_ranks / "mr2" / "metrics.json").read_text())
    for m in (resumed, whole):
        m.pop("train_time_s")
    assert resumed == whole
    gaps = _state_gap(torch.load(two_ranks / "mr2" / "model.pt"), torch.load(run / "model.pt"))
    assert max(gaps.values()) == 0.0


# ------------------------------------------------------------------- in one process: the pieces
def test_shards_cover_the_split_once():
    for n in (0, 1, 5, 386, 387):
        for world in (1, 2, 3, 8):
            parts = [shard(n, Dist(r, world, r)) for r in range(world)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n)), (n, world)
            sizes = [len(range(n)[p]) for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_feature_sums_of_parts_give_the_statistics_of_the_whole():
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(101, 6, generator=gen) * 3 + 1
    y = torch.arange(101) % 4
    whole = class_feature_stats(h, y, 4)
    summed = sum(class_feature_sums(h[p], y[p], 4) for p in (slice(0, 40), slice(40, 41), slice(41, 101)))
    for key, value in feature_stats_from_sums(summed).items():
        torch.testing.assert_close(torch.from_numpy(value), torch.from_numpy(whole[key]), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="every one of the 5 classes"):
        feature_stats_from_sums(class_feature_sums(h, y, 5))


def test_sync_bn_resolves_on_for_small_per_rank_batches_with_batch_norm():
    model = build_model("small-cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8)
    assert resolve_sync_bn(None, model, 2, 32) is True
    assert resolve_sync_bn(None, model, 2, 64) is False  # large per-rank batches: off
    assert resolve_sync_bn(None, model, 1, 32) is False  # one process: nothing to synchronise
    assert resolve_sync_bn(False, model, 2, 32) is False and resolve_sync_bn(True, model, 1, 128) is True
    frozen = build_model("small-cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8,
                         freeze_backbone=True)  # fmt: skip
    assert resolve_sync_bn(None, frozen, 2, 32) is False  # its batch norm uses running statistics
    converted = convert_sync_batchnorm(model, torch.device("cpu"))
    kinds = [type(m) for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert kinds and all(k is GlobalBatchNorm for k in kinds)
    # without a process group it is batch norm: the same outputs, the same state_dict keys
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = build_model("small-cnn", num_classes=10, in_channels=1, image_size=8, width=4, hidden=8)
    plain.load_state_dict(converted.state_dict())
    torch.testing.assert_close(converted(x)[0], plain(x)[0], rtol=0, atol=0)


def test_sync_bn_config_field_is_checked():
    from mr2.train import apply_overrides

    auto = get_preset("digits-smoke").config
    assert auto.sync_bn is None and apply_overrides(auto, {"sync_bn": "true"}).sync_bn is True
    cfg = _cfg("ce")
    assert apply_overrides(cfg, {"sync_bn": "false"}).sync_bn is False
    assert apply_overrides(cfg, {"sync_bn": "none"}).sync_bn is None
    with pytest.raises(ValueError, match="sync_bn"):
        apply_overrides(cfg, {"sync_bn": "3"})
