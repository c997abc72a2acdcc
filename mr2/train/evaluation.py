"""Evaluation of a model on a split: predictions (and features) in evaluation mode, batched, and the
per-class numbers of docs/conventions.md (Reporting).

Under torch.distributed (``evaluate``) each rank predicts a contiguous 1/N of the split and the ranks
sum their counts: the (K, K) confusion matrix and, for the bound's statistics, the per-class feature
sums. Every number is then computed from the same summed integers (and float64 sums) on every rank,
so every rank gets the same metrics and makes the same model-selection decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mr2 import data as mdata
from mr2.metrics import class_feature_sums, class_summary, confusion_matrix, feature_stats_from_sums
from mr2.train.config import TrainConfig
from mr2.train.runtime import Dist

__all__ = [
    "prepare_batch",
    "predict",
    "predict_from_features",
    "split_metrics",
    "metrics_from_confusion",
    "shard",
    "class_feature_sums",
    "feature_stats_from_sums",
    "Evaluation",
    "evaluate",
    "MAX_MOMENT_FLOATS",
]

# the feature statistics include the per-class second moments (K d² float64, for the oracle share)
# up to this size: 8 MB (K = 10 and d up to ~320; ResNet-18's d = 512 at K <= 3)
MAX_MOMENT_FLOATS = 1_000_000


def prepare_batch(
    x: torch.Tensor, data: mdata.ImageData, cfg: TrainConfig, channels_last: bool
) -> torch.Tensor:
    x = mdata.normalize(x, data.mean, data.std)
    if cfg.input_size is not None and cfg.input_size != x.shape[-1]:
        x = F.interpolate(x, size=(cfg.input_size, cfg.input_size), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(model, x, data, cfg, device, amp_dtype, channels_last, want_features=False):
    """Predicted classes (N,) and, optionally, features (N, d) float32, in evaluation mode."""
    was_training = model.training
    model.eval()
    preds, feats = [], []
    for idx in mdata.batch_indices(len(x), cfg.eval_batch_size, generator=None):
        xb = prepare_batch(x[idx], data, cfg, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits, f = model(xb)
        preds.append(logits.float().argmax(1))
        if want_features:
            feats.append(f.float())
    model.train(was_training)
    return torch.cat(preds), (torch.cat(feats) if want_features else None)


@torch.no_grad()
def predict_from_features(model, feats, cfg, device, amp_dtype):
    """Predicted classes (N,) from cached backbone features, head only, in evaluation mode."""
    was_training = model.training
    model.eval()
    preds = []
    for idx in mdata.batch_indices(len(feats), cfg.eval_batch_size, generator=None):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            preds.append(model.head(feats[idx]).float().argmax(1))
    model.train(was_training)
    return torch.cat(preds)


def metrics_from_confusion(confusion: torch.Tensor) -> dict[str, Any]:
    """Accuracy, per-class accuracy (NaN for a class with no sample) and the class summary from a
    (K, K) count matrix (row = true class, column = prediction)."""
    cm = confusion.double()
    correct, total = cm.diagonal(), cm.sum(dim=1)
    pcs = (correct / total).cpu().numpy()
    out = {"accuracy": float(correct.sum() / total.sum()), "per_class_accuracy": pcs.tolist()}
    out.update(class_summary(pcs))
    return out


def split_metrics(preds: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, Any]:
    """``metrics_from_confusion`` of predictions (N,) against targets (N,) over k classes."""
    return metrics_from_confusion(confusion_matrix(preds, targets, k))


def shard(n: int, dist: Dist) -> slice:
    """This rank's contiguous part of ``range(n)``: the ranks' parts are disjoint, cover it, and differ
    in length by at most one (some may be empty when n < world size)."""
    return slice(n * dist.rank // dist.world_size, n * (dist.rank + 1) // dist.world_size)


@dataclass(frozen=True)
class Evaluation:
    """The numbers of one split, identical on every rank."""

    metrics: dict[str, Any]  # metrics_from_confusion
    confusion: torch.Tensor  # (K, K) int64 counts, summed over the ranks
    feature_stats: dict[str, np.ndarray] | None = None  # feature_stats_from_sums, when asked for


@torch.no_grad()
def evaluate(
    model, x, y, data, cfg, device, amp_dtype, channels_last, dist: Dist, *,
    cached: torch.Tensor | None = None, feature_stats: bool = False,
) -> Evaluation:  # fmt: skip
    """Evaluate ``model`` on images ``x`` (N, C, H, W) with labels ``y`` (N,), sharded over the ranks.

    Each rank predicts its ``shard`` of the split (or, with ``cached`` backbone features (N, d), runs
    the head on them); the confusion matrix (and, with ``feature_stats``, the per-class feature sums)
    are all-reduced, so the result is the same on every rank and equals one process's on the whole
    split (the feature statistics up to float64 summation order). Collective: every rank calls it.
    """
    k = data.num_classes
    part = shard(len(y), dist)
    y_part = y[part]
    feats = None
    if len(y_part) == 0:  # more ranks than samples: this rank only contributes zeros
        preds = y_part.new_empty(0)
        if feature_stats:
            feats = torch.zeros(0, model.feature_dim, device=y.device)
    elif cached is not None:
        preds = predict_from_features(model, cached[part], cfg, device, amp_dtype)
        feats = cached[part]
    else:
        preds, feats = predict(model, x[part], data, cfg, device, amp_dtype, channels_last, feature_stats)
    confusion = dist.all_reduce(confusion_matrix(preds, y_part, k))
    stats = None
    if feature_stats:
        d = model.feature_dim  # the second moments (K d² floats) for the oracle share, when small
        sums = class_feature_sums(feats, y_part, k, second_moments=k * d * d <= MAX_MOMENT_FLOATS)
        stats = feature_stats_from_sums(dist.all_reduce(sums), dim=d)
    return Evaluation(metrics_from_confusion(confusion), confusion.cpu(), stats)
