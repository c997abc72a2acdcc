"""Each baseline against a hand-written reference (float64, values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from mr2.losses import LOSS_NAMES, CDBLoss, CrossEntropyLoss, FocalLoss, LDAMLoss, NormedLinear, make_loss
from mr2.losses.cdb import cdb_weights
from mr2.losses.focal import focal_from_ce
from mr2.losses.ldam import class_balanced_weights

ATOL = 1e-12


def _batch(seed=0, B=12, K=5, d=3):
    gen = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(B, K, generator=gen, dtype=torch.float64)
    feats = torch.randn(B, d, generator=gen, dtype=torch.float64)
    return logits.requires_grad_(), feats, torch.randint(K, (B,), generator=gen)


def _check(loss_value, ref_value, logits):
    g1, g2 = (torch.autograd.grad(v, logits, retain_graph=True)[0] for v in (loss_value, ref_value))
    assert abs(loss_value.item() - ref_value.item()) < ATOL
    torch.testing.assert_close(g1, g2, rtol=0, atol=ATOL)


def _log_softmax(z):
    return z - torch.log(torch.exp(z).sum(dim=1, keepdim=True))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_with_label_smoothing(eps):
    logits, feats, y = _batch()
    K = logits.shape[1]
    logp = _log_softmax(logits)
    target = (1 - eps) * torch.nn.functional.one_hot(y, K).double() + eps / K
    ref = -(target * logp).sum(dim=1).mean()
    _check(CrossEntropyLoss(K, label_smoothing=eps)(logits, feats, y), ref, logits)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_lin_et_al(gamma):
    logits, feats, y = _batch(1)
    p = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    ref = (-((1 - p) ** gamma) * torch.log(p)).mean()
    _check(FocalLoss(logits.shape[1], gamma=gamma)(logits, feats, y), ref, logits)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_is_nan_safe_where_the_research_code_is_not(gamma):
    ce = torch.tensor([-1e-7, 0.0, 1e-30, 3.0], dtype=torch.float32, requires_grad=True)
    naive = (1 - torch.exp(-ce)) ** gamma * ce  # the LDAM/MR2 repositories' formula
    if gamma == 0.5:
        assert torch.isnan(naive[0])  # the bug this guards against
    out = focal_from_ce(ce, gamma)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(ce.grad).all()
    assert out[0] == 0 and out[1] == 0
    assert abs(out[3].item() - (1 - math.exp(-3.0)) ** gamma * 3.0) < 1e-6


def _ldam_ref(logits, y, counts, max_m, s, weight=None):
    m = torch.tensor([n**-0.25 for n in counts], dtype=torch.float64)
    m = m * (max_m / m.max())
    z = logits - torch.nn.functional.one_hot(y, logits.shape[1]).double() * m[y][:, None]
    nll = -_log_softmax(s * z).gather(1, y[:, None]).squeeze(1)
    if weight is None:
        return nll.mean()
    w = weight[y]
    return (w * nll).sum() / w.sum()


def test_ldam_margins_and_scale():
    logits, feats, y = _batch(2)
    counts = [100, 50, 20, 10, 5]
    loss = LDAMLoss(5, class_counts=counts, max_m=0.5, s=30.0).double()
    _check(loss(logits, feats, y), _ldam_ref(logits, y, counts, 0.5, 30.0), logits)
    assert abs(loss.margins.max().item() - 0.5) < 1e-7
    assert loss.margins[-1] > loss.margins[0]  # rarer class, larger margin


def test_ldam_balanced_data_gives_equal_margins():
    loss = LDAMLoss(4, class_counts=[30, 30, 30, 30], max_m=0.4)
    torch.testing.assert_close(loss.margins, torch.full((4,), 0.4, dtype=torch.float64))
    torch.testing.assert_close(
        LDAMLoss(4).margins, torch.full((4,), 0.5, dtype=torch.float64)
    )  # None: balanced


def test_ldam_drw_schedule():
    logits, feats, y = _batch(3)
    counts = [100, 50, 20, 10, 5]
    loss = LDAMLoss(5, class_counts=counts, drw_epoch=2, s=10.0).double()
    loss.on_epoch_start(1)
    _check(loss(logits, feats, y), _ldam_ref(logits, y, counts, 0.5, 10.0), logits)
    loss.on_epoch_start(2)
    beta = 0.9999
    w = torch.tensor([(1 - beta) / (1 - beta**n) for n in counts], dtype=torch.float64)
    w = w / w.sum() * 5
    torch.testing.assert_close(loss.class_weights, w, rtol=0, atol=1e-12)
    _check(loss(logits, feats, y), _ldam_ref(logits, y, counts, 0.5, 10.0, weight=w), logits)
    # state_dict round trip carries the schedule's state
    again = LDAMLoss(5, class_counts=counts, drw_epoch=2, s=10.0).double()
    again.load_state_dict(loss.state_dict())
    assert torch.equal(again.class_weights, loss.class_weights) and bool(again.drw_active)
    # balanced counts: DRW weights are uniform
    torch.testing.assert_close(
        class_balanced_weights(torch.full((3,), 7.0), beta), torch.ones(3, dtype=torch.float64)
    )


def test_ce_drw_is_class_balanced_cross_entropy_after_the_deferral():
    from mr2.losses import make_loss

    logits, feats, y = _batch(5)
    counts = [100, 50, 20, 10, 5]
    loss = make_loss("ce", 5, class_counts=counts, drw_epoch=3).double()
    loss.on_epoch_start(2)  # before the deferral: plain CE
    plain = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(loss(logits, feats, y), plain, rtol=0, atol=1e-12)
    loss.on_epoch_start(3)
    n = torch.tensor(counts, dtype=torch.float64)
    w = (1 - 0.9999) / (1 - 0.9999**n)
    w = w / w.sum() * 5
    # by hand: sum_i w_{y_i} CE_i / sum_i w_{y_i}
    per_sample = -torch.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    ref = (w[y] * per_sample).sum() / w[y].sum()
    torch.testing.assert_close(loss(logits, feats, y), ref, rtol=0, atol=1e-12)
    assert "class_weights" not in make_loss("ce", 5).state_dict()  # plain CE has no DRW state


def test_ldam_normalises_a_head_it_does_not_own():
    logits, feats, y = _batch(4, d=3)
    head = torch.nn.Linear(3, 5).double()
    loss = LDAMLoss(5, class_counts=[5, 4, 3, 2, 1], normalize=True, head=head).double()
    assert loss.s == 30.0
    assert not any(True for _ in loss.parameters())  # the head is referenced, not registered
    assert set(loss.state_dict()) == {"class_counts", "margins", "class_weights", "drw_active"}
    feats = feats.requires_grad_()
    cos = torch.nn.functional.normalize(feats, dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).t()
    ref = _ldam_ref(cos, y, [5, 4, 3, 2, 1], 0.5, 30.0)
    value = loss(logits, feats, y)
    assert abs(value.item() - ref.item()) < ATOL
    gw1 = torch.autograd.grad(value, head.weight, retain_graph=True)[0]
    gw2 = torch.autograd.grad(ref, head.weight)[0]
    torch.testing.assert_close(gw1, gw2, rtol=0, atol=ATOL)  # the head's weight is trained through the loss
    # the NormedLinear route gives the same loss with s passed explicitly
    normed = NormedLinear(3, 5).double()
    with torch.no_grad():
        normed.weight.copy_(head.weight)
    via_head = LDAMLoss(5, class_counts=[5, 4, 3, 2, 1], s=30.0).double()(normed(feats), feats, y)
    assert abs(via_head.item() - ref.item()) < ATOL


def test_cdb_weights_formula_and_dynamic_tau():
    acc = torch.tensor([0.9, 0.5, 0.2, 1.0])
    d = 1 - acc.double()
    tau = 1 / (1 + math.exp(-((1 - d.min()) / (1 - d.max() + 0.01)).item()))
    w = d.clamp_min(1e-3) ** tau
    torch.testing.assert_close(cdb_weights(acc, "dynamic"), w / w.sum() * 4, rtol=0, atol=1e-12)
    w2 = d.clamp_min(1e-3) ** 2.0
    torch.testing.assert_close(cdb_weights(acc, 2.0), w2 / w2.sum() * 4, rtol=0, atol=1e-12)
    torch.testing.assert_close(cdb_weights(torch.ones(3), 1.5), torch.ones(3, dtype=torch.float64))


def test_cdb_running_accuracy_and_loss():
    K = 3
    loss = CDBLoss(K, tau=1.0).double()
    # epoch 0: class 0 always right, class 1 right half the time, class 2 never
    logits = torch.tensor(
        [[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0]], dtype=torch.float64
    )
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    loss(logits, None, y)
    torch.testing.assert_close(loss.class_weights, torch.ones(K, dtype=torch.float64))  # nothing known yet
    loss.on_epoch_start(1)
    torch.testing.assert_close(loss.class_accuracy, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    w = torch.tensor([1e-3, 0.5, 1.0], dtype=torch.float64)
    w = w / w.sum() * K
    torch.testing.assert_close(loss.class_weights, w, rtol=0, atol=1e-12)
    # eval mode does not count hits; classes absent from an epoch keep their accuracy
    loss.eval()
    z, feats, yy = _batch(5, K=3)
    ce = -_log_softmax(z).gather(1, yy[:, None]).squeeze(1)
    _check(loss(z, feats, yy), (w[yy] * ce).mean(), z)
    loss.train()
    loss(torch.tensor([[0, 0, 5.0]], dtype=torch.float64), None, torch.tensor([2]))
    loss.on_epoch_start(2)
    torch.testing.assert_close(loss.class_accuracy, torch.tensor([1.0, 0.5, 1.0], dtype=torch.float64))
    loss.set_class_accuracy([0.2, 0.4, 0.6])
    w = torch.tensor([0.8, 0.6, 0.4], dtype=torch.float64)
    torch.testing.assert_close(loss.class_weights, w / w.sum() * K, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_shares_the_interface(name):
    logits, feats, y = _batch(6)
    kwargs = {"class_counts": [9, 8, 7, 6, 5]} if name == "ldam" else {}
    loss = make_loss(name, 5, **kwargs).double()
    value = loss(logits, feats, y)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None
    loss.on_epoch_start(0)
    assert "loss" in loss.last and abs(loss.last["loss"].item() - value.item()) < ATOL
    clone = make_loss(name, 5, **kwargs).double()
    clone.load_state_dict(loss.state_dict())


def test_normed_linear_starts_every_class_weight_at_norm_one():
    """LDAM's head as its authors initialise it: uniform(-1, 1) entries, each class row at norm 1."""
    torch.manual_seed(0)
    head = NormedLinear(64, 10)
    norms = head.weight.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(10), rtol=0, atol=1e-6)
    # the same draw as the authors' recipe: uniform(-1, 1) entries, rows rescaled to norm 1
    torch.manual_seed(0)
    raw = torch.empty(10, 64).uniform_(-1.0, 1.0)
    torch.testing.assert_close(head.weight.detach(), raw / raw.norm(dim=1, keepdim=True))
