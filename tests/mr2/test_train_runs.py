"""mr2.train on scikit-learn digits: run files, resume equality, NaN stop, bad input, studies, CLI."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from mr2 import train as mtrain
from mr2.train import TrainingDiverged, apply_overrides, get_preset, run_study, train_run
from mr2_cli.cli import main as cli_main
from mr2_core.contracts import METRICS_KEYS

CONTRACT_KEYS = set(METRICS_KEYS)
MIN_DIGITS_ACCURACY = 0.80  # a tiny CNN on 8x8 digits after a few epochs; chance is 0.10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(loss="ce", seed=0, **overrides):
    base = {"epochs": 2, "max_train_samples": 400, "eval_batch_size": 512}
    return get_preset("digits-smoke").config_for(loss, seed, **{**base, **overrides})


def test_train_run_writes_the_contract_files(tmp_path):
    metrics = train_run(_cfg(epochs=3, max_train_samples=800), tmp_path / "run", progress=False)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "log.csv", "checkpoint.pt", "metrics.json"} <= files
    assert CONTRACT_KEYS <= set(metrics)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    assert metrics["accuracy"] >= MIN_DIGITS_ACCURACY
    k = len(metrics["class_names"])
    assert len(metrics["per_class_accuracy"]) == k == len(metrics["class_spread"]) == 10
    assert min(metrics["per_class_accuracy"]) == metrics["worst_class_accuracy"]
    assert metrics["per_class_accuracy"][metrics["worst_class"]] == metrics["worst_class_accuracy"]
    # a_k = ||mu_k||^2 + s_k^2
    for a, m, s in zip(
        metrics["class_spread"], metrics["class_mean_norm2"], metrics["class_within_spread"], strict=True
    ):
        assert a == pytest.approx(m + s, rel=1e-9)
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert log["epoch"].tolist() == [1, 2, 3] and log["val_accuracy"].between(0, 1).all()
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["loss"] == "ce" and "git_commit" in record["code_version"]
    # the selected epoch is the best validation epoch
    assert metrics["selected_epoch"] == int(log["epoch"][log["val_accuracy"].idxmax()])


@pytest.mark.parametrize("loss", ["mr2", "cdb"])
def test_train_resume_gives_the_same_numbers(tmp_path, loss):
    cfg = _cfg(loss, seed=3, epochs=3, crop_padding=1, hflip=True)
    full = train_run(cfg, tmp_path / "full", progress=False)
    assert train_run(cfg, tmp_path / "cut", progress=False, epoch_budget=1) is None  # "killed" after epoch 1
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train_run(cfg, tmp_path / "cut", progress=False, resume=True)
    for key in ("accuracy", "per_class_accuracy", "class_spread", "selected_epoch", "confusion_matrix"):
        assert resumed[key] == full[key], key
    a = pd.read_csv(tmp_path / "full" / "log.csv").drop(columns="time_s")
    b = pd.read_csv(tmp_path / "cut" / "log.csv").drop(columns="time_s")
    pd.testing.assert_frame_equal(a, b)


def test_train_seeds_differ(tmp_path):
    a = train_run(_cfg(seed=0), tmp_path / "a", progress=False)
    b = train_run(_cfg(seed=1), tmp_path / "b", progress=False)
    assert a["class_spread"] != b["class_spread"]


def test_train_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_make_loss = __import__("mr2.losses", fromlist=["make_loss"]).make_loss

    class NaNFromEpoch2(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.epoch, self.last = inner, 0, {}

        def on_epoch_start(self, epoch):
            self.epoch = epoch

        def forward(self, logits, feats, y):
            loss = self.inner(logits, feats, y)
            return loss * float("nan") if self.epoch >= 1 else loss

    monkeypatch.setattr("mr2.losses.make_loss", lambda *a, **k: NaNFromEpoch2(real_make_loss(*a, **k)))
    run = tmp_path / "run"
    with pytest.raises(
        TrainingDiverged, match=r"(loss became nan|output NaN).* in epoch 2.*checkpoint \(after epoch 1\)"
    ):
        train_run(_cfg(epochs=3, log_every=2), run, progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and all(
        torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point()
    )
    assert not (run / "metrics.json").exists()


def test_train_resume_dir_from_another_config_is_refused(tmp_path):
    train_run(_cfg(epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"another config \(lr: 0.05 -> 0.2"):
        train_run(_cfg(epochs=1, lr=0.2), tmp_path / "run", progress=False, resume=True)
    # a finished run with the same config is read back, not retrained
    again = train_run(_cfg(epochs=1, device="cpu"), tmp_path / "run", progress=False)
    assert again == json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_train_unfinished_run_needs_resume(tmp_path):
    train_run(_cfg(epochs=2), tmp_path / "run", progress=False, epoch_budget=1)
    with pytest.raises(ValueError, match="unfinished run.*--resume"):
        train_run(_cfg(epochs=2), tmp_path / "run", progress=False)


def test_train_bad_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="preset='fmnist': expected one of.*fmnist-verify"):
        get_preset("fmnist")
    with pytest.raises(ValueError, match="dataset='mnist': expected one of.*fashion-mnist"):
        train_run(_cfg(dataset="mnist"), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="loss='hinge': expected one of.*mr2-logit"):
        train_run(dataclasses.replace(_cfg(), loss="hinge"), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="override='lrate'"):
        apply_overrides(_cfg(), {"lrate": "0.1"})


def test_train_overrides_are_typed():
    cfg = apply_overrides(
        _cfg("mr2"), {"lr": "0.1", "hflip": "true", "max_train_samples": "none", "loss.lambda_rep": "0.3"}
    )
    assert cfg.lr == 0.1 and cfg.hflip is True and cfg.max_train_samples is None
    assert cfg.loss_options == {"lambda_rep": 0.3}


def test_train_study_skips_finished_runs_and_cli(tmp_path, capsys):
    kwargs = {
        "runs": tmp_path,
        "losses": ["ce", "mr2-logit"],
        "seeds": [0],
        "overrides": {"epochs": 1, "max_train_samples": 300},
    }
    first = run_study("digits-smoke", progress=False, **kwargs)
    assert [r["status"] for r in first] == ["done", "done"]
    second = run_study("digits-smoke", progress=False, **kwargs)
    assert [r["status"] for r in second] == ["skipped", "skipped"]
    assert [r["accuracy"] for r in second] == [r["accuracy"] for r in first]
    assert (tmp_path / "digits-smoke" / "mr2-logit" / "seed0" / "metrics.json").exists()
    argv = ["train", "--preset", "digits-smoke", "--loss", "ce", "--seeds", "0", "--out", str(tmp_path),
            "--epochs", "1", "--set", "max_train_samples=300", "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert cli_main(["train", "--preset", "nope"]) == 2
    assert "preset='nope': expected one of" in capsys.readouterr().err


def test_train_gpu_preset_smoke_on_cpu(tmp_path):
    """fmnist-gpu's model and options (ResNet-18, warm-up, AMP/channels-last requested) on tiny data."""
    cfg = get_preset("fmnist-gpu").config_for(
        "mr2", 0, dataset="digits", epochs=1, max_train_samples=64, batch_size=32, device="cpu"
    )
    assert cfg.model == "resnet18" and cfg.amp and cfg.channels_last
    metrics = train_run(cfg, tmp_path / "gpu", progress=False)
    assert metrics["device"] == "cpu" and len(metrics["class_spread"]) == 10
    for name in mtrain.PRESETS:  # every preset is a valid config for every one of its losses
        p = get_preset(name)
        for loss in p.losses:
            mtrain.validate_config(p.config_for(loss, p.seeds[0]))


def _frozen(**overrides):
    return _cfg("mr2", seed=2, **{"epochs": 3, "freeze_backbone": True, **overrides})


def test_frozen_backbone_feature_cache_trains_the_same_head(tmp_path):
    cached = train_run(_frozen(), tmp_path / "cached", progress=False)
    plain = train_run(_frozen(), tmp_path / "plain", progress=False, feature_cache=False)
    assert cached["feature_cache"] is True and plain["feature_cache"] is False
    a = pd.read_csv(tmp_path / "cached" / "log.csv")
    b = pd.read_csv(tmp_path / "plain" / "log.csv")
    # the backbone runs once on eval-sized batches instead of every step on training batches: the same
    # features up to float rounding, so the same training curve up to rounding
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=1e-4)
    n_val = cached["n_val"]
    assert (a["val_accuracy"] - b["val_accuracy"]).abs().max() <= 1.0 / n_val + 1e-12
    assert cached["accuracy"] == pytest.approx(plain["accuracy"], abs=2.0 / cached["n_test"])
    assert cached["class_spread"] == pytest.approx(plain["class_spread"], rel=1e-4)


def test_frozen_backbone_feature_cache_resumes_to_the_same_numbers(tmp_path):
    full = train_run(_frozen(), tmp_path / "full", progress=False)
    assert train_run(_frozen(), tmp_path / "cut", progress=False, epoch_budget=1) is None
    resumed = train_run(_frozen(), tmp_path / "cut", progress=False, resume=True)
    for key in ("accuracy", "per_class_accuracy", "class_spread", "selected_epoch", "feature_cache"):
        assert resumed[key] == full[key], key


def test_feature_cache_only_where_features_are_fixed(tmp_path):
    augmented = train_run(_frozen(hflip=True, epochs=1), tmp_path / "aug", progress=False)
    assert augmented["feature_cache"] is False  # augmentation changes the features every epoch
    trained = train_run(_cfg(epochs=1), tmp_path / "full-net", progress=False)
    assert trained["feature_cache"] is False  # the backbone trains
    with pytest.raises(ValueError, match="feature_cache=True needs freeze_backbone=True"):
        train_run(_cfg(epochs=1), tmp_path / "refused", progress=False, feature_cache=True)


def test_a_moved_runs_folder_resumes_runs_that_start_from_a_checkpoint_inside_it(tmp_path):
    """A runs folder unpacked elsewhere (the shipped runs archive): the probes' init_checkpoint named
    the old folder, and a finished or unfinished run must still be recognised as the same config."""
    import shutil

    old, new = tmp_path / "old" / "runs", tmp_path / "new" / "runs"
    backbone = old / "pre" / "ce" / "seed0"
    train_run(_cfg(epochs=1, save_model=True), backbone, progress=False)

    def probe(runs, seed=0):
        ckpt = runs / "pre" / "ce" / f"seed{seed}" / "model.pt"
        return _cfg(epochs=2, freeze_backbone=True, init_checkpoint=str(ckpt))

    done = train_run(probe(old), old / "probe" / "ce" / "seed0", progress=False)
    assert train_run(probe(old), old / "probe" / "ce" / "seed1", progress=False, epoch_budget=1) is None
    shutil.copytree(old, new)
    shutil.rmtree(tmp_path / "old")

    again = train_run(probe(new), new / "probe" / "ce" / "seed0", progress=False)
    assert again == done  # read back, not retrained
    resumed = train_run(probe(new), new / "probe" / "ce" / "seed1", progress=False, resume=True)
    assert resumed["accuracy"] == done["accuracy"]  # same config, same seed: the same run
    # another file of the moved folder is another config
    shutil.copytree(new / "pre" / "ce" / "seed0", new / "pre" / "ce" / "seed1")
    with pytest.raises(ValueError, match=r"another config \(init_checkpoint"):
        train_run(probe(new, seed=1), new / "probe" / "ce" / "seed0", progress=False)
