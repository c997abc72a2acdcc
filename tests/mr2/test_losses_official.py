"""``make_loss("mr2-official", K)`` against a naive re-implementation of the released code's behaviour.

The reference below is written from the behaviour of ``MRFLoss`` in github.com/BeierZhu/MR2
(``MRF-Imagenet/src/mrf_loss.py`` as the ImageNet fine-tuning script builds it, ``MRFLoss()``), in
float64 with Python loops over all its slots: 1000 slots whatever K is, L5 statistics, an EMA that
starts at a slot's first observation (its EMA is 0 or NaN), gamma = S a^(1/3) / sum a^(1/3) over every
slot, logits / gamma[y], sbar = the mean of the spread EMA over every slot (zeros included), and the
representation term with exp taken directly and the factor d / (10 S). It is our own transcription
of that behaviour, not the released code.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mr2.losses import OFFICIAL_DEFAULTS, OFFICIAL_FIXED, make_loss

ATOL = 1e-10  # float64, loss and gradients
N_SLOTS = 1000  # the released ImageNet script's MRFLoss() default


class ReleasedBehaviour:
    """The released code's loss, slot by slot (module docstring)."""

    def __init__(self, slots, *, ema_decay, rep_target, lambda_rep=0.1, p=5.0):
        self.S, self.decay, self.rep_target, self.lam, self.p = slots, ema_decay, rep_target, lambda_rep, p
        self.mean_norm = [0.0] * slots
        self.variance = [0.0] * slots

    def lp_sq(self, v):
        return sum(abs(float(x)) ** self.p for x in v) ** (2.0 / self.p)

    def update(self, h, y):
        h = h.detach()
        for c in range(self.S):
            rows = [i for i in range(len(y)) if int(y[i]) == c]
            if not rows:
                continue
            mu = h[rows].mean(dim=0)
            mn = self.lp_sq(mu)
            var = sum(self.lp_sq(h[i] - mu) for i in rows) / len(rows)
            if self.mean_norm[c] == 0 or math.isnan(self.mean_norm[c]):
                self.mean_norm[c], self.variance[c] = mn, var
            else:
                self.mean_norm[c] = self.decay * self.mean_norm[c] + (1 - self.decay) * mn
                self.variance[c] = self.decay * self.variance[c] + (1 - self.decay) * var

    def gamma(self):
        t = [(self.mean_norm[c] + self.variance[c]) ** (1.0 / 3.0) for c in range(self.S)]
        return [self.S * v / sum(t) for v in t]

    def __call__(self, logits, h, y):
        self.update(h, y)
        gamma = self.gamma()
        scaled = torch.stack([logits[i] / gamma[int(y[i])] for i in range(len(y))])
        ce = F.cross_entropy(scaled, y)
        sbar = sum(self.variance) / self.S if self.rep_target == "mean" else 0.0
        d = h.shape[1]
        rep = 0.0
        for c in range(self.S):
            rows = [i for i in range(len(y)) if int(y[i]) == c]
            if len(rows) < 2:
                continue
            anchors = []
            for i in rows:
                terms = [
                    torch.exp((((h[i] - h[j]) ** 2).sum() - 2 * sbar) / (10 * d)) for j in rows if j != i
                ]
                anchors.append(torch.log1p(sum(terms)))
            rep = rep + sum(anchors) / len(rows)
        rep = rep * d / 10 / self.S
        return ce + self.lam * rep


def _batches(K, d, seed):
    """Four float64 batches: the first lacks class K - 1, the third lacks classes 0 and 2."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for B, absent in ((12, (K - 1,)), (10, ()), (9, (0, 2)), (14, ())):
        allowed = torch.tensor([k for k in range(K) if k not in absent])
        y = allowed[torch.randint(len(allowed), (B,), generator=gen)]
        scale = 0.5 + torch.rand(K, generator=gen, dtype=torch.float64)
        h = 3.0 * scale[y, None] * torch.randn(B, d, generator=gen, dtype=torch.float64) + 1.0
        out.append((20.0 * torch.randn(B, K, generator=gen, dtype=torch.float64), h, y))
    return out


def _compare(loss, ref, batches, K):
    for step, (logits, h, y) in enumerate(batches):
        z1, h1 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        z2, h2 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        ours, want = loss(z1, h1, y), ref(z2, h2, y)
        assert abs(ours.item() - want.item()) < ATOL, f"step {step}: {ours.item()} vs {want.item()}"
        ours.backward()
        want.backward()
        torch.testing.assert_close(z1.grad, z2.grad, rtol=0, atol=ATOL, msg=f"step {step}: logits grad")
        torch.testing.assert_close(h1.grad, h2.grad, rtol=0, atol=ATOL, msg=f"step {step}: features grad")
        gamma = torch.tensor(ref.gamma()[:K], dtype=torch.float64)
        torch.testing.assert_close(loss.last["margins"], gamma, rtol=1e-12, atol=0, msg=f"step {step}: gamma")


@pytest.mark.parametrize("layout", ["compact", "dense"])
def test_official_equals_released_behaviour_with_1000_slots(layout):
    K, d = 6, 4
    loss = make_loss("mr2-official", K, layout=layout).double()
    assert loss.stat_slots == N_SLOTS and loss.norm_p == 5.0 and loss.ema_decay == 0.999
    ref = ReleasedBehaviour(N_SLOTS, ema_decay=0.999, rep_target="mean")
    _compare(loss, ref, _batches(K, d, seed=3), K)
    # every class seen: the K real margins carry the whole budget of 1000 slots, a mean of 1000 / K
    assert abs(float(loss.last["margins"].sum()) - N_SLOTS) < 1e-9
    assert float(loss.last["margin_min"]) > 50.0  # a temperature of ~167 at K = 6, not a class margin


@pytest.mark.parametrize("layout", ["compact", "dense"])
def test_official_cifar_family_option(layout):
    """The CIFAR script: K slots, EMA 0.9, representation target 0 (its undefined self.c left out)."""
    K, d = 5, 3
    loss = make_loss("mr2-official", K, stat_slots=K, ema_decay=0.9, rep_target="zero", layout=layout)
    loss = loss.double()
    assert loss.stat_slots == K and loss.ema_decay == 0.9 and loss.rep_target == "zero"
    ref = ReleasedBehaviour(K, ema_decay=0.9, rep_target="zero")
    _compare(loss, ref, _batches(K, d, seed=5), K)  # asserts equality step by step
    # K slots for K classes: once every class is seen the margins have mean 1, not a temperature
    assert abs(float(loss.last["margins"].sum()) - K) < 1e-9


def test_official_fixed_and_default_options():
    assert make_loss("mr2-official", 10).rep_target == OFFICIAL_DEFAULTS["rep_target"]
    for key, value in OFFICIAL_FIXED.items():
        with pytest.raises(ValueError, match=rf"^{key}=.*an option of loss 'mr2-official'"):
            make_loss("mr2-official", 10, **{key: value})
    with pytest.raises(ValueError, match=r"^stat_slots=1000: expected an integer >= num_classes = 2000"):
        make_loss("mr2-official", 2000)
    assert make_loss("mr2-official", 2000, stat_slots=2000).slots == 2000


def test_never_seen_class_in_eval_is_finite_and_has_no_gradient():
    """A class never trained on has gamma = 0 (the released code divides by it): its samples give
    log K and no gradient instead of NaN."""
    K = 4
    loss = make_loss("mr2-official", K).double()
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, K, generator=gen, dtype=torch.float64)
    loss(
        logits, torch.randn(8, 3, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    )
    assert float(loss.last["margins"][3]) == 0.0
    loss.eval()
    z = torch.randn(2, K, generator=gen, dtype=torch.float64, requires_grad=True)
    value = loss(z, torch.randn(2, 3, generator=gen, dtype=torch.float64), torch.tensor([3, 3]))
    assert torch.isfinite(value)
    assert abs(float(loss.last["ce"]) - math.log(K)) < 1e-12
    value.backward()
    assert float(z.grad.abs().max()) == 0.0


def test_statistics_follow_the_features_argument_not_the_head_input():
    """The released ImageNet code takes its statistics on the raw backbone features while the head
    normalises its input: the loss uses whatever ``features`` it is given."""
    K, d = 3, 4
    gen = torch.Generator().manual_seed(1)
    raw = 5.0 * torch.randn(9, d, generator=gen, dtype=torch.float64)
    y = torch.arange(9) % K
    head = torch.nn.Linear(d, K).double()
    logits = head(raw / raw.norm(dim=1, keepdim=True))
    on_raw, on_normed = make_loss("mr2-official", K).double(), make_loss("mr2-official", K).double()
    on_raw(logits, raw, y)
    on_normed(logits, raw / raw.norm(dim=1, keepdim=True), y)
    ref = ReleasedBehaviour(N_SLOTS, ema_decay=0.999, rep_target="mean")
    ref.update(raw, y)
    torch.testing.assert_close(on_raw.spread_ema, torch.tensor(ref.variance[:K], dtype=torch.float64))
    assert not torch.allclose(on_raw.spread_ema, on_normed.spread_ema)
