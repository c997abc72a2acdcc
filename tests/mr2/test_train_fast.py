"""The training loop's device-side pipeline (mr2.train.fast): the same numbers as the per-step pipeline
it replaced, no per-step host synchronisation in the GPU configuration (counted on a CPU; checked with
CUDA's sync debug mode where a GPU exists), and the ``compile`` option."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mr2 import data as mdata
from mr2.host_syncs import count_host_syncs
from mr2.losses import make_loss
from mr2.losses.margin_statistics import STATISTICS
from mr2.train import fast, get_preset, loop, session, train_run
from mr2.train.config import RESUME_FREE_FIELDS, TrainConfig
from mr2.train.evaluation import prepare_batch
from mr2.train.rundir import RunPaths
from mr2.train.runtime import epoch_generator
from mr2_core.contracts import LOSSES

# the syncs an epoch makes outside its steps: the normalisation constants (built from Python numbers)
# and the end of epoch's summed loss and correct count; and per log_every steps: the loop's NaN check
# and the loss's value check (check_every = log_every)
EPOCH_LEVEL_SYNCS = 3
SYNCS_PER_CHECK = 2
MIN_ACCURACY = 0.5  # digits after 3 short epochs with crop and flip; chance is 0.1


def _sync_bound(steps: int, log_every: int) -> int:
    return EPOCH_LEVEL_SYNCS + SYNCS_PER_CHECK * (math.ceil(steps / log_every) + 1)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(loss="mr2", **overrides):
    base = {"epochs": 3, "max_train_samples": 800, "eval_batch_size": 512, "crop_padding": 1, "hflip": True,
            "log_every": 3}  # fmt: skip
    return get_preset("digits-smoke").config_for(loss, 0, **{**base, **overrides})


def _reference_augment(x, *, crop_padding, hflip, generator):
    """The per-step augmentation as the loop drew and applied it before the epoch plans: offsets drawn
    (B, 1) on the host, a crop by four broadcast index tensors, then a flip through ``torch.where``."""
    b, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator)
        rows = (dy + torch.arange(h))[:, None, :, None]
        cols = (dx + torch.arange(w))[:, None, None, :]
        bidx, cidx = torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x


class PerStepFeed:
    """The pipeline before ``fast.EpochFeed``: host index batches, augmentation drawn step by step,
    normalisation from the dataset's tuples."""

    def __init__(self, s, epoch):
        cfg = s.cfg
        self.s = s
        self.batches = mdata.batch_indices(
            len(s.x_train), s.per_rank_batch, generator=epoch_generator(cfg.seed, epoch, 0)
        )
        self.gen = epoch_generator(cfg.seed, epoch, 1)

    def images(self, step, idx):
        s, cfg = self.s, self.s.cfg
        x = s.x_train[idx]
        if cfg.crop_padding or cfg.hflip:
            x = _reference_augment(x, crop_padding=cfg.crop_padding, hflip=cfg.hflip, generator=self.gen)
        return prepare_batch(x, s.data, cfg, s.channels_last)


def _run(tmp_path, name, cfg):
    metrics = train_run(cfg, tmp_path / name, progress=False)
    log = pd.read_csv(tmp_path / name / "log.csv").drop(columns=["time_s"])
    drop = {"train_time_s", "code_version"}
    return {k: v for k, v in metrics.items() if k not in drop}, log


@pytest.mark.parametrize("loss", ["ce", "mr2"])
def test_device_pipeline_gives_the_numbers_of_the_per_step_pipeline(tmp_path, monkeypatch, loss):
    """On a CPU the epoch plans are bit for bit the per-step pipeline (same draws, same pixels)."""
    cfg = _cfg(loss)
    new, new_log = _run(tmp_path, "plan", cfg)
    monkeypatch.setattr(loop, "EpochFeed", PerStepFeed)
    old, old_log = _run(tmp_path, "per-step", cfg)
    assert new == old
    pd.testing.assert_frame_equal(new_log, old_log)
    assert new["accuracy"] > MIN_ACCURACY  # it trained: the comparison is not of two failures


def test_value_checks_every_log_every_change_no_number(tmp_path):
    cfg = _cfg("mr2", epochs=1)
    every, _ = _run(tmp_path, "every", cfg)
    sparse_cfg = dataclasses.replace(cfg, loss_options={"check_every": cfg.log_every})
    sparse, _ = _run(tmp_path, "sparse", sparse_cfg)
    assert every == sparse


@pytest.mark.parametrize("loss", ["ce", "mr2", "mr2-separation"])
def test_training_epoch_has_no_per_step_sync_in_the_gpu_configuration(tmp_path, loss):
    """The loss as the loop configures it on a GPU (fixed shapes, checks every log_every steps): a
    whole epoch makes only its epoch-level reads and one per log_every steps, not one per step."""
    options = {"loss.layout": "dense", "loss.check_every": 10} if loss != "ce" else {"loss.check_every": 10}
    if loss == "mr2-separation":
        loss, options = "mr2", {**options, "loss.statistic": "separation"}
    cfg = _cfg(loss, epochs=1, batch_size=16, log_every=10, **options)
    s = session.open_session(cfg, RunPaths(tmp_path), resume=False, feature_cache=False)
    steps = math.ceil(len(s.y_train) / cfg.batch_size)
    loop.train_epoch(s, 0, show=False)
    with count_host_syncs() as counter:
        loop.train_epoch(s, 1, show=False)
    bound = _sync_bound(steps, cfg.log_every)
    assert steps >= 3 * bound  # a per-step sync could not hide in the bound
    assert counter.total <= bound, dict(counter.ops)
    assert counter.ops["_local_scalar_dense"] >= steps // cfg.log_every  # the loop's own checks are seen


@pytest.mark.parametrize("statistic", STATISTICS)
def test_mr2_steady_state_has_no_sync_in_the_gpu_configuration(statistic):
    gen = torch.Generator().manual_seed(0)
    loss = make_loss("mr2", 10, statistic=statistic, layout="dense", check_every=50)
    for step in range(5):
        z = torch.randn(32, 10, generator=gen, requires_grad=True)
        h = torch.randn(32, 16, generator=gen).relu().requires_grad_()
        y = torch.randint(10, (32,), generator=gen)
        with count_host_syncs() as counter:
            loss(z, h, y).backward()
        expected = 1 if step == 0 else 0  # the first call checks its values (one read-back)
        assert counter.total == expected, (step, dict(counter.ops))
    # the compact layout (a CPU's at many classes) does synchronise: the counter sees it
    compact = make_loss("mr2", 10, layout="compact", check_every=50)
    compact(z, h, y)
    with count_host_syncs() as counter:
        compact(z, h, y)
    assert counter.ops["nonzero"] >= 1 and counter.ops["unique_consecutive"] == 1


def test_compile_option(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="^compile='yes'"):
        TrainConfig(compile="yes")
    assert "compile" in RESUME_FREE_FIELDS  # how the steps run, like the device
    calls = []

    def fake_compile(module):
        calls.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = _cfg("ce", epochs=1, compile=True)
    train_run(cfg, tmp_path / "run", progress=False)
    assert len(calls) == 1  # once per network, not once per epoch or step
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["compile"] is True


# ------------------------------------------------------------------------------------------ GPU
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", LOSSES)
def test_cuda_loss_steps_do_not_synchronise(name):
    statistics = STATISTICS if name == "mr2" else ("second_moment",)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for statistic in statistics:
        options = {"statistic": statistic} if name == "mr2" else {}
        loss = make_loss(name, 10, check_every=100, **options).cuda()
        data = [
            (
                torch.randn(64, 10, device="cuda", generator=gen),
                torch.randn(64, 32, device="cuda", generator=gen),
                torch.randint(10, (64,), device="cuda", generator=gen),
            )
            for _ in range(4)
        ]
        loss(*data[0])  # the first call checks its values
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for z, h, y in data[1:]:
                z, h = z.clone().requires_grad_(), h.clone().requires_grad_()
                loss(z, h, y).backward()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize()


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("loss", ["ce", "mr2"])
def test_cuda_training_epoch_synchronises_only_at_its_checks(tmp_path, loss):
    cfg = _cfg(loss, epochs=1, batch_size=16, log_every=10, device="cuda")
    s = session.open_session(cfg, RunPaths(tmp_path), resume=False, feature_cache=False)
    steps = math.ceil(len(s.y_train) / cfg.batch_size)
    loop.train_epoch(s, 0, show=False)
    assert s.loss_fn.check_every == cfg.log_every  # set by fast.configure_value_checks on a GPU
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loop.train_epoch(s, 1, show=False)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    bound = _sync_bound(steps, cfg.log_every)
    assert steps >= 3 * bound
    assert len(syncs) <= bound, [str(w.message) for w in syncs][:5]
    assert fast.training_net(s) is s.net  # compile is off by default


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("loss", ["ce", "mr2", "mr2-separation"])
def test_cuda_training_steps_do_not_synchronise(tmp_path, loss):
    """Steps as the loop takes them on a GPU (the epoch's feed, the loss checked every log_every
    calls), between two scheduled checks, under sync debug mode "error"."""
    options = {"loss.statistic": "separation"} if loss == "mr2-separation" else {}
    cfg = _cfg("mr2" if loss == "mr2-separation" else loss, epochs=1, batch_size=16, device="cuda", **options)
    s = session.open_session(cfg, RunPaths(tmp_path), resume=False, feature_cache=False)
    fast.configure_value_checks(s)
    feed = fast.EpochFeed(s, 0)
    s.model.train()

    def step(i):
        idx = feed.batches[i]
        with torch.autocast("cuda", dtype=s.amp_dtype, enabled=s.amp_dtype is not None):
            logits, feats = s.net(feed.images(i, idx))
        value = s.loss_fn(logits.float(), feats.float(), s.y_train.index_select(0, idx))
        s.optimizer.zero_grad(set_to_none=True)
        value.backward()
        s.optimizer.step()

    step(0)  # the loss's first call checks its values
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, min(6, cfg.log_every)):
            step(i)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


@pytest.mark.parametrize("every", [1, 3])
def test_skip_scheduled_check_makes_only_the_next_call_unchecked(every):
    loss = make_loss("ce", 3, check_every=every)
    bad_logits = torch.tensor([[float("nan"), 0.0, 0.0]])
    y = torch.tensor([0])
    loss.skip_scheduled_check()
    if every == 1:  # every call is checked: nothing to skip
        with pytest.raises(ValueError):
            loss(bad_logits, None, y)
        return
    loss(bad_logits, None, y)  # call 1 of 3: unchecked
    loss(bad_logits, None, y)  # call 2 of 3: unchecked
    with pytest.raises(ValueError):
        loss(bad_logits, None, y)  # call 3 = the next scheduled check
