"""Training options of the verification protocol, on scikit-learn digits (seconds each).

Selection rules, the WiSE-FT merge, methods with their own names, long-tailed and half training
splits, a backbone taken from another run, and bit-reproducible runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mr2.data import load_dataset
from mr2.data.splits import long_tail_counts, long_tail_subsample
from mr2.models import build_model
from mr2.train import get_preset, run_study, train_run
from mr2.train.evaluation import predict, split_metrics
from mr2.train.presets import Preset
from mr2_core.contracts import SELECTION_RULES
from mr2_core.seeding import seed_everything

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(loss="ce", seed=0, **overrides):
    base = {"epochs": 3, "max_train_samples": 500, "eval_batch_size": 512}
    return get_preset("digits-smoke").config_for(loss, seed, **{**base, **overrides})


def test_every_selection_rule_is_reported_and_follows_the_validation_log(tmp_path):
    metrics = train_run(_cfg(epochs=4), tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    sel = metrics["selections"]
    assert set(sel) == set(SELECTION_RULES)
    # each rule's epoch is the first epoch with the best value of its validation metric
    assert sel["accuracy"]["selected_epoch"] == int(log["epoch"][log["val_accuracy"].idxmax()])
    worst = log["val_worst_class_accuracy"]
    assert sel["worst_class_accuracy"]["selected_epoch"] == int(log["epoch"][worst.idxmax()])
    assert sel["last"]["selected_epoch"] == 4
    # the configured rule (accuracy) is the top level
    for key in ("accuracy", "worst_class_accuracy", "per_class_accuracy"):
        assert metrics[key] == sel["accuracy"][key]
    assert min(sel["last"]["per_class_accuracy"]) == sel["last"]["worst_class_accuracy"]


def test_merge_alpha_evaluates_the_interpolation_of_initial_and_trained_weights(tmp_path):
    """alpha = 0 evaluates the untrained model, alpha = 1 the trained one: both checked by hand."""
    cfg = _cfg(epochs=2, select_metric="last", save_model=True)
    plain = train_run(cfg, tmp_path / "plain", progress=False)
    one = train_run(cfg.__class__(**{**cfg.__dict__, "merge_alpha": 1.0}), tmp_path / "one", progress=False)
    assert one["accuracy"] == plain["accuracy"] and one["per_class_accuracy"] == plain["per_class_accuracy"]
    zero = train_run(cfg.__class__(**{**cfg.__dict__, "merge_alpha": 0.0}), tmp_path / "zero", progress=False)
    # the initial model, rebuilt by hand from the same seed
    data = load_dataset("digits", val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                        max_train_samples=cfg.max_train_samples)  # fmt: skip
    seed_everything(cfg.seed)
    init = build_model("small-cnn", num_classes=10, in_channels=1, image_size=8, width=cfg.width,
                       hidden=cfg.hidden).to(memory_format=torch.channels_last)  # fmt: skip
    preds, _ = predict(init, data.x_test, data, cfg, torch.device("cpu"), None, True)
    assert zero["accuracy"] == pytest.approx(split_metrics(preds, data.y_test, 10)["accuracy"], abs=1e-12)
    assert zero["accuracy"] < plain["accuracy"] - 0.3  # an untrained net is near chance
    # alpha = 0.5: the saved model is the midpoint of the initial and the trained weights
    half = train_run(cfg.__class__(**{**cfg.__dict__, "merge_alpha": 0.5}), tmp_path / "half", progress=False)
    assert half["merge_alpha"] == 0.5
    trained = torch.load(tmp_path / "plain" / "model.pt", weights_only=True)
    merged = torch.load(tmp_path / "half" / "model.pt", weights_only=True)
    w0 = init.state_dict()
    for name, w in trained.items():
        if w.is_floating_point():
            torch.testing.assert_close(merged[name], 0.5 * w0[name] + 0.5 * w, rtol=1e-6, atol=1e-6)


def test_methods_with_names_of_their_own_run_in_their_folders(tmp_path):
    base = get_preset("digits-smoke")
    preset = Preset(
        name="named", description="", config=base.config, losses=("ce", "ce-drw"), seeds=(0,),
        per_loss={"ce-drw": {"loss": "ce", "loss.drw_epoch": 1}}, seeds_for={"ce": (0, 1)},
    )  # fmt: skip
    records = run_study(preset, runs=tmp_path, overrides={"epochs": 2, "max_train_samples": 300},
                        progress=False)  # fmt: skip
    assert sorted((r["loss"], r["seed"]) for r in records) == [("ce", 0), ("ce", 1), ("ce-drw", 0)]
    drw = [r for r in records if r["loss"] == "ce-drw"][0]
    assert drw["loss_fn"] == "ce" and (tmp_path / "named" / "ce-drw" / "seed0" / "metrics.json").is_file()
    with pytest.raises(ValueError, match="method"):
        Preset(name="x", description="", config=base.config, losses=("nope",), seeds=(0,)).config_for(
            "nope", 0
        )


def test_long_tailed_counts_follow_the_exponential_profile():
    counts = long_tail_counts(5000, 10, 100.0)
    expected = np.floor(5000 * 100.0 ** (-np.arange(10) / 9) + 1e-9)
    np.testing.assert_array_equal(counts, expected)
    assert counts[0] == 5000 and counts[-1] == 50
    labels = np.repeat(np.arange(4), [30, 40, 50, 60])
    idx = long_tail_subsample(labels, 8.0, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(labels[idx]), long_tail_counts(30, 4, 8.0))
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tail_counts(10, 3, 0.5)


def test_long_tailed_training_split_keeps_validation_and_test_balanced():
    full = load_dataset("digits", split_seed=0)
    lt = load_dataset("digits", split_seed=0, imbalance_ratio=10.0)
    counts = lt.class_counts().numpy()
    np.testing.assert_array_equal(counts, long_tail_counts(int(full.class_counts().min()), 10, 10.0))
    assert torch.equal(lt.y_val, full.y_val) and torch.equal(lt.y_test, full.y_test)
    # the kept training images are a subset of the full training split
    full_set = {tuple(x.flatten().tolist()) for x in full.x_train[full.y_train == 9]}
    assert all(tuple(x.flatten().tolist()) in full_set for x in lt.x_train[lt.y_train == 9])


def test_a_run_trains_on_the_split_its_config_names(tmp_path):
    """imbalance_ratio and train_subset reach the data a run trains on (config.json records it)."""
    import json

    for name, options in {"lt": {"imbalance_ratio": 10.0}, "half": {"train_subset": "second-half"}}.items():
        cfg = _cfg(epochs=1, max_train_samples=None, **options)
        metrics = train_run(cfg, tmp_path / name, progress=False)
        want = load_dataset("digits", val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, **options)
        data = json.loads((tmp_path / name / "config.json").read_text())["data"]
        assert data["class_counts"] == want.class_counts().tolist(), name
        assert data["n_train"] == metrics["n_train"] == len(want.y_train), name
    full = load_dataset("digits", split_seed=0)
    assert data["n_train"] < len(full.y_train)


def test_training_halves_are_disjoint_and_cover_the_training_split():
    full = load_dataset("digits", split_seed=3)
    a = load_dataset("digits", split_seed=3, train_subset="first-half")
    b = load_dataset("digits", split_seed=3, train_subset="second-half")
    assert len(a.y_train) + len(b.y_train) == len(full.y_train)

    def rows(d):
        return {tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(d.x_train, d.y_train, strict=True)}

    assert not rows(a) & rows(b) and rows(a) | rows(b) == rows(full)
    assert abs(len(a.y_train) - len(b.y_train)) <= 10  # stratified halves


def test_a_backbone_from_another_run_starts_the_next_one(tmp_path):
    first = _cfg(epochs=2, train_subset="first-half", save_model=True)
    train_run(first, tmp_path / "pre", progress=False)
    probe = _cfg(
        "mr2", epochs=2, train_subset="second-half", freeze_backbone=True, save_model=True,
        init_checkpoint=str(tmp_path / "pre" / "model.pt"),
    )  # fmt: skip
    metrics = train_run(probe, tmp_path / "probe", progress=False)
    assert metrics["feature_cache"] is True
    pre = torch.load(tmp_path / "pre" / "model.pt", weights_only=True)
    after = torch.load(tmp_path / "probe" / "model.pt", weights_only=True)
    for name, w in pre.items():
        if name.startswith("backbone."):  # frozen: still the pretrained weights
            torch.testing.assert_close(after[name], w, rtol=0, atol=0)
    assert not torch.equal(after["head.weight"], pre["head.weight"])  # the head trained afresh
    with pytest.raises(ValueError, match="init_checkpoint"):
        train_run(_cfg(init_checkpoint=str(tmp_path / "missing.pt")), tmp_path / "bad", progress=False)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch file"):
        train_run(_cfg(init_checkpoint=str(tmp_path / "text.pt")), tmp_path / "bad2", progress=False)


def test_deterministic_runs_are_bit_reproducible(tmp_path):
    """Same seed, same thread count, deterministic=true: identical logs, metrics and weights."""
    cfg = _cfg("mr2", epochs=2, deterministic=True, save_model=True, crop_padding=1)
    a = train_run(cfg, tmp_path / "a", progress=False)
    b = train_run(cfg, tmp_path / "b", progress=False)
    drop = ("train_time_s", "code_version")
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    log_a = pd.read_csv(tmp_path / "a" / "log.csv").drop(columns="time_s")
    log_b = pd.read_csv(tmp_path / "b" / "log.csv").drop(columns="time_s")
    pd.testing.assert_frame_equal(log_a, log_b, check_exact=True)
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_study_makes_the_backbone_it_starts_from(tmp_path, monkeypatch):
    """init_checkpoint="@<preset>/<method>/seed<k>": run_study trains that run first, then reuses it."""
    from mr2.train import presets

    base = get_preset("digits-smoke")
    small = {"epochs": 1, "max_train_samples": 300}
    pre = Preset(name="pre", description="", config=base.config, losses=("ce",), seeds=(0,),
                 per_loss={"ce": {**small, "train_subset": "first-half"}})  # fmt: skip
    monkeypatch.setitem(presets.PRESETS, "pre", pre)
    probe = Preset(name="probe", description="", config=base.config, losses=("ce",), seeds=(0, 1),
                   per_loss={"ce": {**small, "freeze_backbone": True, "train_subset": "second-half",
                                    "init_checkpoint": "@pre/ce/seed0"}})  # fmt: skip
    records = run_study(probe, runs=tmp_path, progress=False)
    model = tmp_path / "pre" / "ce" / "seed0" / "model.pt"
    assert model.is_file() and [r["status"] for r in records] == ["done", "done"]
    assert all(r["feature_cache"] for r in records)
    stamp = model.stat().st_mtime_ns
    run_study(probe, runs=tmp_path, seeds=[2], progress=False)
    assert model.stat().st_mtime_ns == stamp  # made once, then reused
    with pytest.raises(ValueError, match="init_checkpoint"):
        train_run(_cfg(init_checkpoint="@pre/ce/seed0"), tmp_path / "direct", progress=False)
