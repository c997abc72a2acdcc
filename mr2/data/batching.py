"""In-memory batching: index batches, normalisation and augmentation as tensor ops.

``batch_indices`` replaces a DataLoader: shuffling, DistributedSampler-style sharding and
augmentation are tensor operations driven by an explicit ``torch.Generator`` (same seed, same
batches), so the whole pipeline can live on the training device.

The random draws are made on the host, from a CPU generator, so that a run on a GPU sees the same
batches and the same crops and flips as on a CPU; for a GPU they are made for a whole epoch at once
and moved in one copy (``batch_indices(device=...)``, ``AugmentationPlan``), so that the training steps
themselves need no host-to-device copy, each of which would stall the GPU's queue.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from mr2_core.checks import bad

__all__ = ["batch_indices", "normalize", "augment", "AugmentationPlan", "to_device"]


def to_device(t: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """``t`` (on the host) moved to ``device``; to a GPU from pinned memory without blocking (the
    copy is queued like a kernel, so it makes the host wait for nothing)."""
    if device is None or torch.device(device).type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def batch_indices(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str | None = None,
) -> list[torch.Tensor]:
    """Index batches over ``range(n)``: shuffled by ``generator`` (None: in order), sharded like
    ``DistributedSampler`` (every rank draws the same permutation, pads it to a multiple of
    ``world_size`` by wrapping around, and takes every ``world_size``-th index from ``rank``).

    ``batch_size`` is per rank. Returns a list of int64 index tensors, on ``device`` (default: the
    host) as views of one tensor moved there in one copy; the permutation is always drawn on the
    host, so the batches do not depend on the device.
    """
    if batch_size < 1:
        raise bad("batch_size", batch_size, "a positive integer")
    if not 0 <= rank < world_size:
        raise bad("rank", rank, f"an integer in [0, world_size={world_size})")
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if world_size > 1:
        total = -(-n // world_size) * world_size
        order = torch.cat([order, order[: total - n]])[rank::world_size]
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return list(to_device(order[:stop], device).split(batch_size))


def normalize(
    x: torch.Tensor, mean: tuple[float, ...] | torch.Tensor, std: tuple[float, ...] | torch.Tensor
) -> torch.Tensor:
    """uint8 (or [0, 1] float) images (B, C, H, W) -> float32 standardised per channel.

    ``mean`` and ``std`` (C,) are per-channel numbers or float32 tensors already on ``x``'s device
    (which saves the two host-to-device copies of a tuple at every call).
    """
    xf = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    m = torch.as_tensor(mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.as_tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (xf - m) / s


class AugmentationPlan:
    """Random crops (after zero padding) and horizontal flips drawn in advance for a sequence of
    batches, applied by tensor indexing.

    ``AugmentationPlan.draw(sizes, ...)`` makes, for each batch in turn, exactly the draws that
    ``augment`` makes for it (row offsets, column offsets, flips, from the same generator), so a plan
    for an epoch followed by ``apply(i, x)`` gives the images that calling ``augment`` batch by batch
    would. With ``device`` the draws of every batch move there in one copy.

    Attributes: ``dy``, ``dx`` (N,) int64 offsets in [0, 2 p], ``flip`` (N,) bool, N = sum(sizes);
    ``starts``, the first row of each batch.
    """

    def __init__(
        self, dy: torch.Tensor | None, dx: torch.Tensor | None, flip: torch.Tensor | None, sizes: list[int],
        crop_padding: int,
    ) -> None:  # fmt: skip
        self.dy, self.dx, self.flip = dy, dx, flip
        self.sizes = list(sizes)
        self.starts = [0, *itertools.accumulate(self.sizes)][:-1]
        self.crop_padding = crop_padding

    @classmethod
    def draw(
        cls,
        sizes: list[int],
        *,
        crop_padding: int,
        hflip: bool,
        generator: torch.Generator,
        device: torch.device | str | None = None,
    ) -> AugmentationPlan:
        """Draw the augmentation of batches of ``sizes`` images (crop offsets, then flips, batch by
        batch, from ``generator``, a CPU generator); see the class docstring."""
        if crop_padding < 0:
            raise bad("crop_padding", crop_padding, "an integer >= 0 (pixels)")
        dys, dxs, flips = [], [], []
        for b in sizes:
            if crop_padding > 0:
                dys.append(torch.randint(0, 2 * crop_padding + 1, (b,), generator=generator))
                dxs.append(torch.randint(0, 2 * crop_padding + 1, (b,), generator=generator))
            if hflip:
                flips.append(torch.rand(b, generator=generator) < 0.5)
        parts = [torch.cat(p) if p else None for p in (dys, dxs, flips)]
        packed = [p for p in parts if p is not None]
        if packed:  # one copy for everything: the offsets and the flips (as 0/1) side by side
            moved = to_device(torch.stack([p.long() for p in packed]), device).unbind(0)
            it = iter(moved)
            parts = [None if p is None else next(it) for p in parts]
            if parts[2] is not None:
                parts[2] = parts[2].bool()
        return cls(*parts, sizes=sizes, crop_padding=crop_padding)

    def apply(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Batch ``i``'s augmentation of images ``x`` (B, C, H, W), B = ``sizes[i]``; any dtype, the
        same shape and dtype back. Crop and flip are one ``gather`` over the flattened padded images
        (a flipped image reads its crop's columns right to left): about 5x faster on a CPU than
        indexing with four broadcast index tensors, and the same values."""
        b, c, h, w = x.shape
        if b != self.sizes[i]:
            raise bad("x", f"<batch of {b}>", f"{self.sizes[i]} images (batch {i} of the plan)")
        rows_from = slice(self.starts[i], self.starts[i] + b)
        p = self.crop_padding
        if p == 0 and self.flip is None:
            return x
        dev = x.device
        ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
        cols = ar_w.expand(b, w)
        if self.flip is not None:
            cols = torch.where(self.flip[rows_from, None], (w - 1) - ar_w, ar_w)  # (B, W)
        rows = ar_h.expand(b, h)
        if p > 0:
            x = F.pad(x, (p, p, p, p))
            rows = self.dy[rows_from, None] + rows  # (B, H)
            cols = self.dx[rows_from, None] + cols
        wp = w + 2 * p
        flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        return torch.gather(x.reshape(b, c, -1), 2, flat).view(b, c, h, w)


def augment(x: torch.Tensor, *, crop_padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding (pixels) and random horizontal flip, batched.

    Args:
        x: images (B, C, H, W), any dtype; returned with the same shape and dtype.
        crop_padding: pad each side by this many pixels, then crop back at a random offset.
        hflip: flip each image left-right with probability 1/2.
        generator: a CPU ``torch.Generator`` (draws are made on CPU, then moved to ``x.device``).
    """
    plan = AugmentationPlan.draw(
        [x.shape[0]], crop_padding=crop_padding, hflip=hflip, generator=generator, device=x.device
    )
    return plan.apply(0, x)
