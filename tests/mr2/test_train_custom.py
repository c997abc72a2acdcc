"""``train_model`` (your own Dataset and nn.Module) and ``write_run_metrics`` (your own loop): the run
folders they write hold the contract's files and keys, ``mr2 report``'s reader takes them, the same
seed gives the same numbers, and the per-class numbers equal a naive count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from mr2.models import Classifier
from mr2.study import load_study
from mr2.train import train_model, write_run_metrics
from mr2.train.custom import dataset_labels
from mr2_core.contracts import METRICS_KEYS, SELECTION_KEYS, SELECTION_RULES

K, D, HIDDEN = 3, 6, 8  # classes, input dimensions, feature size
EPOCHS = 2


def _blobs(n: int, seed: int) -> TensorDataset:
    """n points in D dims, K Gaussian classes 3 units apart (linearly separable, almost)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    centres = 3.0 * torch.eye(K, D)
    return TensorDataset(centres[y] + torch.randn(n, D, generator=gen), y)


class _NoTargets(Dataset):
    """A dataset without a ``targets`` attribute: its labels are read item by item."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, int(y)


def _model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(torch.nn.Sequential(torch.nn.Linear(D, HIDDEN), torch.nn.ReLU()), HIDDEN, K)


@pytest.fixture(scope="module")
def splits():
    return _blobs(240, 1), _blobs(60, 2), _blobs(60, 3)


def _train(splits, tmp_path, loss="ce", model=None, **kw):
    train, val, test = splits
    options = {"runs": tmp_path, "study": "toy", "epochs": EPOCHS, "batch_size": 32, "progress": False, **kw}
    return train_model(model or _model(), train, val, test, loss=loss, **options)


def test_train_model_writes_a_run_the_report_reads(splits, tmp_path, one_torch_thread):
    ce = _train(splits, tmp_path, "ce", class_names=["a", "b", "c"])  # one study: the same data record
    mr2 = _train(splits, tmp_path, "mr2", class_names=["a", "b", "c"])
    run = tmp_path / "toy" / "mr2" / "seed0"
    assert mr2["run_dir"] == str(run)
    for name in ("config.json", "log.csv", "metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(METRICS_KEYS) <= set(metrics), set(METRICS_KEYS) - set(metrics)
    assert set(metrics["selections"]) == set(SELECTION_RULES)
    for entry in metrics["selections"].values():
        assert set(SELECTION_KEYS) <= set(entry)
    assert metrics["selections"]["last"]["selected_epoch"] == EPOCHS
    assert metrics["class_names"] == ["a", "b", "c"] and metrics["loss"] == "mr2"
    assert len(metrics["margins"]) == K  # MR2's margins of the last step, as mr2 train records them
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == EPOCHS + 1 and "val_class2_accuracy" in log[0]
    study = load_study(tmp_path / "toy")
    assert sorted(study["loss"]) == ["ce", "mr2"]
    assert ce["accuracy"] > 0.8  # separable blobs: chance is 1/3


def test_same_seed_same_numbers(splits, tmp_path, one_torch_thread):
    a = _train(splits, tmp_path / "a", "ce", model=_model(0))
    b = _train(splits, tmp_path / "b", "ce", model=_model(0))
    assert a["per_class_accuracy"] == b["per_class_accuracy"]
    logs = [pd.read_csv(tmp_path / f"{x}/toy/ce/seed0/log.csv").drop(columns="time_s") for x in "ab"]
    pd.testing.assert_frame_equal(*logs)


def test_bad_models_and_folders_are_named(splits, tmp_path, one_torch_thread):
    logits_only = torch.nn.Linear(D, K)
    with pytest.raises(ValueError, match=r"^model='Linear'.*mr2.models.Classifier"):
        _train(splits, tmp_path, "mr2", model=logits_only)
    out = _train(splits, tmp_path, "ce", model=torch.nn.Linear(D, K), epochs=1)  # CE needs no features
    assert "class_spread" not in out  # no features: no a_k
    with pytest.raises(ValueError, match="holds a finished run; pass overwrite=True"):
        _train(splits, tmp_path, "ce", model=torch.nn.Linear(D, K), epochs=1)
    with pytest.raises(ValueError, match=r"^study='\.\./x'"):
        _train(splits, tmp_path, "ce", study="../x")
    assert torch.equal(dataset_labels(_NoTargets(splits[0])), splits[0].tensors[1])


def test_write_run_metrics_from_your_own_loop(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    pred = np.where(rng.random(100) < 0.7, y, rng.integers(0, 4, 100))
    feats = rng.normal(size=(100, 5))
    run = write_run_metrics(y, pred, runs=tmp_path, study="mine", method="my-loss", seed=3,
                            train_features=feats, train_targets=y, config={"lr": 0.1})  # fmt: skip
    m = json.loads((run / "metrics.json").read_text())
    naive = [float(np.mean(pred[y == k] == k)) for k in range(4)]
    assert m["per_class_accuracy"] == pytest.approx(naive, abs=1e-12)
    assert m["worst_class_accuracy"] == pytest.approx(min(naive), abs=1e-12)
    assert m["accuracy"] == pytest.approx(float(np.mean(pred == y)), abs=1e-12)
    spread = [float(np.mean(np.sum(feats[y == k] ** 2, axis=1))) for k in range(4)]  # a_k = mean ||h||²
    assert m["class_spread"] == pytest.approx(spread, rel=1e-9)
    assert set(METRICS_KEYS) <= set(m)
    assert json.loads((run / "config.json").read_text())["config"] == {"lr": 0.1}
    assert load_study(tmp_path / "mine")["seed"].tolist() == [3]
    with pytest.raises(ValueError, match=r"^y_true=.*class\(es\) \[3\]"):
        write_run_metrics(
            y[y < 3], pred[y < 3], runs=tmp_path, study="mine", method="x", seed=0, num_classes=4
        )
