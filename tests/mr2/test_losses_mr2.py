"""MR2Loss against a naive per-class, per-sample implementation of its definition, in float64.

The reference below is written from the definition (docs/losses.md), with Python loops
over classes and samples, independently of the vectorised code (it does not call
``theory.optimal_margins`` either, so it also checks that the margin rule is wired in correctly).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mr2.losses import MR2Loss, make_loss
from mr2.losses.layout import batch_layout, same_class_pairs
from mr2.losses.reference import LoopMR2Loss
from mr2.losses.representation import representation_margin, representation_margin_masked

ATOL = 1e-10  # float64: loss and gradients of the vectorised loss against the naive reference
N_STEPS = 4  # training steps compared per configuration (the EMA state carries over)
SPREAD_FLOOR = 1e-7  # as documented in docs/losses.md


class NaiveMR2:
    """Per-class loops over Python floats and per-sample tensors: slow, obviously the definition."""

    def __init__(
        self, K, *, lambda_rep, ema_decay, norm_p, margin_form, mean_margin, rep_target, rep_temperature
    ):
        self.K, self.lam, self.decay, self.p = K, lambda_rep, ema_decay, norm_p
        self.form, self.cbar, self.rep_target, self.T = margin_form, mean_margin, rep_target, rep_temperature
        self.mean_norm = [0.0] * K
        self.spread = [0.0] * K
        self.seen = [0] * K

    def norm_sq(self, v):
        return float(sum(abs(float(x)) ** self.p for x in v) ** (2.0 / self.p))

    def update(self, h, y):
        for k in range(self.K):
            rows = [i for i in range(len(y)) if int(y[i]) == k]
            if not rows:
                continue
            f = h[rows].detach()
            mu = f.mean(dim=0)
            mn = self.norm_sq(mu)
            sp = sum(self.norm_sq(f[r] - mu) for r in range(len(rows))) / len(rows)
            if self.seen[k] == 0:
                self.mean_norm[k], self.spread[k] = mn, sp
            else:
                self.mean_norm[k] = self.decay * self.mean_norm[k] + (1 - self.decay) * mn
                self.spread[k] = self.decay * self.spread[k] + (1 - self.decay) * sp
            self.seen[k] += 1

    def margins(self):
        seen = [k for k in range(self.K) if self.seen[k]]
        a = [self.mean_norm[k] + self.spread[k] for k in range(self.K)]
        fill = sum(a[k] for k in seen) / len(seen) if seen else 0.0
        a = [a[k] if self.seen[k] else fill for k in range(self.K)]
        top = max(a)
        if top == 0:
            return [self.cbar] * self.K
        a = [max(v, SPREAD_FLOOR * top) for v in a]
        cube = [v ** (1 / 3) for v in a]
        return [self.K * self.cbar * c / sum(cube) for c in cube]

    def __call__(self, logits, h, y, *, train=True):
        if train:
            self.update(h, y)
        gamma = self.margins()
        B, d = h.shape
        ce = 0.0
        for i in range(B):
            g = gamma[int(y[i])]
            if self.form == "temperature":
                s = logits[i] / g
            else:
                s = logits[i] - g * torch.nn.functional.one_hot(y[i], self.K).to(logits.dtype)
            ce = ce - torch.log_softmax(s, dim=0)[y[i]]
        ce = ce / B
        seen = [k for k in range(self.K) if self.seen[k]]
        sbar = sum(self.spread[k] for k in seen) / len(seen) if seen else 0.0
        target = 2 * sbar if self.rep_target == "mean" else 0.0
        T = self.T if self.T is not None else 10.0 * d
        rep = 0.0
        for k in range(self.K):
            rows = [i for i in range(B) if int(y[i]) == k]
            if len(rows) < 2:
                continue
            per_anchor = []
            for i in rows:
                terms = [torch.exp((((h[i] - h[j]) ** 2).sum() - target) / T) for j in rows if j != i]
                per_anchor.append(torch.log(1 + sum(terms)))
            rep = rep + sum(per_anchor) / len(rows)
        rep = rep * d / 10.0 / self.K
        return ce + self.lam * rep


def _batch(gen, B, K, d, *, absent=(), scale=1.0):
    """A float64 batch whose labels avoid the classes in ``absent`` and include a singleton."""
    allowed = torch.tensor([k for k in range(K) if k not in absent])
    y = allowed[torch.randint(len(allowed), (B,), generator=gen)]
    logits = 2.0 * torch.randn(B, K, generator=gen, dtype=torch.float64)
    h = scale * (torch.randn(B, d, generator=gen, dtype=torch.float64) + 0.5)
    return logits, h, y


CONFIGS = list(itertools.product([2.0, 5.0], ["temperature", "additive"], ["mean", "zero"]))


@pytest.mark.parametrize("layout", ["compact", "dense"])
@pytest.mark.parametrize(("norm_p", "margin_form", "rep_target"), CONFIGS)
def test_mr2_equals_naive_definition_over_steps(norm_p, margin_form, rep_target, layout):
    """Both layouts (sorted and compacted; fixed shapes for a GPU) equal the definition."""
    K, d = 6, 5
    opts = dict(
        lambda_rep=0.3,
        ema_decay=0.8,
        norm_p=norm_p,
        margin_form=margin_form,
        mean_margin=1.5,
        rep_target=rep_target,
        rep_temperature=None,
    )
    loss = MR2Loss(K, **opts, layout=layout).double()
    naive = NaiveMR2(K, **opts)
    gen = torch.Generator().manual_seed(7)
    # scale 5: distances well above 10 d, so the exponentials are far from 1 (a real test of the LSE)
    batches = [_batch(gen, 14, K, d, absent=(5,), scale=5.0), _batch(gen, 9, K, d, absent=(0, 1))]
    batches += [_batch(gen, 20, K, d), _batch(gen, 3, K, d)]
    for step, (logits, h, y) in enumerate(batches[:N_STEPS]):
        z1, h1 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        z2, h2 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        ours, ref = loss(z1, h1, y), naive(z2, h2, y)
        ours.backward()
        ref.backward()
        assert ours.dtype == torch.float64
        assert abs(ours.item() - ref.item()) < ATOL, f"step {step}: loss {ours.item()} vs naive {ref.item()}"
        torch.testing.assert_close(z1.grad, z2.grad, rtol=0, atol=ATOL, msg=f"step {step}: logits grad")
        torch.testing.assert_close(h1.grad, h2.grad, rtol=0, atol=ATOL, msg=f"step {step}: features grad")
        torch.testing.assert_close(
            loss.last["margins"], torch.tensor(naive.margins(), dtype=torch.float64), rtol=0, atol=ATOL
        )
    # eval mode: no update, same definition
    loss.eval()
    logits, h, y = _batch(gen, 10, K, d)
    assert abs(float(loss(logits, h, y)) - float(naive(logits, h, y, train=False))) < ATOL


def test_mr2_rep_temperature_and_large_distances_do_not_overflow():
    K, d = 3, 4
    opts = dict(lambda_rep=1.0, ema_decay=0.5, norm_p=2.0, margin_form="temperature", mean_margin=1.0)
    loss = MR2Loss(K, **opts, rep_target="zero", rep_temperature=0.5).double()
    naive = NaiveMR2(K, **opts, rep_target="zero", rep_temperature=0.5)
    gen = torch.Generator().manual_seed(3)
    logits, h, y = _batch(gen, 12, K, d, scale=3.0)
    ours, ref = loss(logits, h, y), naive(logits, h, y)
    assert math.isfinite(ref.item())
    assert abs(ours.item() - ref.item()) < ATOL * max(1.0, abs(ref.item()))
    # distances ~1e6 at T = 0.5: exp would overflow in the naive formula; the LSE form stays finite
    far = h * 1e3
    value = MR2Loss(K, rep_temperature=0.5, rep_target="zero", lambda_rep=1.0)(logits.float(), far.float(), y)
    assert torch.isfinite(value)


def _rep(route, h, y, K, **kw):
    if route == "masked":  # the fixed-shape (B, B) route of layout="dense"
        return representation_margin_masked(h, y, **kw)
    return representation_margin(h, y, K, dense=route == "gram", **kw)


@pytest.mark.parametrize("route", ["pairs", "gram", "masked"])
def test_representation_routes_and_single_sample_classes(route):
    """Every distance route equals the per-class definition; singleton classes add exactly 0."""
    gen = torch.Generator().manual_seed(11)
    h = torch.randn(9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4])  # classes 1 and 3 are singletons, 5 is absent
    K = 6
    kw = {"target": 1.2, "temperature": 0.7, "scale": 0.9}
    ours = _rep(route, h, y, K, **kw)
    ref = 0.0
    for k in range(K):
        rows = (y == k).nonzero().flatten().tolist()
        for i in rows:
            terms = [torch.exp((((h[i] - h[j]) ** 2).sum() - 1.2) / 0.7) for j in rows if j != i]
            ref = ref + torch.log(1 + sum(terms, h.new_zeros(()))) / len(rows)
    ref = 0.9 * ref
    assert abs(ours.item() - ref.item()) < ATOL
    assert torch.autograd.gradcheck(lambda x: _rep(route, x, y, K, **kw), (h,))
    # removing the singletons changes nothing
    keep = torch.tensor([0, 1, 2, 4, 5, 7, 8])
    sub = _rep(route, h[keep], y[keep], K, **kw)
    assert abs(sub.item() - ours.item()) < ATOL
    # no pair at all (every class a singleton): exactly 0, and a zero gradient
    alone = _rep(route, h[:3], torch.tensor([0, 1, 2]), K, **kw)
    assert alone.item() == 0.0


def test_same_class_pairs_lists_each_pair_once():
    gen = torch.Generator().manual_seed(5)
    for K in (1_000, 7, 2):
        y = torch.randint(K, (64,), generator=gen)
        first, second = same_class_pairs(batch_layout(y))
        got = {tuple(sorted(p)) for p in zip(first.tolist(), second.tolist(), strict=True)}
        want = {(i, j) for i in range(64) for j in range(i + 1, 64) if y[i] == y[j]}
        assert got == want
        assert len(got) == first.numel()  # no duplicates


@pytest.mark.parametrize("form", ["temperature", "additive"])
def test_gradcheck_both_forms(form):
    gen = torch.Generator().manual_seed(2)
    loss = MR2Loss(3, norm_p=5.0, margin_form=form, lambda_rep=0.5, rep_temperature=2.0).double()
    logits, h, y = _batch(gen, 7, 3, 2)
    loss(logits, h, y)  # one training step sets the statistics; eval freezes them
    loss.eval()
    assert torch.autograd.gradcheck(lambda z, f: loss(z, f, y), (logits.requires_grad_(), h.requires_grad_()))


def test_ema_first_observation_absent_classes_and_eval_mode():
    K = 5
    loss = MR2Loss(K, ema_decay=0.9, norm_p=2.0).double()
    h = torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 2])
    logits = torch.zeros(3, K, dtype=torch.float64)
    loss(logits, h, y)
    # first observation initialises: class 0 has mu = (2, 0, 0), deviations 1 and 1
    assert loss.mean_norm_ema[0] == 4.0 and loss.spread_ema[0] == 1.0
    assert loss.mean_norm_ema[2] == 4.0 and loss.spread_ema[2] == 0.0
    assert loss.observations.tolist() == [1, 0, 1, 0, 0]
    # absent classes untouched (still never seen), present ones blended with decay 0.9
    h2 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    loss(logits[:2], h2, torch.tensor([0, 0]))
    assert abs(float(loss.mean_norm_ema[0]) - (0.9 * 4.0 + 0.1 * 4.0)) < ATOL
    assert abs(float(loss.spread_ema[0]) - (0.9 * 1.0 + 0.1 * 1.0)) < ATOL
    assert loss.mean_norm_ema[2] == 4.0 and loss.observations.tolist() == [2, 0, 1, 0, 0]
    assert float(loss.mean_norm_ema[[1, 3, 4]].abs().sum()) == 0.0
    # eval mode never updates
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    loss.eval()
    loss(torch.zeros(2, K, dtype=torch.float64), 10 * h2, torch.tensor([1, 3]))
    for k, v in loss.state_dict().items():
        assert torch.equal(v, before[k]), k
    # never-seen classes take the mean spread of the seen ones: margins sum to K * cbar
    gamma = loss.margins()
    assert abs(float(gamma.sum()) - K) < ATOL
    assert abs(float(gamma[1]) - float(gamma[3])) < ATOL


def test_margins_before_any_observation_are_uniform():
    loss = MR2Loss(4, mean_margin=2.0)
    loss.eval()
    torch.testing.assert_close(loss.margins(), torch.full((4,), 2.0))
    value = loss(torch.randn(3, 4), torch.randn(3, 2), torch.tensor([0, 1, 1]))
    assert torch.isfinite(value)


def test_margins_come_from_theory_and_grow_with_spread():
    from theory import optimal_margins

    loss = MR2Loss(3, ema_decay=0.0)
    h = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0], [0.0, -5.0], [3.0, 3.0], [3.0, 3.0]])
    loss(torch.zeros(6, 3), h, torch.tensor([0, 0, 1, 1, 2, 2]))
    a = loss.mean_norm_ema + loss.spread_ema
    torch.testing.assert_close(loss.margins(), optimal_margins(a.double()).float())
    g = loss.margins()
    assert g[1] > g[2] > g[0]  # a = (1, 25, 18)


def test_state_dict_round_trip_resumes_exactly():
    gen = torch.Generator().manual_seed(4)
    batches = [_batch(gen, 12, 5, 3) for _ in range(4)]
    a = MR2Loss(5, ema_decay=0.7, norm_p=5.0)
    for logits, h, y in batches[:2]:
        a(logits.float(), h.float(), y)
    b = MR2Loss(5, ema_decay=0.7, norm_p=5.0)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"mean_norm_ema", "spread_ema", "observations"}
    for logits, h, y in batches[2:]:
        assert torch.equal(a(logits.float(), h.float(), y), b(logits.float(), h.float(), y))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_autocast_bf16_keeps_float32_statistics():
    gen = torch.Generator().manual_seed(8)
    head = torch.nn.Linear(6, 4)
    h = torch.randn(16, 6, generator=gen)
    y = torch.randint(4, (16,), generator=gen)
    plain = MR2Loss(4, norm_p=5.0)
    amp = MR2Loss(4, norm_p=5.0)
    ref = plain(head(h), h, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(h)
        feats = h.to(torch.bfloat16).requires_grad_()
        assert logits.dtype == torch.bfloat16
        value = amp(logits, feats, y)
    assert value.dtype == torch.float32
    assert amp.mean_norm_ema.dtype == torch.float32 and amp.spread_ema.dtype == torch.float32
    torch.testing.assert_close(value, ref, rtol=3e-2, atol=3e-2)  # bf16 inputs: ~3 significant digits
    torch.testing.assert_close(amp.spread_ema, plain.spread_ema, rtol=3e-2, atol=3e-2)
    value.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad.float()).all()
    # float32 inputs inside an autocast region compute exactly what they compute outside it
    logits32 = head(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = MR2Loss(4, norm_p=5.0)(logits32, h, y)
    torch.testing.assert_close(inside, MR2Loss(4, norm_p=5.0)(logits32, h, y), rtol=0, atol=0)


def test_batch_of_one_and_one_class_present():
    loss = MR2Loss(3)
    v = loss(torch.randn(1, 3), torch.randn(1, 4), torch.tensor([2]))
    assert torch.isfinite(v) and float(loss.last["rep"]) == 0.0
    v = loss(torch.randn(5, 3), torch.randn(5, 4), torch.full((5,), 1))
    assert torch.isfinite(v) and float(loss.last["rep"]) > 0.0


def test_last_holds_components():
    gen = torch.Generator().manual_seed(1)
    logits, h, y = _batch(gen, 12, 4, 3)
    loss = MR2Loss(4, lambda_rep=0.25).double()
    total = loss(logits, h, y)
    last = loss.last
    assert set(last) >= {"loss", "ce", "rep", "margins", "sbar"}
    assert abs(float(last["ce"] + 0.25 * last["rep"] - total)) < ATOL
    assert last["margins"].shape == (4,) and not last["margins"].requires_grad


def test_ablations():
    gen = torch.Generator().manual_seed(6)
    logits, h, y = _batch(gen, 16, 4, 3)
    full = make_loss("mr2", 4, lambda_rep=0.2).double()
    logit_only = make_loss("mr2-logit", 4).double()
    rep_only = make_loss("mr2-rep", 4, lambda_rep=0.2).double()
    f = full(logits, h, y)
    lo = logit_only(logits, h, y)
    ro = rep_only(logits, h, y)
    assert abs(lo.item() - float(full.last["ce"])) < ATOL and float(logit_only.last["rep"]) == 0.0
    plain_ce = torch.nn.functional.cross_entropy(logits, y)
    assert abs(ro.item() - (plain_ce + 0.2 * full.last["rep"]).item()) < ATOL
    assert abs(f.item() - float(full.last["ce"] + 0.2 * full.last["rep"])) < ATOL


def test_loop_reference_used_by_the_benchmark_agrees():
    gen = torch.Generator().manual_seed(9)
    opts = dict(norm_p=5.0, ema_decay=0.9, margin_form="temperature", rep_target="mean")
    vec, loop = MR2Loss(7, **opts).double(), LoopMR2Loss(7, **opts).double()
    for B in (20, 5, 30):
        logits, h, y = _batch(gen, B, 7, 4)
        z1, h1 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        z2, h2 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        a, b = vec(z1, h1, y), loop(z2, h2, y)
        a.backward()
        b.backward()
        assert abs(a.item() - b.item()) < ATOL
        torch.testing.assert_close(h1.grad, h2.grad, rtol=0, atol=ATOL)


def test_lazy_export_from_package():
    import mr2

    assert mr2.MR2Loss is MR2Loss
    assert "mr2-rep" in mr2.LOSS_NAMES


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 2.5, 12.0])
def test_sq_norm_matches_vector_norm(p):
    from mr2.losses.class_stats import sq_norm

    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = torch.linalg.vector_norm(x, ord=p, dim=-1) ** 2
    kept = x.clone()
    torch.testing.assert_close(sq_norm(x, p), ref, rtol=1e-12, atol=0)
    assert torch.equal(x, kept)  # not in place unless asked
    torch.testing.assert_close(sq_norm(x.clone(), p, inplace=True), ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("fused_max", [0, 10_000])  # the hand-written route, the fused one
@pytest.mark.parametrize("K", [7, 300])
def test_margin_cross_entropy_routes_equal_the_formula(monkeypatch, fused_max, K):
    from mr2.losses import margin_ce

    monkeypatch.setattr(margin_ce, "FUSED_MAX_CLASSES_CPU", fused_max)
    gen = torch.Generator().manual_seed(4)
    z = 3.0 * torch.randn(13, K, generator=gen, dtype=torch.float64)
    y = torch.randint(K, (13,), generator=gen)
    r = 0.2 + torch.rand(13, generator=gen, dtype=torch.float64)
    m = torch.rand(13, generator=gen, dtype=torch.float64)
    for scale, shift in ((r, None), (None, m), (r, m)):
        z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
        ours = margin_ce.margin_cross_entropy(z1, y, scale=scale, shift=shift)
        s = z2 * (1.0 if scale is None else scale[:, None])
        if shift is not None:
            s = s - shift[:, None] * torch.nn.functional.one_hot(y, K)
        ref = -torch.log_softmax(s, dim=1).gather(1, y[:, None]).mean()
        ours.backward()
        ref.backward()
        assert abs(ours.item() - ref.item()) < ATOL
        torch.testing.assert_close(z1.grad, z2.grad, rtol=0, atol=ATOL)
