"""MR2Loss's statistic variants against a naive per-class loop over Python floats, in float64.

The reference keeps its own EMAs (scalars and class-mean vectors as lists of floats), computes each
statistic with plain loops, fills the never-seen classes, floors, and applies the margin rule by hand
(it does not call ``theory.optimal_margins``), then the loss with a per-sample loop. Several batches,
one of which lacks a class, are compared step by step: statistic, margins, loss, gradients.
"""

from __future__ import annotations

import math

import pytest
import torch

from mr2.losses import MR2Loss
from mr2.losses.margin_statistics import DISTANCE_FLOOR, STATISTICS, derangement

ATOL = 1e-10  # float64: vectorised against the loops
SPREAD_FLOOR = 1e-7  # as documented in docs/losses.md


class NaiveStatisticMR2:
    def __init__(self, K, d, *, statistic, exponent, norm_p, ema_decay, lambda_rep, perm=None):
        self.K, self.d, self.stat, self.e, self.p = K, d, statistic, exponent, norm_p
        self.decay, self.lam, self.perm = ema_decay, lambda_rep, perm
        self.mean_norm = [0.0] * K
        self.spread = [0.0] * K
        self.means = [[0.0] * d for _ in range(K)]
        self.seen = [0] * K
        # "oracle": V[k][j], the EMA'd variance of class k projected on the line from m_k to m_j
        self.pvar = [[0.0] * K for _ in range(K)]
        self.pseen = [[0] * K for _ in range(K)]

    def norm_sq(self, v):
        return sum(abs(float(x)) ** self.p for x in v) ** (2.0 / self.p)

    def update(self, h, y):
        h = h.detach()
        for k in range(self.K):
            rows = [i for i in range(len(y)) if int(y[i]) == k]
            if not rows:
                continue
            mu = [sum(float(h[i, j]) for i in rows) / len(rows) for j in range(self.d)]
            mn = self.norm_sq(mu)
            sp = sum(self.norm_sq([float(h[i, j]) - mu[j] for j in range(self.d)]) for i in rows) / len(rows)
            w = 1.0 if self.seen[k] == 0 else 1.0 - self.decay
            self.mean_norm[k] += w * (mn - self.mean_norm[k])
            self.spread[k] += w * (sp - self.spread[k])
            self.means[k] = [m + w * (v - m) for m, v in zip(self.means[k], mu, strict=True)]
            self.seen[k] += 1
        # projected variances, on the directions of the class-mean EMAs after this batch's update
        for k in range(self.K):
            rows = [i for i in range(len(y)) if int(y[i]) == k]
            if not rows:
                continue
            mu = [sum(float(h[i, c]) for i in rows) / len(rows) for c in range(self.d)]
            for j in range(self.K):
                if j == k or not self.seen[j]:
                    continue
                diff = [b - a for a, b in zip(self.means[k], self.means[j], strict=True)]
                dist = math.sqrt(sum(x * x for x in diff))
                if dist == 0:
                    continue
                proj = [sum((float(h[i, c]) - mu[c]) * diff[c] / dist for c in range(self.d)) for i in rows]
                var = sum(x * x for x in proj) / len(rows)
                if var <= 0:
                    continue  # a class alone in the batch carries no variance
                w = 1.0 if self.pseen[k][j] == 0 else 1.0 - self.decay
                self.pvar[k][j] += w * (var - self.pvar[k][j])
                self.pseen[k][j] += 1

    def statistic(self):
        K, seen = self.K, [k for k in range(self.K) if self.seen[k]]
        raw = [0.0] * K
        for k in seen:
            if self.stat in ("second_moment", "shuffled"):
                raw[k] = self.mean_norm[k] + self.spread[k]
            elif self.stat == "spread":
                raw[k] = self.spread[k]
            elif self.stat == "centred":
                bar = [sum(self.means[j][i] for j in seen) / len(seen) for i in range(self.d)]
                raw[k] = (
                    self.norm_sq([m - b for m, b in zip(self.means[k], bar, strict=True)]) + self.spread[k]
                )
        if self.stat == "oracle":
            for k in seen:
                rivals = [j for j in seen if j != k]
                if not rivals:
                    raw[k] = 0.5
                    continue
                j = min(
                    rivals,
                    key=lambda j: sum(
                        (a - b) ** 2 for a, b in zip(self.means[k], self.means[j], strict=True)
                    ),
                )
                if not (self.pseen[k][j] and self.pseen[j][k]):
                    raw[k] = 0.5
                    continue
                s_k, s_j = math.sqrt(self.pvar[k][j]), math.sqrt(self.pvar[j][k])
                raw[k] = s_k / (s_k + s_j) if s_k + s_j > 0 else 0.5
        if self.stat == "separation":
            nearest = {}
            for k in seen:
                dists = [
                    self.norm_sq([a - b for a, b in zip(self.means[k], self.means[j], strict=True)])
                    for j in seen
                    if j != k
                ]
                if dists:
                    nearest[k] = min(dists)
            top = max(nearest.values(), default=0.0)
            for k in seen:
                den = max(nearest[k], DISTANCE_FLOOR * top) if (k in nearest and top > 0) else 1.0
                raw[k] = self.spread[k] / den
        fill = sum(raw[k] for k in seen) / len(seen) if seen else 0.0
        a = [raw[k] if self.seen[k] else fill for k in range(K)]
        if self.stat == "shuffled":
            a = [a[int(self.perm[k])] for k in range(K)]
        return a

    def margins(self):
        a = self.statistic()
        top = max(a)
        if top == 0:
            return [1.0] * self.K
        t = [max(v, SPREAD_FLOOR * top) ** self.e for v in a]
        return [self.K * v / sum(t) for v in t]

    def __call__(self, logits, h, y, *, train=True):
        if train:
            self.update(h, y)
        gamma = self.margins()
        B = len(y)
        ce = sum(-torch.log_softmax(logits[i] / gamma[int(y[i])], dim=0)[y[i]] for i in range(B)) / B
        seen = [k for k in range(self.K) if self.seen[k]]
        sbar = sum(self.spread[k] for k in seen) / len(seen) if seen else 0.0
        T = 10.0 * self.d
        rep = 0.0
        for k in range(self.K):
            rows = [i for i in range(B) if int(y[i]) == k]
            if len(rows) < 2:
                continue
            per_anchor = [
                torch.log(
                    1 + sum(torch.exp((((h[i] - h[j]) ** 2).sum() - 2 * sbar) / T) for j in rows if j != i)
                )
                for i in rows
            ]
            rep = rep + sum(per_anchor) / len(rows)
        return ce + self.lam * rep * self.d / 10.0 / self.K


def _batches(K, d, seed):
    """Four float64 batches; the first lacks class K - 1, the second lacks classes 0 and 1."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    # class-dependent offsets, so that the class means differ (separation, centred)
    offsets = 2.0 * torch.randn(K, d, generator=gen, dtype=torch.float64)
    for B, absent in ((13, (K - 1,)), (9, (0, 1)), (16, ()), (11, ())):
        allowed = torch.tensor([k for k in range(K) if k not in absent])
        y = allowed[torch.randint(len(allowed), (B,), generator=gen)]
        scale = 0.5 + torch.rand(K, generator=gen, dtype=torch.float64)  # classes spread differently
        h = offsets[y] + scale[y, None] * torch.randn(B, d, generator=gen, dtype=torch.float64)
        out.append((2.0 * torch.randn(B, K, generator=gen, dtype=torch.float64), h, y))
    return out


CASES = [(s, 1.0 / 3.0, 2.0) for s in STATISTICS] + [
    ("second_moment", 0.5, 2.0),  # another exponent (p = 1 in the margin rule)
    ("centred", 0.25, 5.0),  # the L5 norm of the official code
    ("separation", 1.0 / 3.0, 5.0),
    ("oracle", 1.0, 2.0),  # the oracle share's own rule: exponent 1
    ("oracle", 1.0, 5.0),  # norm_p does not enter the (Euclidean) oracle statistic
]


@pytest.mark.parametrize("layout", ["compact", "dense"])
@pytest.mark.parametrize(("statistic", "exponent", "norm_p"), CASES)
def test_statistic_equals_naive_loop_over_steps(statistic, exponent, norm_p, layout):
    K, d = 5, 3
    loss = MR2Loss(
        K,
        layout=layout,
        statistic=statistic,
        exponent=exponent,
        norm_p=norm_p,
        ema_decay=0.7,
        lambda_rep=0.3,
        shuffle_seed=4,
    ).double()
    perm = derangement(K, 4)
    naive = NaiveStatisticMR2(
        K, d, statistic=statistic, exponent=exponent, norm_p=norm_p, ema_decay=0.7, lambda_rep=0.3, perm=perm
    )
    assert loss.statistic == statistic
    for step, (logits, h, y) in enumerate(_batches(K, d, seed=11)):
        z1, h1 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        z2, h2 = logits.clone().requires_grad_(), h.clone().requires_grad_()
        ours, ref = loss(z1, h1, y), naive(z2, h2, y)
        a, _ = loss.class_spreads()
        want_a = torch.tensor(naive.statistic(), dtype=torch.float64)
        torch.testing.assert_close(a.double(), want_a, rtol=1e-12, atol=0, msg=f"step {step}: statistic")
        want_g = torch.tensor(naive.margins(), dtype=torch.float64)
        torch.testing.assert_close(
            loss.last["margins"], want_g, rtol=0, atol=ATOL, msg=f"step {step}: margins"
        )
        assert torch.equal(loss.last["margin_min"], loss.last["margins"].min())
        assert torch.equal(loss.last["margin_max"], loss.last["margins"].max())
        assert abs(float(loss.last["margin_min"]) - float(want_g.min())) < ATOL
        assert abs(ours.item() - ref.item()) < ATOL, f"step {step}: loss {ours.item()} vs naive {ref.item()}"
        ours.backward()
        ref.backward()
        torch.testing.assert_close(z1.grad, z2.grad, rtol=0, atol=ATOL, msg=f"step {step}: logits grad")
        torch.testing.assert_close(h1.grad, h2.grad, rtol=0, atol=ATOL, msg=f"step {step}: features grad")
    # the margins are not trivially uniform: the statistic matters
    assert float(loss.last["margin_max"] - loss.last["margin_min"]) > 1e-3


def test_statistics_differ_and_second_moment_is_the_default():
    K, d = 5, 3
    batches = _batches(K, d, seed=2)
    margins = {}
    for s in STATISTICS:
        loss = MR2Loss(K, statistic=s, ema_decay=0.7).double()
        for logits, h, y in batches:
            loss(logits, h, y)
        margins[s] = loss.last["margins"]
    default = MR2Loss(K, ema_decay=0.7).double()
    for logits, h, y in batches:
        default(logits, h, y)
    assert default.statistic == "second_moment"
    assert torch.equal(default.last["margins"], margins["second_moment"])
    for s in STATISTICS[1:]:
        assert not torch.allclose(margins[s], margins["second_moment"]), s
    # the placebo keeps the multiset of margins and moves every one to another class
    torch.testing.assert_close(margins["shuffled"].sort().values, margins["second_moment"].sort().values)
    perm = derangement(K, 0)
    torch.testing.assert_close(margins["shuffled"], margins["second_moment"][perm])


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
def test_derangement_has_no_fixed_point_and_is_reproducible(n):
    perm = derangement(n, 7)
    assert sorted(perm.tolist()) == list(range(n))
    assert all(perm[k] != k for k in range(n))
    assert torch.equal(perm, derangement(n, 7))
    if n > 3:
        assert not torch.equal(perm, derangement(n, 8))


def test_separation_edge_cases_stay_finite():
    K = 4
    loss = MR2Loss(K, statistic="separation").double()
    # one class seen: no nearest mean, the statistic falls back to the spread, margins finite
    h = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    loss(torch.zeros(2, K, dtype=torch.float64), h + 10.0, torch.tensor([2, 2]))
    assert torch.isfinite(loss.last["margins"]).all()
    a, _ = loss.class_spreads()
    assert float(a[2]) == float(loss.spread_ema[2]) == 1.0
    # classes 0 and 1 with identical means, class 2 apart: the nearest distance of 0 and 1 is 0 and is
    # floored at DISTANCE_FLOOR * (the largest nearest distance, 10^2 + 10^2 = 200 for class 2)
    loss(torch.zeros(4, K, dtype=torch.float64), torch.cat([h, h]), torch.tensor([0, 0, 1, 1]))
    a, _ = loss.class_spreads()
    assert torch.isfinite(a).all()
    assert math.isclose(float(a[0]), 1.0 / (DISTANCE_FLOOR * 200.0), rel_tol=1e-9)
    assert math.isclose(float(a[2]), 1.0 / 200.0, rel_tol=1e-9)
    torch.testing.assert_close(loss.last["margins"].sum(), torch.tensor(float(K), dtype=torch.float64))


def test_vector_buffer_state_dict_eval_and_width():
    K = 4
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(10, K, generator=gen), torch.randn(10, 3, generator=gen), torch.arange(10) % K)
    ] * 3
    a = MR2Loss(K, statistic="centred", ema_decay=0.5)
    assert a.class_mean_ema.shape == (K, 0)
    a(*batches[0])
    assert a.class_mean_ema.shape == (K, 3) and a.class_mean_ema.dtype == torch.float32
    # a fresh loss loads the (K, d) buffer before it has seen a batch, and resumes exactly
    b = MR2Loss(K, statistic="centred", ema_decay=0.5)
    b.load_state_dict(a.state_dict())
    assert set(b.state_dict()) == {"mean_norm_ema", "spread_ema", "observations", "class_mean_ema"}
    for batch in batches[1:]:
        assert torch.equal(a(*batch), b(*batch))
    assert torch.equal(a.class_mean_ema, b.class_mean_ema)
    # eval(): nothing moves
    before = a.class_mean_ema.clone()
    a.eval()
    a(batches[0][0], 5 * batches[0][1], batches[0][2])
    assert torch.equal(a.class_mean_ema, before)
    a.train()
    with pytest.raises(ValueError, match=r"^features=.*width d = 3"):
        a(torch.randn(2, K), torch.randn(2, 5), torch.tensor([0, 1]))
    # the shuffled placebo adds no state: its permutation follows from (K, shuffle_seed)
    assert set(MR2Loss(K, statistic="shuffled").state_dict()) == {
        "mean_norm_ema",
        "spread_ema",
        "observations",
    }


def test_class_mean_ema_first_observation_and_absent_classes():
    loss = MR2Loss(3, statistic="centred", ema_decay=0.9).double()
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
    loss(torch.zeros(3, 3, dtype=torch.float64), h, torch.tensor([0, 0, 2]))
    torch.testing.assert_close(loss.class_mean_ema[0], torch.tensor([2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(loss.class_mean_ema[2], torch.tensor([5.0, 6.0], dtype=torch.float64))
    assert float(loss.class_mean_ema[1].abs().sum()) == 0.0
    loss(
        torch.zeros(1, 3, dtype=torch.float64),
        torch.tensor([[0.0, 0.0]], dtype=torch.float64),
        torch.tensor([0]),
    )
    torch.testing.assert_close(loss.class_mean_ema[0], torch.tensor([1.8, 2.7], dtype=torch.float64))
    torch.testing.assert_close(loss.class_mean_ema[2], torch.tensor([5.0, 6.0], dtype=torch.float64))
    # centred statistic by hand: m_bar over the seen classes 0 and 2
    m_bar = (loss.class_mean_ema[0] + loss.class_mean_ema[2]) / 2
    a, _ = loss.class_spreads()
    want = ((loss.class_mean_ema[0] - m_bar) ** 2).sum() + loss.spread_ema[0]
    assert math.isclose(float(a[0]), float(want), rel_tol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"statistic": "median"}, "statistic"),
        ({"exponent": 0.0}, "exponent"),
        ({"exponent": 1.5}, "exponent"),
        ({"exponent": float("nan")}, "exponent"),
        ({"shuffle_seed": -1}, "shuffle_seed"),
        ({"shuffle_seed": 1.5}, "shuffle_seed"),
        ({"stat_slots": 3}, "stat_slots"),
        ({"stat_slots": 2.5}, "stat_slots"),
        ({"stat_slots": 100, "statistic": "shuffled"}, "stat_slots"),
    ],
)
def test_options_are_checked(kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}=.*: expected "):
        MR2Loss(10, **kwargs)


RTOL_BF16 = 3e-2  # bfloat16: about 3 significant digits


@pytest.mark.parametrize("statistic", ["second_moment", "centred", "separation"])
def test_module_cast_to_bfloat16_follows_float64(statistic):
    """Buffers, statistics and margins in bfloat16 (``theory.optimal_margins`` computes them in
    float32 and returns bfloat16) track the float64 loss."""
    K, d = 4, 6
    gen = torch.Generator().manual_seed(9)
    half = MR2Loss(K, norm_p=5.0, statistic=statistic).to(torch.bfloat16)
    full = MR2Loss(K, norm_p=5.0, statistic=statistic).double()
    for _ in range(3):
        z = torch.randn(12, K, generator=gen, dtype=torch.float64)
        h = torch.randn(12, d, generator=gen, dtype=torch.float64) + torch.arange(d, dtype=torch.float64)
        y = torch.arange(12) % K
        zb, hb = z.bfloat16().requires_grad_(), h.bfloat16().requires_grad_()
        v_half, v_full = half(zb, hb, y), full(z, h, y)
        v_half.backward()
        assert half.last["margins"].dtype == torch.bfloat16 and torch.isfinite(hb.grad.float()).all()
        assert float(v_half.detach()) == pytest.approx(float(v_full.detach()), rel=RTOL_BF16)
        torch.testing.assert_close(
            half.last["margins"].double(), full.last["margins"], rtol=RTOL_BF16, atol=RTOL_BF16
        )


def test_oracle_share_formula_and_edge_cases():
    from mr2.losses.margin_statistics import oracle_share

    s_k = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0], dtype=torch.float64)
    s_j = torch.tensor([1.0, 1.0, 2.0, 0.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(
        oracle_share(s_k, s_j), torch.tensor([0.5, 0.75, 0.0, 0.5, 0.25], dtype=torch.float64)
    )
    # the share equalises the two classes' errors: boundary at d s_k/(s_k+s_j) from mean k
    d = 3.0
    share = oracle_share(torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    assert math.isclose(d * float(share) / 2.0, d * (1 - float(share)) / 0.5, rel_tol=1e-12)


def test_oracle_statistic_on_two_gaussians_recovers_the_sd_ratio():
    """Two well-separated classes with SDs 3 and 1 along the line joining them (large batches):
    the statistic tends to 3/4 and 1/4 and the margins (exponent 1) to 1.5 and 0.5."""
    gen = torch.Generator().manual_seed(0)
    loss = MR2Loss(2, statistic="oracle", exponent=1.0, ema_decay=0.5, lambda_rep=0.0).double()
    for _ in range(20):
        y = torch.arange(4000) % 2
        h = torch.randn(4000, 3, generator=gen, dtype=torch.float64)
        h[:, 0] *= torch.where(y == 0, 3.0, 1.0)  # anisotropic: only the SD along the line matters
        h[:, 1] *= torch.where(y == 0, 0.2, 5.0)
        h[:, 0] += 20.0 * y
        loss(torch.zeros(4000, 2, dtype=torch.float64), h, y)
    a, _ = loss.class_spreads()
    torch.testing.assert_close(a, torch.tensor([0.75, 0.25], dtype=torch.float64), atol=0.01, rtol=0)
    torch.testing.assert_close(
        loss.last["margins"], torch.tensor([1.5, 0.5], dtype=torch.float64), atol=0.03, rtol=0
    )
    assert set(loss.state_dict()) >= {"class_mean_ema", "proj_var_ema", "pair_observations"}
