"""BoT, the strong baseline (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
Re-identification", CVPRW 2019; TMM 2019): ResNet-50 with last stride 1, global average pooling, BNNeck.

The network is pure (no Lightning, no config files). In training mode it returns the pooled feature
(for the triplet and center losses) and the ID logits of the BN feature; in eval mode the retrieval
feature, after the BNNeck (``neck_feat="after"``, the paper) or before it (FastReID's default).

IBN-a (Pan et al., ECCV 2018), the backbone of FastReID's published vehicle numbers, is a switch taken
only with its ImageNet weights (``ibn_a_weights``): half of the first BatchNorm of every bottleneck in
layer1-3 becomes an InstanceNorm, and the weights file (the IBN-Net release's ``resnet50_ibn_a``) fills it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.models.backbones import build_backbone

__all__ = ["BoTNet", "BoTOutput", "IBN", "make_ibn_a", "GeneralizedMeanPooling"]


@dataclass
class BoTOutput:
    """Named outputs: ``features`` (retrieval, eval mode), ``logits["id"]``, ``embeddings["global"]``
    (the pooled feature before the BNNeck, for the metric losses)."""

    features: dict[str, Tensor] = field(default_factory=dict)
    logits: dict[str, Tensor] = field(default_factory=dict)
    embeddings: dict[str, Tensor] = field(default_factory=dict)


class IBN(nn.Module):
    """IBN-a normalisation: InstanceNorm on the first ``ratio`` of the channels, BatchNorm on the rest."""

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(channels * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


def make_ibn_a(backbone: nn.Module) -> nn.Module:
    """Turn a torchvision-layout ResNet-50 into ResNet-50-IBN-a in place (``bn1`` of layer1-3's bottlenecks)."""
    for name in ("layer1", "layer2", "layer3"):
        for block in getattr(backbone, name):
            block.bn1 = IBN(block.bn1.num_features)
    return backbone


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling (Radenovic et al., TPAMI 2018) with a fixed exponent ``p``; ``(B, C, H, W)`` -> ``(B, C)``."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p, self.eps = float(p), float(eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p).flatten(1)


class BoTNet(nn.Module):
    """Backbone -> pooling -> BNNeck -> bias-free linear ID classifier.

    Args:
        backbone: backbone config (``name`` and its options; BoT: ``resnet50`` with ``last_stride: 1``).
        num_classes: training identities.
        neck_feat: retrieval feature at test time: ``after`` the BNNeck (the paper, 'BNNeck') or ``before``.
        gem_p: None: global average pooling (the paper); a number: GeM pooling with that exponent (FastReID's
            VehicleID config, ``POOL_LAYER: gempool``).
        ibn_a_weights: path of ResNet-50-IBN-a ImageNet weights: builds IBN-a layers and loads them (None: no IBN).
    """

    def __init__(self, backbone: Mapping[str, Any], num_classes: int, neck_feat: str = "after",
                 gem_p: float | None = None, ibn_a_weights: str | None = None) -> None:
        super().__init__()
        if neck_feat not in ("after", "before"):
            raise ConfigError(f"model.net.neck_feat={neck_feat!r}; expected 'after' (BNNeck output) or 'before'")
        if gem_p is not None and float(gem_p) <= 0:
            raise ConfigError(f"model.net.gem_p={gem_p!r}; expected null (average pooling) or a positive exponent")
        bcfg = dict(backbone)
        if ibn_a_weights is not None:
            if bcfg.get("name") != "resnet50":
                raise ConfigError(f"model.net.ibn_a_weights: IBN-a is built on resnet50, not {bcfg.get('name')!r}")
            if bcfg.get("weights") or bcfg.get("pretrained"):
                raise ConfigError("model.net.ibn_a_weights: the IBN-a weights replace backbone.weights/pretrained; "
                                  "leave those unset")
        self.backbone = build_backbone(**bcfg)
        if ibn_a_weights is not None:
            from vreid_lightning.models.backbones.weights import load_into, read_state_dict_file

            make_ibn_a(self.backbone)
            load_into(self.backbone, read_state_dict_file(ibn_a_weights), source=str(ibn_a_weights))
        self.backbone.take_head()  # a VGG trunk's fc6/fc7 are not BoT's: it pools the last conv map ('Standard Baseline')
        dim = int(self.backbone.out_channels)
        self.feature_dim = dim
        self.pool = (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)) if gem_p is None
                     else GeneralizedMeanPooling(float(gem_p)))
        self.neck_feat = neck_feat
        # BNNeck ('BNNeck'): a BatchNorm without shift; authors' code modeling/baseline.py:54-56, 58
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)
        nn.init.constant_(self.bnneck.weight, 1.0)
        nn.init.constant_(self.bnneck.bias, 0.0)
        self.classifier = nn.Linear(dim, int(num_classes), bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)  # authors' code modeling/baseline.py:31, 59

    def forward(self, images: Tensor) -> BoTOutput:
        pooled = self.pool(self.backbone(images))
        bn = self.bnneck(pooled)
        feature = bn if self.neck_feat == "after" else pooled
        return BoTOutput(features={"bnneck" if self.neck_feat == "after" else "global": feature},
                         logits={"id": self.classifier(bn)}, embeddings={"global": pooled})
