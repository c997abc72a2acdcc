"""Evaluation of a model on a split: predictions (and features) in evaluation mode, batched, and the
per-class numbers of docs/conventions.md (Reporting)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mr2 import data as mdata
from mr2.metrics import class_summary, per_class_accuracy
from mr2.train.config import TrainConfig

__all__ = ["prepare_batch", "predict", "predict_from_features", "split_metrics"]


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


def split_metrics(preds: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, Any]:
    pcs = per_class_accuracy(preds, targets, k)
    out = {"accuracy": float((preds == targets).double().mean()), "per_class_accuracy": pcs.tolist()}
    out.update(class_summary(pcs))
    return out
