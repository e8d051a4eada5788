"""VehicleNet's network (Zheng, Ruan, Wei, Yang, Mei, IEEE TMM 2020, sec. IV-A and Fig. 3).

An ImageNet backbone without its classifier, adaptive average pooling, ``fc1`` (512-d) followed by a
BatchNorm layer whose output is the retrieval feature (cosine similarity), optional dropout, and
``fc2``, the ID classifier over the training classes. The paper leaves initialisation and dropout
open; the authors' released code (ClassBlock of layumi/AICity-reID-2020) gives: ``fc1`` Kaiming-normal
(fan-out) with zero bias, BN weight ~ N(1, 0.02) with zero bias, ``fc2`` ~ N(0, 0.001) with zero bias,
dropout before ``fc2`` (0 in stage I, 0.2 in stage II by their released model names).

Stage II (sec. IV-B) keeps everything but ``fc2``: :meth:`VehicleNet.reset_classifier` replaces it by
a fresh classifier of the target's classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .backbones import Backbone

__all__ = ["VehicleNet", "VehicleNetOutput", "init_fc1", "init_bn", "init_classifier", "FEATURE"]

FEATURE = "bn"  # name of the retrieval feature: the BN output of fc1 (Fig. 3, green box)


def init_fc1(linear: nn.Linear) -> nn.Linear:
    """Authors' code: Kaiming-normal weights (a=0, fan-out), zero bias."""
    nn.init.kaiming_normal_(linear.weight, a=0, mode="fan_out")
    nn.init.zeros_(linear.bias)
    return linear


def init_bn(bn: nn.BatchNorm1d) -> nn.BatchNorm1d:
    """Authors' code: weight ~ N(1, 0.02), zero bias."""
    nn.init.normal_(bn.weight, 1.0, 0.02)
    nn.init.zeros_(bn.bias)
    return bn


def init_classifier(linear: nn.Linear) -> nn.Linear:
    """Authors' code: weight ~ N(0, 0.001), zero bias."""
    nn.init.normal_(linear.weight, std=0.001)
    nn.init.zeros_(linear.bias)
    return linear


@dataclass
class VehicleNetOutput:
    """Named outputs: the backbone's map before pooling (Fig. 7), the features and the ID logits."""

    feature_map: Tensor
    features: dict[str, Tensor]
    logits: Tensor


class VehicleNet(nn.Module):
    """Backbone -> adaptive avg pool -> fc1 -> BN (feature) -> dropout -> fc2 (classifier).

    Args:
        backbone: a registry backbone returning its last conv map (its ImageNet classifier is never
            part of it: sec. IV-A "the classification layer ... is removed").
        num_classes: classes of ``fc2`` (the merged VehicleNet classes in stage I, the target's in II).
        embed_dim: width of ``fc1`` (sec. IV-A: 512).
        dropout: dropout probability before ``fc2`` (authors' code: 0 stage I, 0.2 stage II).
    """

    def __init__(self, backbone: Backbone, num_classes: int, embed_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"VehicleNet: num_classes must be >= 1, got {num_classes}")
        if embed_dim < 1:
            raise ValueError(f"VehicleNet: embed_dim must be >= 1, got {embed_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"VehicleNet: dropout must be in [0, 1), got {dropout}")
        if getattr(backbone, "head", None) is not None:
            backbone.head = None  # a VGG's fc6/fc7 stack: VehicleNet pools the last conv map (Fig. 3), never uses it
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)  # sec. IV-A: average pooling replaced by adaptive average pooling
        self.fc1 = init_fc1(nn.Linear(backbone.out_channels, embed_dim))
        self.bn = init_bn(nn.BatchNorm1d(embed_dim))
        self.dropout = nn.Dropout(dropout)
        self.classifier = init_classifier(nn.Linear(embed_dim, num_classes))  # fc2

    @property
    def feature_dims(self) -> dict[str, int]:
        """Name -> width of the retrieval features."""
        return {FEATURE: self.fc1.out_features}

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def new_layers(self) -> list[nn.Module]:
        """The layers added on top of the backbone (trained at the full learning rate)."""
        return [self.fc1, self.bn, self.classifier]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc2`` by a freshly initialised classifier of ``num_classes`` (stage II)."""
        device = self.classifier.weight.device
        self.classifier = init_classifier(nn.Linear(self.fc1.out_features, num_classes)).to(device)

    def forward(self, x: Tensor) -> VehicleNetOutput:
        fmap = self.backbone(x)
        f = self.bn(self.fc1(torch.flatten(self.pool(fmap), 1)))
        return VehicleNetOutput(feature_map=fmap, features={FEATURE: f}, logits=self.classifier(self.dropout(f)))
