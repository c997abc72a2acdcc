"""Two CPU processes on gloo: the all-reduced statistics equal one process on the concatenated batch,
for every statistic MR² can take its margins from, with classes present on one rank only and unequal
per-rank batches; and the representation term over the gathered batch (``sync_rep``) has the value and
the gradient of one process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mr2.losses import CDBLoss, MR2Loss
from mr2.losses.margin_statistics import STATISTICS

WORLD = 2
N_STEPS = 3
ATOL = 1e-12  # float64; only the summation order differs between the two set-ups
RTOL_F32 = 1e-5  # float32 buffers of features ~1e8 (L5 statistics ~1e17): summation order differs
BIG = 1e8  # p = 5 rescales above 2^19: every rank must choose the same power of two (all-reduce max)


def _global_batches(seed: int, K: int, d: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(N_STEPS):
        B = 10 + 4 * step  # even, so each rank gets half
        y = torch.randint(K, (B,), generator=gen)
        y[: B // 2] = torch.where(y[: B // 2] == 0, 1, y[: B // 2])  # class 0 only on rank 1
        out.append(
            (
                torch.randn(B, K, generator=gen, dtype=torch.float64),
                3 * torch.randn(B, d, generator=gen, dtype=torch.float64) + 1,
                y,
            )
        )
    return out


def _uneven_batches(seed: int, K: int, d: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """Global batches split unevenly (the 4th item: rank 0's share): class 0 only on rank 1, class K-1
    only on rank 0, class 2 absent from the first step."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for step in range(N_STEPS):
        B, first = 12 + 2 * step, 7 + step  # rank 0 gets `first` samples, rank 1 the rest
        y = torch.randint(1, K - 1, (B,), generator=gen)
        y[0], y[first] = K - 1, 0
        if step == 0:
            y = torch.where(y == 2, 3, y)
        out.append(
            (
                torch.randn(B, K, generator=gen, dtype=torch.float64),
                2 * torch.randn(B, d, generator=gen, dtype=torch.float64) + 0.5,
                y,
                first,
            )
        )
    return out


def _variants(K: int) -> dict[str, MR2Loss]:
    return {s: MR2Loss(K, ema_decay=0.7, statistic=s, lambda_rep=0.0).double() for s in STATISTICS}


def _rep_losses(K: int) -> dict[str, MR2Loss]:
    return {
        "gathered": MR2Loss(K, ema_decay=0.7, lambda_rep=0.5).double(),
        "per_rank": MR2Loss(K, ema_decay=0.7, lambda_rep=0.5, sync_rep=False).double(),
    }


def _worker(rank: int, init_file: str, result_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        K, d = 5, 4
        variants, reps, rep_out = _variants(K), _rep_losses(K), {}
        for step, (logits, h, y, first) in enumerate(_uneven_batches(1, K, d)):
            sl = slice(0, first) if rank == 0 else slice(first, len(y))
            for loss in variants.values():
                loss(logits[sl], h[sl], y[sl])
            for name, loss in reps.items():
                feats = h[sl].clone().requires_grad_(True)
                loss(logits[sl], feats, y[sl]).backward()
                rep_out[f"{name}{step}"] = (loss.last["rep"], feats.grad)
        torch.save(
            {
                "variants": {s: (v.state_dict(), v.margins()) for s, v in variants.items()},
                "rep": rep_out,
            },
            os.path.join(result_dir, f"uneven{rank}.pt"),
        )
        K, d = 5, 4
        loss = MR2Loss(K, norm_p=5.0, ema_decay=0.7).double()
        centred = MR2Loss(K, norm_p=2.0, ema_decay=0.7, statistic="centred").double()
        big = MR2Loss(K, norm_p=5.0, ema_decay=0.7)  # float32 buffers, features rescaled
        # the fixed-shape route (a GPU's): dense all-reduce, and the scale agreed on the device
        dense = MR2Loss(K, norm_p=5.0, ema_decay=0.7, layout="dense").double()
        dense_big = MR2Loss(K, norm_p=5.0, ema_decay=0.7, layout="dense", check_every=2)
        cdb = CDBLoss(K, tau=1.0)
        for step, (logits, h, y) in enumerate(_global_batches(0, K, d)):
            half = len(y) // 2
            sl = slice(rank * half, (rank + 1) * half)
            loss(logits[sl], h[sl], y[sl])
            dense(logits[sl], h[sl], y[sl])
            centred(logits[sl], h[sl], y[sl])
            # only one rank holds the large features at step 1: the scale must still agree
            h_big = h[sl] * (BIG if (step == 1 and rank == 1) or step == 2 else 1.0)
            big(logits[sl].float(), h_big.float(), y[sl])
            dense_big(logits[sl].float(), h_big.float(), y[sl])
            cdb(logits[sl].float(), None, y[sl])
        cdb.on_epoch_start(1)
        torch.save(
            {
                "mr2": loss.state_dict(),
                "margins": loss.margins(),
                "centred": centred.state_dict(),
                "big": big.state_dict(),
                "dense": dense.state_dict(),
                "dense_big": dense_big.state_dict(),
                "cdb": cdb.state_dict(),
            },
            os.path.join(result_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return out


def test_two_process_gloo_statistics_equal_single_process(ranks):
    tmp_path = ranks
    K, d = 5, 4
    single = MR2Loss(K, norm_p=5.0, ema_decay=0.7).double()
    centred = MR2Loss(K, norm_p=2.0, ema_decay=0.7, statistic="centred").double()
    big = MR2Loss(K, norm_p=5.0, ema_decay=0.7)
    cdb = CDBLoss(K, tau=1.0)
    for step, (logits, h, y) in enumerate(_global_batches(0, K, d)):
        single(logits, h, y)
        centred(logits, h, y)
        h_big = h.clone()
        if step == 1:
            h_big[len(y) // 2 :] *= BIG
        elif step == 2:
            h_big *= BIG
        big(logits.float(), h_big.float(), y)
        cdb(logits.float(), None, y)
    cdb.on_epoch_start(1)
    assert centred.class_mean_ema.shape == (K, d)
    assert float(big.spread_ema.max()) > 1e15  # the rescaled path was taken
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for r, res in enumerate(results):
        for name, value in single.state_dict().items():
            torch.testing.assert_close(res["mr2"][name], value, rtol=0, atol=ATOL, msg=f"rank {r}: {name}")
        torch.testing.assert_close(res["margins"], single.margins(), rtol=0, atol=ATOL)
        for name, value in centred.state_dict().items():
            torch.testing.assert_close(
                res["centred"][name], value, rtol=0, atol=ATOL, msg=f"rank {r}: {name}"
            )
        for name, value in single.state_dict().items():
            torch.testing.assert_close(
                res["dense"][name], value, rtol=0, atol=ATOL, msg=f"rank {r}: dense {name}"
            )
        for name, value in big.state_dict().items():
            rtol = 0 if name == "observations" else RTOL_F32
            for key in ("big", "dense_big"):
                torch.testing.assert_close(
                    res[key][name], value, rtol=rtol, atol=0, msg=f"rank {r}: {key} {name}"
                )
        torch.testing.assert_close(res["cdb"]["class_weights"], cdb.class_weights, rtol=0, atol=1e-6)
        torch.testing.assert_close(res["cdb"]["class_accuracy"], cdb.class_accuracy, rtol=0, atol=1e-6)
    # and the set-up is not trivial: one rank alone would see different statistics
    alone = MR2Loss(K, norm_p=5.0, ema_decay=0.7).double()
    for logits, h, y in _global_batches(0, K, d):
        alone(logits[: len(y) // 2], h[: len(y) // 2], y[: len(y) // 2])
    assert not torch.allclose(alone.spread_ema, single.spread_ema)


def test_every_statistic_equals_single_process_with_one_rank_classes_and_uneven_batches(ranks):
    """Classes seen by one rank only, uneven per-rank batches, every statistic (the class-mean EMA of
    "centred" and "separation" included): the EMAs and margins of the concatenated batch."""
    K, d = 5, 4
    single = _variants(K)
    for logits, h, y, _ in _uneven_batches(1, K, d):
        for loss in single.values():
            loss(logits, h, y)
    assert single["centred"].class_mean_ema.shape == (K, d)
    for r in range(WORLD):
        res = torch.load(ranks / f"uneven{r}.pt")["variants"]
        for stat, loss in single.items():
            state, margins = res[stat]
            assert set(state) == set(loss.state_dict()), stat
            for name, value in loss.state_dict().items():
                torch.testing.assert_close(
                    state[name], value, rtol=0, atol=ATOL, msg=f"rank {r}: {stat} {name}"
                )
            torch.testing.assert_close(margins, loss.margins(), rtol=0, atol=ATOL, msg=f"rank {r}: {stat}")
    # not trivial: rank 0 alone never sees class 0, so its statistics would differ
    alone = _variants(K)["separation"]
    for logits, h, y, first in _uneven_batches(1, K, d):
        alone(logits[:first], h[:first], y[:first])
    assert int(alone.observations[0]) == 0 and int(single["separation"].observations[0]) > 0


def test_gathered_representation_term_has_the_single_process_value_and_gradient(ranks):
    """With ``sync_rep`` every rank computes the term of the concatenated batch, and its gradient on a
    rank's features is WORLD times the single-process one (each rank's loss holds the whole term), so
    DDP's average over the ranks gives the single-process step. Without it, the pairs split across
    ranks are missing."""
    K, d = 5, 4
    single = _rep_losses(K)["gathered"]
    results = [torch.load(ranks / f"uneven{r}.pt")["rep"] for r in range(WORLD)]
    differs = False
    for step, (logits, h, y, first) in enumerate(_uneven_batches(1, K, d)):
        feats = h.clone().requires_grad_(True)
        single(logits, feats, y).backward()
        rows = [slice(0, first), slice(first, len(y))]
        for r, res in enumerate(results):
            rep, grad = res[f"gathered{step}"]
            torch.testing.assert_close(
                rep, single.last["rep"], rtol=0, atol=ATOL, msg=f"rank {r} step {step}"
            )
            torch.testing.assert_close(
                grad / WORLD, feats.grad[rows[r]], rtol=0, atol=ATOL, msg=f"rank {r} step {step}"
            )
            local_rep, _ = res[f"per_rank{step}"]
            differs |= not torch.allclose(local_rep, single.last["rep"])
    assert differs
