"""Classifiers that return ``(logits, features)``, so that MR² sees the penultimate features.

* ``small-cnn``: two conv stages and a hidden layer; trains on Fashion-MNIST in minutes on 2 CPU cores.
* ``small-cnn-gap``: the same two conv stages, then a global average pool instead of flatten + hidden
  layer: features of size 2w that keep no spatial layout (tests whether small-cnn's flatten + FC
  layer, which does keep it, is what makes CE strong).
* ``resnet18``: ResNet-18 (He et al. 2016) with the CIFAR-style stem (3x3 conv, stride 1, no max-pool),
  for 28x28 or 32x32 images with 1 or 3 channels.
* ``torchvision:NAME`` / ``timm:NAME``: any backbone of those libraries where installed; its last
  linear layer is replaced by ours. Grey images are repeated to 3 channels for torchvision models.

Every model is a ``Classifier``: a backbone mapping images (B, C, H, W) to features (B, d) and a
linear head mapping features to logits (B, K). ``freeze_backbone=True`` fixes the backbone (no
gradients, batch-norm statistics frozen): a linear probe, as in the paper's CLIP/MAE/MoCo runs.
``head="cosine"`` gives LDAM's normalised head (cosine logits); ``head="normalized"`` the head of the
MR² authors' released fine-tuning code (a linear layer on L2-normalised features, its class weights
starting at norm 100, CLIP's logit scale), while the features returned for the loss stay raw.
"""

from __future__ import annotations

import torch
from torch import nn

from mr2_core.checks import bad

__all__ = ["MODEL_NAMES", "Classifier", "SmallCNN", "SmallCNNGAP", "ResNet18", "build_model"]

MODEL_NAMES = ("small-cnn", "small-cnn-gap", "resnet18", "torchvision:<name>", "timm:<name>")
HEADS = ("linear", "cosine", "normalized")
# CLIP's learned logit scale exp(4.6052) = 100, folded into the zero-shot head's weights by the released
# MR² fine-tuning code; our "normalized" head starts its class weights at this norm.
NORMALIZED_HEAD_SCALE = 100.0


class NormalizedHead(nn.Linear):
    """logits = (h / ||h||) W^T + b, the released MR² code's ``ClassificationHead(normalize=True)``.

    Shapes: (B, d) -> (B, K). The class weights start as random directions of norm
    ``NORMALIZED_HEAD_SCALE`` and the bias at 0 (the released code starts from CLIP's zero-shot text
    embeddings times the logit scale; we have no text encoder, so only the scale is reproduced).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        with torch.no_grad():
            self.weight.normal_()
            self.weight.mul_(NORMALIZED_HEAD_SCALE / self.weight.norm(dim=1, keepdim=True))
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x / x.norm(dim=1, keepdim=True).clamp_min(1e-12))


class Classifier(nn.Module):
    """backbone (B, C, H, W) -> features (B, d); head: features -> logits (B, K).

    ``forward`` returns ``(logits, features)``; ``features`` are what the head sees.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        *,
        freeze_backbone: bool = False,
        head: str = "linear",
    ):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)
        if head not in HEADS:
            raise bad("head", head, f"one of {list(HEADS)}")
        if head == "cosine":  # LDAM's head: logits are cosines, so pair it with a scale (s = 30)
            from mr2.losses import NormedLinear

            self.head = NormedLinear(self.feature_dim, self.num_classes)
        elif head == "normalized":  # the released MR2 code's head; the loss still sees the raw features
            self.head = NormalizedHead(self.feature_dim, self.num_classes)
        else:
            self.head = nn.Linear(self.feature_dim, self.num_classes)
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.freeze_backbone:  # a frozen backbone keeps its batch-norm statistics
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.freeze_backbone:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return self.head(feats), feats


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _conv_stack(in_channels: int, image_size: int, width: int) -> list[nn.Module]:
    """conv(w)-pool-conv(2w)-pool, the small CNNs' shared stack (a list, so that the Sequential's layer
    indices, and hence the state_dict keys, stay those of the flat layout)."""
    if image_size // 4 < 1:
        raise bad("image_size", image_size, "at least 4 pixels for two 2x2 poolings")
    return [_conv_bn(in_channels, width), nn.MaxPool2d(2), _conv_bn(width, 2 * width), nn.MaxPool2d(2)]


class SmallCNN(nn.Sequential):
    """conv(w)-pool-conv(2w)-pool-flatten-linear(hidden)-ReLU: features of size ``hidden``.

    With w = 32 and hidden = 128 it has about 420k parameters and ~4 M multiply-adds per 28x28 image.
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 32, hidden: int = 128):
        side = image_size // 4
        super().__init__(
            *_conv_stack(in_channels, image_size, width),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden),
            nn.ReLU(inplace=True),
        )
        self.out_dim = hidden


class SmallCNNGAP(nn.Sequential):
    """conv(w)-pool-conv(2w)-pool-global average pool: SmallCNN's conv stack with its flatten + hidden
    layer replaced by a global average pool, so features (size 2w) carry no spatial layout."""

    def __init__(self, in_channels: int, image_size: int, width: int = 32):
        super().__init__(
            *_conv_stack(in_channels, image_size, width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 2 * width


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with a CIFAR stem: 3x3 conv, stride 1, no max-pool; four stages of two basic blocks
    with widths (w, 2w, 4w, 8w), w = 64 by default; global average pool -> features of size 8w."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        self.stem = _conv_bn(in_channels, width)
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(x)))


class _RepeatChannels(nn.Module):
    """Grey (B, 1, H, W) -> (B, 3, H, W) for backbones built for RGB."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def _strip_last_linear(model: nn.Module) -> int:
    """Replace the last ``nn.Linear`` of ``model`` by an identity; return its input size."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None:
        raise bad("model", type(model).__name__, "a backbone ending in an nn.Linear classifier")
    name, mod = last
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return int(mod.in_features)


def _library_backbone(lib: str, arch: str, in_channels: int, pretrained: bool) -> tuple[nn.Module, int]:
    try:
        module = __import__(lib)
    except ImportError:
        raise ValueError(
            f"model='{lib}:{arch}' needs {lib}, which is not installed: pip install {lib} "
            f"(or use one of {list(MODEL_NAMES[:2])})"
        ) from None
    try:
        if lib == "timm":
            net = module.create_model(arch, pretrained=pretrained, num_classes=0, in_chans=in_channels)
            return net, int(net.num_features)
        import torchvision.models

        net = torchvision.models.get_model(arch, weights="DEFAULT" if pretrained else None)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        hint = "; pretrained weights need network access or a warm cache" if pretrained else ""
        raise ValueError(f"model='{lib}:{arch}': {lib} could not build it ({exc}){hint}") from None
    dim = _strip_last_linear(net)
    return (_RepeatChannels(net) if in_channels == 1 else net), dim


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: int | None = None,
    hidden: int = 128,
    pretrained: bool = False,
    freeze_backbone: bool = False,
    head: str = "linear",
) -> Classifier:
    """Build a ``Classifier`` by name (``MODEL_NAMES``).

    Args:
        name: ``small-cnn``, ``small-cnn-gap``, ``resnet18``, ``torchvision:<arch>`` or ``timm:<arch>``.
        num_classes: K; in_channels: 1 or 3; image_size: input side in pixels (small-cnn needs it).
        width: first-stage channels (small-cnn, small-cnn-gap: 32, resnet18: 64 by default).
        hidden: small-cnn's feature size (small-cnn-gap's is 2 * width; it ignores ``hidden``).
        pretrained: load the library's weights (torchvision/timm only; needs them cached or a network).
        freeze_backbone: train only the head (linear probe on fixed features).
        head: ``linear``, ``cosine`` (``mr2.losses.NormedLinear``: cosine logits, LDAM's head) or
            ``normalized`` (``NormalizedHead``: the released MR² code's head on normalised features).
    """
    if num_classes < 2:
        raise bad("num_classes", num_classes, "at least 2")
    if in_channels not in (1, 3):
        raise bad("in_channels", in_channels, "1 or 3")
    if name == "small-cnn":
        net = SmallCNN(in_channels, image_size, width or 32, hidden)
        backbone, dim = net, net.out_dim
    elif name == "small-cnn-gap":
        net = SmallCNNGAP(in_channels, image_size, width or 32)
        backbone, dim = net, net.out_dim
    elif name == "resnet18":
        net = ResNet18(in_channels, width or 64)
        backbone, dim = net, net.out_dim
    elif name.partition(":")[0] in ("torchvision", "timm") and name.partition(":")[2]:
        lib, _, arch = name.partition(":")
        backbone, dim = _library_backbone(lib, arch, in_channels, pretrained)
    else:
        raise bad("model", name, f"one of {list(MODEL_NAMES)}")
    if pretrained and name in ("small-cnn", "small-cnn-gap", "resnet18"):
        raise bad("pretrained", pretrained, f"False for model='{name}' (no weights are shipped)")
    return Classifier(backbone, dim, num_classes, freeze_backbone=freeze_backbone, head=head)
