"""What lets a training epoch run on a GPU without the host waiting for it.

A GPU runs the kernels the host queues; the host waits (a synchronisation) whenever it needs a value
from the device or copies pageable memory to it. The training loop (``loop.train_epoch``) takes from
here:

* ``EpochFeed``: the epoch's batches and augmentation, drawn on the host exactly as before (the same
  generators, the same order, so a GPU run sees the batches and crops of a CPU run, and a CPU run is
  bit for bit what it was) and moved to the training device in one copy per epoch; the normalisation
  constants live there too. A step then gathers, augments and normalises its images with device
  tensor operations only: no per-step host-to-device copy.
* ``configure_value_checks``: on a GPU, the losses check their inputs every ``log_every`` steps
  (``check_every``), when the loop reads the summed loss back for its own NaN check anyway, instead of
  reading one small tensor back every step. The numbers do not change.
* ``training_net``: the network the steps call, compiled by ``torch.compile`` when the config asks
  (``compile=True``; the same weights, evaluation stays eager).

The rest of the step already stays on the device: the summed loss and the correct count are device
tensors read once per ``log_every`` steps and once per epoch, the learning rate is a Python float, and
with bf16 autocast (the GPU default) the gradient scaler, whose fp16 overflow check reads back every
step, is off.
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from mr2 import data as mdata
from mr2.train.evaluation import prepare_batch
from mr2.train.runtime import epoch_generator

if TYPE_CHECKING:
    from mr2.train.session import Session

__all__ = ["EpochFeed", "configure_value_checks", "training_net"]

# the compiled wrapper of each network (weak keys: it goes with the network)
_COMPILED: weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module] = weakref.WeakKeyDictionary()


class EpochFeed:
    """One epoch's batches on the training device, and the images of each (module docstring).

    Attributes:
        batches: list of (B,) int64 index tensors on the device, rank-sharded (``batch_indices``).
        plan: the epoch's ``AugmentationPlan`` (None without crop or flip).
    """

    def __init__(self, s: Session, epoch: int) -> None:
        cfg, device = s.cfg, s.device
        self.s = s
        self.batches = mdata.batch_indices(
            len(s.x_train), s.per_rank_batch, generator=epoch_generator(cfg.seed, epoch, 0),
            rank=s.dist.rank, world_size=s.dist.world_size, device=device,
        )  # fmt: skip
        self.plan = None
        if (cfg.crop_padding or cfg.hflip) and not s.cache:
            self.plan = mdata.AugmentationPlan.draw(
                [len(b) for b in self.batches], crop_padding=cfg.crop_padding, hflip=cfg.hflip,
                generator=epoch_generator(cfg.seed, epoch, 1 + s.dist.rank), device=device,
            )  # fmt: skip
        consts = torch.tensor([s.data.mean, s.data.std], dtype=torch.float32)  # (2, C)
        mean, std = mdata.to_device(consts, device).unbind(0)
        self._stats = SimpleNamespace(mean=mean, std=std)  # what prepare_batch reads of the data

    def __len__(self) -> int:
        return len(self.batches)

    def images(self, step: int, idx: torch.Tensor) -> torch.Tensor:
        """Step ``step``'s training images (``idx`` = ``batches[step]``): gathered, augmented,
        normalised, resized to ``input_size`` and in the model's memory format, on the device."""
        s = self.s
        x = s.x_train.index_select(0, idx)  # = x_train[idx], without advanced indexing's overhead
        if self.plan is not None:
            x = self.plan.apply(step, x)
        return prepare_batch(x, self._stats, s.cfg, s.channels_last)


def configure_value_checks(s: Session) -> None:
    """On a GPU, let the loss check its inputs every ``log_every`` calls (unless its own
    ``check_every`` says otherwise); on a CPU a check costs little and stays on every call."""
    loss = s.loss_fn
    if s.device.type != "cpu" and getattr(loss, "check_every", 0) is None:
        loss.check_every = s.cfg.log_every


def training_net(s: Session) -> torch.nn.Module:
    """The module the training steps call: ``s.net``, or its ``torch.compile`` wrapper (made once per
    network) when ``cfg.compile`` is set."""
    if not s.cfg.compile:
        return s.net
    compiled = _COMPILED.get(s.net)
    if compiled is None:
        compiled = _COMPILED[s.net] = torch.compile(s.net)
    return compiled
