"""What every loss in ``mr2.losses`` shares: the input checks, the base class, distributed helpers.

The interface (``docs/CONTRACTS.md``): ``forward(logits (B, K), features (B, d), targets (B,))`` returns
a scalar, ``on_epoch_start(epoch)`` runs a schedule (a no-op by default), and ``last`` holds the last
step's components, detached, for logging.

Value checks (NaN/inf inputs, labels out of range) read one small tensor back from the device, which
on a GPU is a synchronisation per step. ``check_every=N`` checks every N-th call only (the first
included), so the steps between run without any read-back; the training loop sets N = ``log_every``
on a GPU, where its own NaN check of the summed loss catches a divergence at the same interval.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mr2_core.checks import bad, check_in, check_real

__all__ = [
    "LossBase",
    "check_batch",
    "check_num_classes",
    "check_class_counts",
    "check_check_every",
    "check_in",
    "check_real",
    "distributed_world_size",
    "all_reduce_sum",
    "all_reduce_max",
    "all_gather_batch",
]


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` as an int >= 2, or a ValueError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise bad("num_classes", num_classes, "an integer >= 2 (a classifier needs two classes)")
    return num_classes


def check_class_counts(class_counts: Any, num_classes: int) -> Tensor:
    """Per-class training counts as a float64 tensor of shape (K,), all > 0, or a ValueError."""
    try:
        n = torch.as_tensor(class_counts, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise bad("class_counts", class_counts, f"{num_classes} positive counts") from None
    if n.shape != (num_classes,):
        raise bad("class_counts", class_counts, f"shape ({num_classes},), got {tuple(n.shape)}")
    if not bool(torch.isfinite(n).all()) or bool((n <= 0).any()):
        raise bad("class_counts", class_counts, "finite counts > 0 (every class needs an example)")
    return n


def check_check_every(check_every: Any) -> int | None:
    """``check_every`` as None (every call, or what a training loop sets) or an int >= 1."""
    if check_every is not None and (
        isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1
    ):
        raise bad("check_every", check_every, "None or an integer >= 1 (check the values every N calls)")
    return check_every


def _is_int_dtype(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def check_batch(
    logits: Any,
    features: Any,
    targets: Any,
    num_classes: int,
    *,
    need_features: bool,
    check_values: bool = True,
    return_feature_absmax: bool = False,
) -> Tensor | tuple[Tensor, float | None]:
    """Check one batch and return the targets as int64.

    Args:
        logits: (B, K) floating tensor, K = ``num_classes``.
        features: (B, d) floating tensor; may be None when ``need_features`` is False.
        targets: (B,) integer tensor of labels in [0, K).
        check_values: also check for NaN/inf and labels out of range. That reads one small tensor
            back from the device (a single synchronisation per call on GPU).
        return_feature_absmax: return ``(targets, max |features|)`` instead, the maximum as a host
            float read in that same read-back (None without ``check_values`` or features).

    Raises:
        ValueError naming the argument, its value and what was expected.
    """
    if not isinstance(logits, Tensor):
        raise bad("logits", logits, "a torch.Tensor of shape (B, K)")
    if not isinstance(targets, Tensor):
        raise bad("targets", targets, "a torch.Tensor of shape (B,) with integer labels")
    if logits.ndim != 2:
        raise bad("logits", logits, f"a 2-D tensor (B, {num_classes}), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise bad("logits", logits, f"a floating-point tensor, got {logits.dtype}")
    B = logits.shape[0]
    if B == 0:
        raise bad("logits", logits, "a non-empty batch (B >= 1)")
    if logits.shape[1] != num_classes:
        raise bad(
            "logits", logits, f"shape (B, {num_classes}) (one logit per class), got {tuple(logits.shape)}"
        )
    if targets.ndim != 1 or targets.shape[0] != B:
        raise bad(
            "targets",
            targets,
            f"shape ({B},) to match logits {tuple(logits.shape)}, got {tuple(targets.shape)}",
        )
    if not _is_int_dtype(targets):
        raise bad("targets", targets, f"integer class labels, got dtype {targets.dtype}")
    if targets.device != logits.device:
        # name the device, not the values: reading them back may be impossible (e.g. meta tensors)
        raise bad("targets", f"<tensor on {targets.device}>", f"the device of logits ({logits.device})")
    if features is None:
        if need_features:
            raise bad("features", features, f"a tensor of shape ({B}, d): this loss uses the features")
    else:
        if not isinstance(features, Tensor):
            raise bad("features", features, f"a torch.Tensor of shape ({B}, d)")
        if features.ndim != 2 or features.shape[0] != B or features.shape[1] == 0:
            raise bad(
                "features",
                features,
                f"shape ({B}, d) with d >= 1 to match logits, got {tuple(features.shape)}",
            )
        if not features.is_floating_point():
            raise bad("features", features, f"a floating-point tensor, got {features.dtype}")
        if features.device != logits.device:
            raise bad("features", f"<tensor on {features.device}>", f"the device of logits ({logits.device})")
    if check_values:
        # Every value check in one small read-back (a single device sync per step). min and max
        # propagate NaN and show +-inf, so one aminmax pass replaces an element-wise isfinite,
        # which costs twenty times more on CPU.
        # One stack promotes every extreme to float64 (exact for float32 values and for labels below
        # 2^53): five tensor operations and one read-back.
        with torch.no_grad():
            parts = [*torch.aminmax(targets.double()), *torch.aminmax(logits)]
            if features is not None:
                parts += torch.aminmax(features)
            low, high, *extremes = torch.stack(parts).tolist()
        if not all(_finite(v) for v in extremes[:2]):
            raise bad("logits", logits, "finite values (found NaN or inf)")
        if not all(_finite(v) for v in extremes[2:]):
            raise bad("features", features, "finite values (found NaN or inf)")
        if low < 0 or high >= num_classes:
            raise bad("targets", targets, f"labels in [0, {num_classes - 1}] (num_classes={num_classes})")
        absmax = max(-extremes[2], extremes[3]) if features is not None else None
    else:
        absmax = None
    if return_feature_absmax:
        return targets.long(), absmax
    return targets.long()


def distributed_world_size() -> int:
    """The number of processes in the default group, 1 when torch.distributed is not in use."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` in place over every process of the default group (a no-op without one)."""
    if distributed_world_size() > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def all_reduce_max(t: Tensor) -> Tensor:
    """Take the elementwise maximum of ``t`` in place over every process (a no-op without a group)."""
    if distributed_world_size() > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t


class _AllGather(torch.autograd.Function):
    """Concatenate every process's (B, d) tensor of the same shape, in rank order; the backward sums the
    gradient over the processes (each one's loss sees every row) and returns this process's rows."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        dist = torch.distributed
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_batch(features: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Every process's batch, concatenated in rank order: features (sum_r B_r, d) and targets
    (sum_r B_r,); ``(features, targets)`` themselves without a process group.

    Differentiable in ``features``: the backward sums, over the processes, the gradient each one's loss
    puts on a process's rows and hands it back to that process. So when every rank computes the same
    term on the gathered batch and DDP averages the gradients, the step is that of one process on the
    concatenated batch. Per-rank batch sizes may differ (they are exchanged first: one small collective
    and one read-back). Every process must call it.
    """
    world = distributed_world_size()
    if world == 1:
        return features, targets
    dist = torch.distributed
    size = torch.tensor([features.shape[0]], device=features.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = torch.cat(sizes).tolist()
    pad = max(counts) - features.shape[0]  # all_gather needs equal shapes: pad, then cut the padding
    if pad:
        features = torch.nn.functional.pad(features, (0, 0, 0, pad))
        targets = torch.nn.functional.pad(targets, (0, pad))
    rows = max(counts)
    gathered = _AllGather.apply(features)
    labels = [torch.empty_like(targets) for _ in range(world)]
    dist.all_gather(labels, targets.contiguous())
    keep = [gathered[r * rows : r * rows + n] for r, n in enumerate(counts)]
    return torch.cat(keep), torch.cat([t[:n] for t, n in zip(labels, counts, strict=True)])


class LossBase(nn.Module):
    """Base of every loss here: the shared call signature, ``on_epoch_start`` and ``last``.

    Subclasses set ``uses_features`` and implement ``_loss(logits, features, targets) -> Tensor``
    with ``targets`` already checked and converted to int64.
    """

    uses_features: bool = False

    def __init__(
        self, num_classes: int, *, check_values: bool = True, check_every: int | None = None
    ) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.check_values = bool(check_values)
        self.check_every = check_check_every(check_every)
        self._calls = 0  # calls so far (host counter for check_every; not state: it changes no number)
        self.last: dict[str, float | Tensor] = {}

    def skip_scheduled_check(self) -> None:
        """Make the next call an unchecked one when ``check_every`` > 1 (it then falls between two
        scheduled checks); for measuring a steady-state step, which a scheduled check is not."""
        if (self.check_every or 1) > 1 and self._calls % self.check_every == 0:
            self._calls += 1

    def _values_checked_now(self) -> bool:
        """Whether this call checks the input values (and so reads back from the device): every call
        by default, every ``check_every``-th call (the first included) when that is set, never
        without ``check_values``."""
        due = self._calls % (self.check_every or 1) == 0
        self._calls += 1
        return self.check_values and due

    def forward(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        """Loss of one batch: logits (B, K), features (B, d), targets (B,) int64 -> scalar."""
        y = check_batch(
            logits,
            features,
            targets,
            self.num_classes,
            need_features=self.uses_features,
            check_values=self._values_checked_now(),
        )
        self._follow_device(logits.device)
        return self._loss(logits, features, y)

    def _loss(self, logits: Tensor, features: Tensor | None, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the training loop before each epoch (0-based); no-op unless there is a schedule."""

    def _follow_device(self, device: torch.device) -> None:
        # Devices follow the inputs: a loss built on CPU and fed CUDA tensors moves its buffers once.
        for buf in self.buffers():
            if buf.device != device:
                self.to(device)
            return

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
