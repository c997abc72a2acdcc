"""Train your own torch ``Dataset``s and ``nn.Module`` with any of the toolkit's losses, into a standard
run folder that ``mr2 report`` reads (docs/your-data.md).

``mr2 train`` (``mr2.train.loop``) trains models it builds by name on the datasets it knows, held in
memory as tensors, with checkpoints, resume and DDP. :func:`train_model` is the small loop for
everything else: any map-style ``Dataset`` yielding ``(image_tensor, label)`` and any model returning
``(logits, features)`` (``mr2.models.Classifier(backbone, feature_dim, num_classes)`` wraps a
backbone) or logits only (then only the losses that use no features: ce, focal, ldam, cdb). It shares
the toolkit's pieces rather than copying them: ``make_loss``, the optimiser and learning-rate schedule
of ``mr2.train.runtime``, the per-class numbers of ``mr2.train.evaluation`` and the bound's feature
statistics, and it writes the files of docs/CONTRACTS.md:

* ``config.json``: the settings, the code version and the environment;
* ``log.csv``: one row per epoch (training loss and accuracy, validation per-class accuracies, lr);
* ``metrics.json`` (``mr2.train.run_metrics``): test numbers of the model each selection rule picks
  on the validation split (best accuracy, best worst-class accuracy, last epoch), the configured
  rule's at the top level, and the bound's a_k from that model's training features.

What it does not do (use ``mr2 train --set dataset=folder`` for those): checkpoints and resume,
mixed precision, several processes, augmentation (put it in your ``Dataset``).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mr2.metrics import confusion_matrix
from mr2.train.config import TrainConfig
from mr2.train.evaluation import metrics_from_confusion
from mr2.train.run_metrics import run_dir_of, run_metrics
from mr2.train.runtime import Dist, lr_at, make_optimizer, resolve_device
from mr2.train.weights import cpu_state
from mr2_core.checks import bad, check_in, check_int
from mr2_core.contracts import CONFIG_FILE, LOG_FILE, METRICS_FILE, SELECTION_RULES
from mr2_core.io import code_version, write_csv, write_json
from mr2_core.progress import log_line, progress_bar
from mr2_core.seeding import seed_everything

__all__ = ["train_model", "dataset_labels"]

# the TrainConfig fields train_model takes (and records): the optimiser and the learning-rate schedule
_SCHEDULE_FIELDS = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "schedule",
)


def dataset_labels(dataset: Dataset, name: str = "dataset") -> torch.Tensor:
    """The (N,) int64 labels of a map-style dataset: its ``targets`` attribute (torchvision's
    convention; no image is read), else the second item of every ``dataset[i]``."""
    try:
        n = len(dataset)
    except TypeError:
        raise bad(name, type(dataset).__name__, "a map-style torch Dataset with __len__") from None
    if n == 0:
        raise bad(name, "an empty dataset", "at least one (image, label) sample")
    targets = getattr(dataset, "targets", None)
    if targets is None:
        try:
            targets = [int(dataset[i][1]) for i in range(n)]
        except (TypeError, IndexError, ValueError) as exc:
            raise bad(name, type(dataset).__name__, f"items (image_tensor, int_label) ({exc})") from None
    t = torch.as_tensor(targets)
    if t.ndim != 1 or len(t) != n or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise bad(f"{name}.targets", t.shape, f"{n} integer class labels")
    return t.long()


def _split(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's output as (logits, features or None)."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1]
    if torch.is_tensor(out):
        return out, None
    raise bad("model", type(out).__name__, "a model returning logits (B, K) or (logits, features)")


def _loader(data: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=workers)


@torch.no_grad()
def _predict(
    model: nn.Module, loader: DataLoader, device: torch.device, want_features: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Labels (N,), predictions (N,) and, optionally, features (N, d) in evaluation mode."""
    was_training = model.training
    model.eval()
    ys, preds, feats = [], [], []
    for x, y in loader:
        logits, f = _split(model(x.to(device)))
        ys.append(torch.as_tensor(y).long())
        preds.append(logits.float().argmax(1).cpu())
        if want_features and f is not None:
            feats.append(f.float().cpu())
    model.train(was_training)
    return torch.cat(ys), torch.cat(preds), (torch.cat(feats) if feats else None)


def _evaluate(model, loader, device, k) -> dict[str, Any]:
    y, p, _ = _predict(model, loader, device, want_features=False)
    return metrics_from_confusion(confusion_matrix(p, y, k))


def train_model(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    test_data: Dataset,
    *,
    loss: str | nn.Module = "mr2",
    loss_options: dict[str, Any] | None = None,
    runs: str | os.PathLike = "runs",
    study: str = "custom",
    method: str | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    dataset: str = "custom",
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    warmup_epochs: float = 0.0,
    schedule: str = "cosine",
    select_metric: str = "accuracy",
    device: str = "auto",
    num_workers: int = 0,
    eval_batch_size: int = 512,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``train_data`` with one of the toolkit's losses; select on ``val_data``,
    test on ``test_data``; write ``runs/<study>/<method>/seed<seed>/`` (module docstring).

    Args:
        model: an ``nn.Module`` mapping a batch of images to ``(logits (B, K), features (B, d))``, e.g.
            ``mr2.models.Classifier(backbone, feature_dim, K)``; or to logits only, for the losses
            that use no features. Trained in place: it ends with the ``select_metric`` model's weights.
        train_data, val_data, test_data: map-style datasets of ``(image_tensor, int_label)``; a
            ``targets`` attribute (as torchvision's datasets have) spares reading every image to count
            the classes. Every class needs validation and test samples.
        loss: a name of ``mr2.losses.LOSS_NAMES`` (built with the training split's class counts) or a
            loss module called as ``loss(logits, features, targets)``.
        loss_options: keyword options of ``make_loss`` (e.g. ``{"lambda_rep": 0.2}``).
        runs, study, method, seed: the run folder ``runs/<study>/<method>/seed<seed>`` (``method``
            defaults to the loss name); ``mr2 report runs/<study>`` compares the methods over seeds.
        num_classes: K (default: 1 + the largest training label); class_names: K names for the report.
        dataset: a name for your data, recorded in the files.
        epochs, batch_size, optimizer, lr, momentum, weight_decay, warmup_epochs, schedule: as in
            ``mr2.train.TrainConfig`` (SGD with Nesterov momentum or AdamW; lr per step, warm-up in
            epochs, then cosine to 0 or constant).
        select_metric: the rule whose model is tested at the top level of ``metrics.json`` (the
            others are under ``selections``): ``accuracy``, ``worst_class_accuracy`` or ``last``.
        device: ``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``.
        num_workers: DataLoader worker processes (0: load in this process).
        eval_batch_size: images per evaluation step.
        progress: bars on a terminal (``mr2_core.progress``) and one line per epoch.
        overwrite: replace a finished run in the folder (else a ValueError).

    Returns:
        The ``metrics.json`` content, with ``run_dir``.
    """
    method = method or (loss if isinstance(loss, str) else type(loss).__name__.lower())
    run_dir = run_dir_of(runs, study, method, seed)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        check_int(name, value, 1)
    check_int("num_workers", num_workers, 0)
    check_in("select_metric", select_metric, SELECTION_RULES)
    if not isinstance(model, nn.Module):
        raise bad("model", type(model).__name__, "a torch nn.Module")
    if (run_dir / METRICS_FILE).exists() and not overwrite:
        raise ValueError(
            f"run_dir={str(run_dir)!r} holds a finished run; pass overwrite=True or another study, method "
            "or seed"
        )
    # the optimiser and its schedule are mr2 train's (TrainConfig validates them); its data fields are unused
    sched = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        schedule=schedule,
    )
    dev = resolve_device(device, Dist(rank=0, world_size=1, local_rank=0))
    seed_everything(seed)
    y_train = dataset_labels(train_data, "train_data")
    k = _num_classes(y_train, num_classes)
    names = [str(j) for j in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise bad("class_names", class_names, f"{k} names, one per class")
    counts = torch.bincount(y_train, minlength=k)
    loss_fn = _loss_module(loss, loss_options, k, counts)
    model.to(dev)
    loss_fn.to(dev)
    opt = make_optimizer(model.parameters(), sched)
    loaders = {
        "train": _loader(train_data, batch_size, True, seed, num_workers),
        "val": _loader(val_data, eval_batch_size, False, seed, num_workers),
        "test": _loader(test_data, eval_batch_size, False, seed, num_workers),
    }

    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (METRICS_FILE, LOG_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    settings = {
        "study": study,
        "method": method,
        "loss": loss if isinstance(loss, str) else repr(loss),
        "loss_options": loss_options or {},
        "dataset": dataset,
        "model": type(model).__name__,
        "seed": seed,
        "select_metric": select_metric,
        "eval_batch_size": eval_batch_size,
        **{name: getattr(sched, name) for name in _SCHEDULE_FIELDS},
    }
    environment = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
    }
    data = {
        "n_train": len(y_train),
        "n_val": len(val_data),
        "n_test": len(test_data),
        "class_names": names,
        "class_counts": counts.tolist(),
    }
    write_json(
        run_dir / CONFIG_FILE,
        {
            "config": settings,
            "code_version": code_version(),
            "environment": environment,
            "data": data,
            "trainer": "train_model",
        },
    )

    best = {rule: (-1, -math.inf, None) for rule in SELECTION_RULES if rule != "last"}  # epoch, value, state
    rows: list[dict[str, Any]] = []
    elapsed = 0.0
    tag = f"{study}/{method}/seed{seed}"
    import pandas as pd  # here, not at import: mr2.train (and mr2 --help) stay quick to import

    for epoch in range(epochs):
        t0 = time.perf_counter()
        if hasattr(loss_fn, "on_epoch_start"):
            loss_fn.on_epoch_start(epoch)
        if hasattr(loss_fn, "set_class_accuracy") and rows:  # CDB: difficulty from validation, as mr2 train
            loss_fn.set_class_accuracy([rows[-1][f"val_class{j}_accuracy"] for j in range(k)])
        train = _train_epoch(model, loss_fn, opt, sched, loaders["train"], epoch, dev, progress, tag)
        val = _evaluate(model, loaders["val"], dev, k)
        elapsed += time.perf_counter() - t0
        rows.append(_log_row(epoch, train, val, elapsed))
        state = None
        for rule, (_, value, _) in best.items():
            if val[rule] > value:
                state = state or cpu_state(model)
                best[rule] = (epoch + 1, val[rule], state)
        write_csv(run_dir / LOG_FILE, pd.DataFrame(rows))
        if progress:
            log_line(
                f"[{tag}] epoch {epoch + 1}/{epochs}: loss {train['train_loss']:.4f}, val acc "
                f"{val['accuracy']:.4f}, worst {val['worst_class_accuracy']:.4f}, {elapsed:.0f}s"
            )

    chosen = {rule: (epoch_, state) for rule, (epoch_, _, state) in best.items()}
    chosen["last"] = (epochs, cpu_state(model))
    selections = {}
    for rule in [r for r in SELECTION_RULES if r != select_metric] + [select_metric]:  # configured rule last
        model.load_state_dict(chosen[rule][1])
        selections[rule] = {"selected_epoch": chosen[rule][0], **_evaluate(model, loaders["test"], dev, k)}
    y_test, p_test, _ = _predict(model, loaders["test"], dev, want_features=False)
    # the bound's a_k from the selected model's training features (in evaluation mode, no shuffling)
    feats_loader = _loader(train_data, eval_batch_size, False, seed, num_workers)
    y_feat, _, h_train = _predict(model, feats_loader, dev, want_features=True)
    val_sel = _evaluate(model, loaders["val"], dev, k)
    metrics = run_metrics(
        y_test,
        p_test,
        method=method,
        seed=seed,
        num_classes=k,
        class_names=names,
        dataset=dataset,
        train_features=h_train,
        train_targets=y_feat if h_train is not None else None,
        selections={rule: selections[rule] for rule in SELECTION_RULES},
        extra={
            "study": study,
            "loss_fn": settings["loss"],
            "model": settings["model"],
            "epochs": epochs,
            "select_metric": select_metric,
            "selected_epoch": chosen[select_metric][0],
            "val_accuracy": val_sel["accuracy"],
            "val_per_class_accuracy": val_sel["per_class_accuracy"],
            "train_time_s": elapsed,
            "device": str(dev),
            "n_train": len(y_train),
            "n_val": len(val_data),
            "n_test": len(test_data),
            "code_version": code_version(),
            "trainer": "train_model",
        },
    )
    metrics.setdefault("class_counts", counts.tolist())
    margins = getattr(loss_fn, "last", {}).get("margins")
    if torch.is_tensor(margins) and margins.numel() > 1:  # the margins of the last step, as mr2 train records
        m = margins.detach().float().cpu()
        metrics.update(margins=m.tolist(), margin_min=float(m.min()), margin_max=float(m.max()))
    write_json(run_dir / METRICS_FILE, metrics)
    return {**metrics, "run_dir": str(run_dir)}


def _num_classes(y_train: torch.Tensor, num_classes: int | None) -> int:
    k = int(y_train.max()) + 1 if num_classes is None else num_classes
    if (
        isinstance(k, bool)
        or not isinstance(k, int)
        or k < 2
        or int(y_train.min()) < 0
        or int(y_train.max()) >= k
    ):
        raise bad(
            "num_classes",
            num_classes,
            f"an integer K >= 2 covering the training labels {int(y_train.min())}..{int(y_train.max())}",
        )
    return k


def _loss_module(loss: Any, options: dict[str, Any] | None, k: int, counts: torch.Tensor) -> nn.Module:
    """A loss name built with the training split's class counts, or the caller's module as it is."""
    if isinstance(loss, str):
        from mr2.losses import make_loss

        return make_loss(loss, k, class_counts=counts, **(options or {}))
    if isinstance(loss, nn.Module):
        if options:
            raise bad("loss_options", options, "None when loss is a module (build it with its options)")
        return loss
    raise bad("loss", loss, "a loss name (mr2.losses.LOSS_NAMES) or an nn.Module")


def _train_epoch(
    model,
    loss_fn,
    opt,
    sched: TrainConfig,
    loader: DataLoader,
    epoch: int,
    dev: torch.device,
    progress: bool,
    tag: str,
) -> dict[str, float]:
    """One pass over the training split (learning rate set per step, as mr2 train does)."""
    model.train()
    steps = len(loader)
    total, correct, seen, lr = 0.0, 0, 0, sched.lr
    bar = progress_bar(loader, progress=progress, desc=f"{tag} ep {epoch + 1}/{sched.epochs}", leave=False)
    for step, (x, y) in enumerate(bar):
        lr = lr_at(epoch * steps + step, steps, sched)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = x.to(dev), torch.as_tensor(y).long().to(dev)
        logits, feats = _split(model(x))
        if feats is None and getattr(loss_fn, "uses_features", False):
            raise bad(
                "model",
                type(model).__name__,
                "a model returning (logits, features) for this loss: "
                "wrap the backbone in mr2.models.Classifier(backbone, feature_dim, num_classes)",
            )
        value = loss_fn(logits.float(), None if feats is None else feats.float(), y)
        if not torch.isfinite(value):
            raise ValueError(
                f"loss became {float(value)} in epoch {epoch + 1}, step {step + 1}; lower lr={sched.lr}"
            )
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        total += float(value.detach()) * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += len(y)
    bar.close()
    return {"lr": lr, "train_loss": total / seen, "train_accuracy": correct / seen}


def _log_row(epoch: int, train: dict[str, float], val: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """log.csv's row of an epoch: mr2 train's columns (docs/CONTRACTS.md)."""
    return {
        "epoch": epoch + 1,
        **train,
        "val_accuracy": val["accuracy"],
        "val_worst_class_accuracy": val["worst_class_accuracy"],
        "val_class_accuracy_std": val["class_accuracy_std"],
        "time_s": elapsed,
        **{f"val_class{j}_accuracy": a for j, a in enumerate(val["per_class_accuracy"])},
    }
