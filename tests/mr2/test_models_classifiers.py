"""mr2.models: (logits, features) from every model, the frozen-backbone mode, backbones by name."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from mr2.models import Classifier, build_model

K, B = 7, 5
RESNET18_PARAMS = 11_173_962  # the CIFAR ResNet-18 with 10 classes (He et al. 2016; kuangliu/pytorch-cifar)


@pytest.mark.parametrize("name", ["small-cnn", "resnet18"])
@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32)])
def test_models_return_logits_and_penultimate_features(name, channels, side):
    torch.manual_seed(0)
    model = build_model(name, num_classes=K, in_channels=channels, image_size=side, width=4).eval()
    logits, feats = model(torch.randn(B, channels, side, side))
    assert logits.shape == (B, K) and feats.shape == (B, model.feature_dim)
    torch.testing.assert_close(logits, model.head(feats))  # the features are what the head sees


def test_models_resnet18_is_the_cifar_resnet18():
    model = build_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    assert sum(p.numel() for p in model.parameters()) == RESNET18_PARAMS
    stem = model.backbone.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)  # CIFAR stem, no max-pool
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_models_frozen_backbone_trains_only_the_head():
    torch.manual_seed(0)
    model = build_model(
        "small-cnn", num_classes=K, in_channels=1, image_size=8, width=4, freeze_backbone=True
    )
    model.train()
    assert not model.backbone.training and model.head.training  # batch-norm statistics stay fixed
    before = {n: p.clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.backbone.named_buffers()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    logits, feats = model(torch.randn(B, 1, 8, 8))
    assert not feats.requires_grad
    nn.functional.cross_entropy(logits, torch.arange(B) % K).backward()
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == n.startswith("head."), n
    for n, b in model.backbone.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_models_cosine_head_gives_cosines():
    model = build_model("small-cnn", num_classes=K, in_channels=1, image_size=8, width=4, head="cosine")
    logits, _ = model(torch.randn(B, 1, 8, 8))
    assert logits.abs().max() <= 1.0 + 1e-6


def test_models_bad_names():
    with pytest.raises(ValueError, match="model='vgg': expected one of.*small-cnn.*resnet18"):
        build_model("vgg", num_classes=K, in_channels=1, image_size=8)
    with pytest.raises(ValueError, match="head='mlp'"):
        build_model("small-cnn", num_classes=K, in_channels=1, image_size=8, head="mlp")
    with pytest.raises(ValueError, match="pretrained"):
        build_model("resnet18", num_classes=K, in_channels=1, image_size=8, pretrained=True)


@pytest.mark.parametrize("lib", ["torchvision", "timm"])
def test_models_library_missing_says_what_to_install(lib, monkeypatch):
    monkeypatch.setitem(sys.modules, lib, None)  # import of a None entry raises ImportError
    with pytest.raises(ValueError, match=f"pip install {lib}"):
        build_model(f"{lib}:resnet50", num_classes=K, in_channels=3, image_size=32)


class _TinyNet(nn.Module):
    """Stands in for a torchvision model: a body and a final classifier nn.Linear (random weights)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(6, 1000)

    def forward(self, x):
        return self.fc(self.body(x))


def test_models_torchvision_backbone_by_name(monkeypatch):
    calls = []

    def get_model(name, weights=None):
        calls.append((name, weights))
        return _TinyNet()

    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(get_model=get_model)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", fake.models)
    model = build_model("torchvision:tiny", num_classes=K, in_channels=1, image_size=16, freeze_backbone=True)
    assert calls == [("tiny", None)]
    assert isinstance(model, Classifier) and model.feature_dim == 6
    logits, feats = model(torch.randn(B, 1, 16, 16))  # grey input repeated to RGB
    assert logits.shape == (B, K) and feats.shape == (B, 6)


def test_normalized_head_is_the_released_codes_head_on_raw_features():
    """head="normalized": logits = (h/||h||) W^T + b with rows of W at norm 100; the loss sees raw h."""
    from mr2.models import NORMALIZED_HEAD_SCALE, build_model

    torch.manual_seed(0)
    model = build_model("small-cnn", num_classes=10, in_channels=1, image_size=28, width=4, hidden=16,
                        head="normalized")  # fmt: skip
    w, b = model.head.weight.detach(), model.head.bias.detach()
    torch.testing.assert_close(w.norm(dim=1), torch.full((10,), NORMALIZED_HEAD_SCALE))
    assert torch.count_nonzero(b) == 0
    x = torch.randn(5, 1, 28, 28)
    logits, feats = model(x)
    raw = model.backbone(x)
    torch.testing.assert_close(feats, raw)  # the features for the loss are not normalised
    by_hand = (raw / raw.norm(dim=1, keepdim=True)) @ w.t() + b
    torch.testing.assert_close(logits, by_hand)


def test_class_feature_stats_give_every_statistic_of_the_loss():
    """a_k, ||mu_k||^2, s_k^2, the centred statistic (theory.centred_spread) and the separation ratio,
    against float64 loops over the classes."""
    import numpy as np

    from mr2.metrics import class_feature_stats
    from theory import centred_spread

    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 5, generator=g) + 3 * torch.randn(3, 5, generator=g).repeat_interleave(100, 0)
    y = torch.arange(3).repeat_interleave(100)
    st = class_feature_stats(h, y, 3)
    hs = [h[y == k].double().numpy() for k in range(3)]
    mu = np.stack([x.mean(0) for x in hs])
    s2 = np.array([((x - m) ** 2).sum(1).mean() for x, m in zip(hs, mu, strict=True)])
    np.testing.assert_allclose(st["within"], s2, rtol=1e-10)
    np.testing.assert_allclose(st["spread"], (mu**2).sum(1) + s2, rtol=1e-10)
    np.testing.assert_allclose(st["centred"], centred_spread(mu, s2), rtol=1e-10)
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    np.testing.assert_allclose(st["separation"], s2 / d2.min(1), rtol=1e-10)
