"""The camera classifier of camera verification (VehicleNet sec. IV-C): a CNN recognising the camera.

Backbone -> global average pooling -> BatchNorm (the feature) -> linear classifier over the cameras.
The paper fine-tunes a DenseNet-121; any registry backbone works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CameraNet", "CameraOutput"]


@dataclass
class CameraOutput:
    """Named outputs: ``features["cam"]`` (the BN feature, ``(B, C)``) and the camera ``logits``."""

    features: dict[str, Tensor]
    logits: Tensor


class CameraNet(nn.Module):
    """Backbone -> GAP -> BatchNorm -> linear camera classifier.

    Args:
        backbone: a registry backbone (``out_channels``; ``forward`` -> the last conv map).
        num_classes: camera classes (the camera ids are class indices).
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.bn = nn.BatchNorm1d(backbone.out_channels)
        self.classifier = nn.Linear(backbone.out_channels, int(num_classes))

    def forward(self, images: Tensor) -> CameraOutput:
        feature = self.bn(F.adaptive_avg_pool2d(self.backbone(images), 1).flatten(1))
        return CameraOutput(features={"cam": feature}, logits=self.classifier(feature))
