"""The light VGG networks of SCAN (sec. 4.1), with or without the SCAN attention module (sec. 3.3).

``light_vgg_m`` is the conv trunk of VGG_CNN_M_1024 and ``light_vgg16`` that of VGG16 (conv5_3), each
with every fully connected layer replaced by global average pooling and one 512-d FC (the retrieval
feature, compared by Euclidean distance, sec. 3.3), followed by the ID classifier (cross-entropy) while
the triplet loss reads the 512-d feature (Fig. 4). With ``attention`` set, the SCAN module sits between
the trunk and the pooling ("after the conv5 layer in VGG_CNN_M_1024 and the conv5.3 layer in VGG16").

The trunk comes from the backbone registry; its pretrained fc6/fc7 stack (``head``) is dropped here,
which is what makes the networks light (Table 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.models.backbones.base import take_head
from vreid_lightning.models.layers import Classifier, init_fc
from vreid_lightning.models.scan import SCAN

__all__ = ["LightVGGOutput", "LightVGGNet", "count_parameters"]


@dataclass
class LightVGGOutput:
    """Named outputs: ``features`` (name -> (B, D)), ID ``logits``, the attention weights (or None)."""

    features: dict[str, Tensor]
    logits: Tensor
    spatial: Tensor | None = None
    channel: Tensor | None = None


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


class LightVGGNet(nn.Module):
    """Conv trunk -> [SCAN] -> global average pooling -> 512-d FC -> ID classifier.

    Args:
        backbone: a registry backbone (``out_channels``, ``forward`` -> last conv map); its ``head`` is
            dropped.
        num_classes: training identities.
        feat_dim: width of the FC feature (sec. 4.1: 512).
        attention: insert the SCAN module (``False``: the light baseline, sec. 4.1).
        branches, reduction, fusion, channel_gate, spatial: options of
            :class:`~vreid_lightning.models.scan.SCAN` (``branches``: ``both``, ``spatial``, ``channel``).
        feat_relu: apply a ReLU to the FC feature (paper unstated; off: the feature is the FC output).
        dropout: dropout before the FC (paper unstated; 0).
        feature_name: name of the retrieval feature in ``features`` (default: ``"scan"`` with attention,
            ``"plain"`` without, so an ensemble of both reads ``scan+plain``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, feat_dim: int = 512, attention: bool = True,
                 branches: str = "both", reduction: int = 16, fusion: str = "product", channel_gate: str = "relu",
                 spatial: dict[str, Any] | None = None, feat_relu: bool = False, dropout: float = 0.0,
                 feature_name: str | None = None) -> None:
        super().__init__()
        if not isinstance(attention, bool):
            raise ConfigError(f"model.net.attention={attention!r}; expected true (SCAN) or false (the light baseline)")
        if feat_dim < 1:
            raise ConfigError(f"model.net.feat_dim must be >= 1, got {feat_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.net.dropout must be in [0, 1), got {dropout}")
        take_head(backbone)  # sec. 4.1: "replace all fully connected layers ... with a 512-D layer": fc6/fc7 go
        self.backbone = backbone
        channels = int(backbone.out_channels)
        self.attention = None if not attention else SCAN(
            channels, reduction=reduction, branches=branches, fusion=fusion, channel_gate=channel_gate,
            spatial=spatial)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = init_fc(nn.Linear(channels, feat_dim))
        self.feat_relu = bool(feat_relu)
        self.classifier = Classifier(feat_dim, num_classes)
        self.feature_name = feature_name or ("scan" if attention else "plain")
        self.feat_dim = int(feat_dim)

    @property
    def feature_dims(self) -> dict[str, int]:
        """Name -> width of each retrieval feature."""
        return {self.feature_name: self.feat_dim}

    def embedding_parameters(self) -> int:
        """Parameters without the ID classifier (what Table 4 counts)."""
        return count_parameters(self) - count_parameters(self.classifier)

    def forward(self, x: Tensor) -> LightVGGOutput:
        """Images (B, 3, H, W) -> the 512-d feature, ID logits and the attention weights."""
        m = self.backbone(x)
        spatial = channel = None
        if self.attention is not None:
            out = self.attention(m)
            m, spatial, channel = out.refined, out.spatial, out.channel
        feat = self.fc(self.drop(self.pool(m).flatten(1)))
        if self.feat_relu:
            feat = feat.relu()
        return LightVGGOutput({self.feature_name: feat}, self.classifier(feat), spatial, channel)
