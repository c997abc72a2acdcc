"""The ``metrics.json`` of a run trained by your own loop, in the layout ``mr2 report`` reads.

``mr2 report RUNS/<study>`` reads ``RUNS/<study>/<method>/seed<k>/metrics.json`` (docs/CONTRACTS.md).
:func:`write_run_metrics` writes one from test labels and predictions: the overall and per-class
accuracies and their summaries (worst class, bottom and top tenth, spread over classes), and, given the
training features of the model, the bound's per-class statistic a_k = ||mu_k||² + s_k² with its parts
(the keys of ``mr2_core.contracts.METRICS_KEYS``). Without features the three feature keys are left
out and the report skips its a_k-against-error section. Per-run selection rules (``selections``) are
optional: :func:`mr2.train.custom.train_model` records all three, a loop of your own may pass them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mr2.metrics import class_feature_stats, confusion_matrix
from mr2.train.evaluation import metrics_from_confusion
from mr2_core.checks import bad
from mr2_core.contracts import CONFIG_FILE, METRICS_FILE, METRICS_KEYS, SELECTION_RULES
from mr2_core.io import code_version, write_json

__all__ = ["FEATURE_KEYS", "run_dir_of", "run_metrics", "write_run_metrics"]

# the METRICS_KEYS computed from training features (left out when none are given)
FEATURE_KEYS = ("class_spread", "class_mean_norm2", "class_within_spread")
_SAFE_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]+")


def run_dir_of(runs: str | os.PathLike, study: str, method: str, seed: int) -> Path:
    """``runs/<study>/<method>/seed<seed>``: where ``mr2 report runs/<study>`` looks for the run."""
    for name, value in (("study", study), ("method", method)):
        if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value):
            raise bad(name, value, "a folder name of letters, digits, '.', '_' and '-' (no '/' or '..')")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise bad("seed", seed, "an integer >= 0")
    return Path(runs) / study / method / f"seed{int(seed)}"


def _labels(name: str, value: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value).detach().cpu()
    if t.ndim != 1 or t.numel() == 0 or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise bad(name, value, "a 1-D array of integer class indices")
    return t.long()


def run_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    method: str,
    seed: int,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    dataset: str = "custom",
    train_features: Any = None,
    train_targets: Any = None,
    selections: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` content of one run (module docstring).

    Args:
        y_true, y_pred: (N,) test labels and predicted classes (integers in [0, K)); every class must
            have test samples (its accuracy is undefined otherwise).
        method: the name the report shows (the loss, or a method of your own: ``"mr2-lam0.2"``).
        seed: the run's seed (the report pairs methods over seeds).
        num_classes: K; default: 1 + the largest label seen.
        class_names: K names; default ``"0"``, ``"1"``, ...
        dataset: a name for your data, recorded.
        train_features, train_targets: (N_train, d) penultimate features of the evaluated model on the
            training split, and their (N_train,) labels: give the bound's a_k (``FEATURE_KEYS``).
        selections: ``{rule: {"selected_epoch": e, **run_metrics(...) numbers}}`` for rules among
            ``SELECTION_RULES``, when your loop selects models more than one way.
        extra: more keys to record (JSON-serialisable); they may not replace the computed ones.

    Returns:
        A dict with every key of ``METRICS_KEYS`` (but ``FEATURE_KEYS`` without features), plus
        ``balanced_accuracy``, ``confusion_matrix`` and ``class_counts`` when ``train_targets`` is given.
    """
    y, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if y.shape != p.shape:
        raise bad("y_pred", tuple(p.shape), f"one prediction per label, shape {tuple(y.shape)}")
    k = int(num_classes) if num_classes is not None else int(max(int(y.max()), int(p.max())) + 1)
    if k < 2:
        raise bad("num_classes", num_classes, "at least 2 classes")
    for name, t in (("y_true", y), ("y_pred", p)):
        if int(t.min()) < 0 or int(t.max()) >= k:
            raise bad(name, f"labels in [{int(t.min())}, {int(t.max())}]", f"class indices in [0, {k - 1}]")
    missing = sorted(set(range(k)) - set(y.unique().tolist()))
    if missing:
        raise bad("y_true", f"no test samples of class(es) {missing}", f"every one of the {k} classes")
    names = [str(j) for j in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise bad("class_names", class_names, f"{k} names, one per class")
    cm = confusion_matrix(p, y, k)
    metrics: dict[str, Any] = {
        **metrics_from_confusion(cm),
        "confusion_matrix": cm.tolist(),
        "dataset": str(dataset),
        "class_names": names,
        "loss": str(method),
        "seed": int(seed),
    }
    if train_features is not None or train_targets is not None:
        if train_features is None or train_targets is None:
            raise bad("train_features", "one of train_features/train_targets", "both, or neither")
        feats = torch.as_tensor(train_features).detach().cpu()
        targets = _labels("train_targets", train_targets)
        if feats.ndim != 2 or feats.shape[0] != targets.shape[0]:
            raise bad("train_features", tuple(feats.shape), f"shape (N, d) with N = {targets.shape[0]}")
        stats = class_feature_stats(feats, targets, k)
        metrics.update(
            class_spread=stats["spread"].tolist(),
            class_mean_norm2=stats["mean_norm2"].tolist(),
            class_within_spread=stats["within"].tolist(),
            class_centred_spread=stats["centred"].tolist(),
            class_separation=stats["separation"].tolist(),
            class_counts=torch.bincount(targets, minlength=k).tolist(),
        )
    if selections is not None:
        if not isinstance(selections, dict) or not set(selections) <= set(SELECTION_RULES):
            raise bad(
                "selections", selections, f"a dict {{rule: {{...}}}} with rules among {SELECTION_RULES}"
            )
        metrics["selections"] = selections
    for key, value in (extra or {}).items():
        if key in metrics:
            raise bad("extra", key, f"a key other than the computed ones ({', '.join(metrics)})")
        metrics[key] = value
    wanted = [key for key in METRICS_KEYS if key not in FEATURE_KEYS or "class_spread" in metrics]
    lost = [key for key in wanted if key not in metrics]
    if lost:  # the contract changed under this function: fail here, not in the report
        raise RuntimeError(f"run_metrics lacks contract keys {lost}; update mr2.train.run_metrics")
    return metrics


def write_run_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    runs: str | os.PathLike,
    study: str,
    method: str,
    seed: int,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> Path:
    """Write ``runs/<study>/<method>/seed<seed>/metrics.json`` (atomically) from your own loop's test
    predictions, so that ``mr2 report runs/<study>`` reads it beside other runs; and ``config.json``
    (``config`` with the code version) when ``config`` is given. Returns the run folder.

    ``options`` are those of :func:`run_metrics` (``num_classes``, ``class_names``, ``dataset``,
    ``train_features``, ``train_targets``, ``selections``, ``extra``).

    Example::

        write_run_metrics(y_test, model_predictions, runs="runs", study="mine", method="mr2", seed=0,
                          train_features=h_train, train_targets=y_train)
        # then: mr2 report runs/mine
    """
    run_dir = run_dir_of(runs, study, method, seed)
    metrics = run_metrics(y_true, y_pred, method=method, seed=seed, **options)
    metrics["study"] = study
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        if not isinstance(config, dict):
            raise bad("config", type(config).__name__, "a dict of the run's settings (JSON-serialisable)")
        write_json(run_dir / CONFIG_FILE, {"config": config, "code_version": code_version()})
    write_json(run_dir / METRICS_FILE, metrics)
    return run_dir
