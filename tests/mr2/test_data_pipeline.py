"""The device-side data pipeline (mr2.data.batching) against per-image loops: the epoch's augmentation
drawn in advance equals the per-batch draws, crop and flip equal their definition pixel by pixel,
and the device options change no value."""

from __future__ import annotations

import pytest
import torch

from mr2 import data as mdata


def _naive_augment(x: torch.Tensor, p: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """The documented draws (row offsets, column offsets, then flips, each (B,) from ``gen``) applied
    one image and one pixel at a time: pad with zeros, crop at (dy, dx), mirror when drawn."""
    b, c, h, w = x.shape
    dy = torch.randint(0, 2 * p + 1, (b,), generator=gen).tolist() if p else [0] * b
    dx = torch.randint(0, 2 * p + 1, (b,), generator=gen).tolist() if p else [0] * b
    flip = (torch.rand(b, generator=gen) < 0.5).tolist() if hflip else [False] * b
    out = torch.zeros_like(x)
    for i in range(b):
        for r in range(h):
            for col in range(w):
                src_col = w - 1 - col if flip[i] else col  # flip after the crop
                yy, xx = r + dy[i] - p, src_col + dx[i] - p  # position in the unpadded image
                if 0 <= yy < h and 0 <= xx < w:
                    out[i, :, r, col] = x[i, :, yy, xx]
    return out


@pytest.mark.parametrize(("p", "hflip"), [(2, True), (3, False), (0, True), (1, True)])
def test_epoch_plan_equals_per_batch_draws_and_the_definition(p, hflip):
    gen_data = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 256, (b, 2, 7, 6), generator=gen_data, dtype=torch.uint8) for b in (5, 3, 4)]
    plan = mdata.AugmentationPlan.draw(
        [len(x) for x in batches], crop_padding=p, hflip=hflip, generator=torch.Generator().manual_seed(9)
    )
    per_batch_gen, naive_gen = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for i, x in enumerate(batches):
        want = _naive_augment(x, p, hflip, naive_gen)
        assert torch.equal(plan.apply(i, x), want), f"batch {i}: the plan"
        got = mdata.augment(x, crop_padding=p, hflip=hflip, generator=per_batch_gen)
        assert torch.equal(got, want), f"batch {i}: augment"
    # float images take the same path
    x = batches[0].float()
    assert torch.equal(plan.apply(0, x), _naive_augment(x, p, hflip, torch.Generator().manual_seed(9)))


def test_plan_refuses_a_batch_of_the_wrong_size():
    plan = mdata.AugmentationPlan.draw([4, 2], crop_padding=1, hflip=True, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"^x='<batch of 3>': expected 2 images \(batch 1 of the plan\)"):
        plan.apply(1, torch.zeros(3, 1, 5, 5))
    with pytest.raises(ValueError, match="^crop_padding=-1"):
        mdata.AugmentationPlan.draw([4], crop_padding=-1, hflip=False, generator=torch.Generator())


def test_device_options_change_no_value():
    gen = torch.Generator().manual_seed(3)
    on_host = mdata.batch_indices(37, 8, generator=torch.Generator().manual_seed(2))
    moved = mdata.batch_indices(37, 8, generator=torch.Generator().manual_seed(2), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(on_host, moved, strict=True))
    x = torch.randint(0, 256, (6, 3, 4, 4), generator=gen, dtype=torch.uint8)
    mean, std = (0.2, 0.5, 0.7), (0.3, 0.25, 0.1)
    as_tensors = mdata.normalize(x, torch.tensor(mean), torch.tensor(std))
    assert torch.equal(as_tensors, mdata.normalize(x, mean, std))
    want = (x.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(as_tensors.double(), want, rtol=1e-6, atol=1e-6)
