"""Batch norm over the global batch under torch.distributed: torch's ``SyncBatchNorm`` on GPUs, and a
portable equivalent where torch has none (CPU with gloo).

In training mode a batch-norm layer normalises with the mean and variance of the batch it sees (Ioffe
and Szegedy 2015). Under DDP each rank sees only its 1/N of the global batch, so plain batch norm uses
per-rank statistics: noisier when the per-rank batch is small, and not what one process on the whole
batch computes. Synchronised batch norm all-reduces the per-channel sums first, so every rank
normalises with the global batch's statistics and updates identical running statistics.

torch 2.13's ``nn.SyncBatchNorm`` refuses CPU tensors ("expected input tensor to be on GPU", and its
``batch_norm_stats`` kernel has no CPU implementation), so on CPU the layers are replaced by
:class:`GlobalBatchNorm`: the same statistics from all-reduced float64 sums, differentiated by autograd
through an all-reduce whose backward all-reduces the gradient, as ``SyncBatchNorm``'s backward does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mr2_core.checks import bad

__all__ = [
    "GlobalBatchNorm",
    "SYNC_BN_MAX_PER_RANK_BATCH",
    "has_training_batch_norm",
    "resolve_sync_bn",
    "convert_sync_batchnorm",
]

# sync_bn=None turns synchronised batch norm on under DDP below this many images per rank: the batch
# statistics of 64 images are within a few per cent of the population's; fewer make them noisy.
SYNC_BN_MAX_PER_RANK_BATCH = 64


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    """y = sum over the processes of x; each process's loss uses y, so d(sum of the losses)/dx is the
    sum over the processes of dL/dy: the backward all-reduces the gradient too."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: ANN001
        y = x.clone()
        torch.distributed.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlobalBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch (every rank's samples).

    Input (B, C, *) of any memory format. In training mode under a process group of N > 1 ranks, the
    per-channel count, sum and sum of squares are summed over the ranks in float64 (so that
    E[x^2] - E[x]^2 does not cancel in float32), giving the global mean and biased variance that
    normalise the batch, and the unbiased variance that updates the running statistics, exactly as
    ``F.batch_norm`` on the concatenated batch would. Gradients flow through the all-reduce. Every rank
    must call it with the same number of channels; per-rank batch sizes may differ. In evaluation mode,
    or without a process group, it is ``nn.BatchNorm2d`` (or 1d/3d) as it stands.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise bad("input", f"<tensor of shape {tuple(input.shape)}>", "a tensor (B, C, ...), dim >= 2")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or _world_size() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, input.dim())]
        x = input.double()
        count = x.new_full((1,), float(input.numel() // input.shape[1]))
        packed = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        total = _AllReduceSum.apply(packed)
        c = input.shape[1]
        n = total[2 * c]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0.0)  # biased: what normalises
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * n / (n - 1.0).clamp_min(1.0)  # no host read-back of n
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = [1, c] + [1] * (input.dim() - 2)
        invstd = torch.rsqrt(var + self.eps).to(input.dtype).view(shape)
        out = (input - mean.to(input.dtype).view(shape)) * invstd
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def has_training_batch_norm(model: nn.Module) -> bool:
    """True when ``model`` holds a batch-norm layer that uses batch statistics in training (a frozen
    backbone keeps its layers in evaluation mode: those use their running statistics)."""
    was = model.training
    model.train()
    found = any(isinstance(m, _BatchNorm) and m.training for m in model.modules())
    model.train(was)
    return found


def resolve_sync_bn(requested: bool | None, model: nn.Module, world_size: int, per_rank_batch: int) -> bool:
    """The ``sync_bn`` a run uses: ``requested`` when given, else on under DDP (``world_size`` > 1) when
    the model has batch norm in training and fewer than ``SYNC_BN_MAX_PER_RANK_BATCH`` images per rank.
    In one process batch norm already sees the whole batch, so True changes nothing there."""
    if requested is not None:
        return bool(requested)
    return world_size > 1 and per_rank_batch < SYNC_BN_MAX_PER_RANK_BATCH and has_training_batch_norm(model)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch-norm layer of ``model`` by a synchronised one, keeping its weights and
    running statistics (and its train/eval mode): ``nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm`
    elsewhere. Call it before wrapping the model in DDP and before building the optimiser. Returns the
    model (a new object only when ``model`` itself is a batch-norm layer)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)  # fmt: skip
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight  # the same Parameter objects: the optimiser keeps them
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
