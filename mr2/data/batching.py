"""In-memory batching: index batches, normalisation and augmentation as tensor ops.

``batch_indices`` replaces a DataLoader: shuffling, DistributedSampler-style sharding and
augmentation are tensor operations driven by an explicit ``torch.Generator`` (same seed, same
batches), so the whole pipeline can live on the training device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.checks import bad

__all__ = ["batch_indices", "normalize", "augment"]


def batch_indices(
    n: int,
    batch_size: int,
    *,
    generator: torch.Generator | None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> list[torch.Tensor]:
    """Index batches over ``range(n)``: shuffled by ``generator`` (None: in order), sharded like
    ``DistributedSampler`` (every rank draws the same permutation, pads it to a multiple of
    ``world_size`` by wrapping around, and takes every ``world_size``-th index from ``rank``).

    ``batch_size`` is per rank. Returns a list of int64 index tensors.
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
    return list(order[:stop].split(batch_size))


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (or [0, 1] float) images (B, C, H, W) -> float32 standardised per channel."""
    xf = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (xf - m) / s


def augment(x: torch.Tensor, *, crop_padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding (pixels) and random horizontal flip, batched.

    Args:
        x: images (B, C, H, W), any dtype; returned with the same shape and dtype.
        crop_padding: pad each side by this many pixels, then crop back at a random offset.
        hflip: flip each image left-right with probability 1/2.
        generator: a CPU ``torch.Generator`` (draws are made on CPU, then moved to ``x.device``).
    """
    b, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator).to(x.device)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        bidx = torch.arange(b, device=x.device)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(b, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x
