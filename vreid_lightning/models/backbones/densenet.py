"""DenseNet-121 (Huang et al. 2017) from torchvision, as a feature extractor."""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torchvision.models import DenseNet121_Weights
from torchvision.models import densenet121 as tv_densenet121

from .base import Backbone
from .registry import register_backbone
from .weights import load_library_weights

__all__ = ["DenseNet121"]

# torchvision's published checkpoints still use the old names 'norm.1', 'conv.2', ... inside
# dense layers; the module names are now 'norm1', 'conv2' (same rule as torchvision's loader).
_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class DenseNet121(Backbone):
    """DenseNet-121 ``features`` including the final norm5, followed by ReLU (no pooling/classifier)."""

    def __init__(self) -> None:
        super().__init__(out_channels=1024)
        self.features = tv_densenet121(weights=None).features  # torchvision's init: Kaiming-normal convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(norm5(...)): (B, 1024, H/32, W/32)."""
        return F.relu(self.features(x))

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename legacy dense-layer keys and drop torchvision's classifier."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key.startswith("classifier."):
                continue
            match = _LEGACY_KEY.match(key)
            out[match.group(1) + match.group(2) if match else key] = value
        return out


@register_backbone("densenet121")
def densenet121(pretrained: bool = False, **kwargs: object) -> DenseNet121:
    """DenseNet-121; ``pretrained`` loads torchvision's ``DenseNet121_Weights.IMAGENET1K_V1``."""
    backbone = DenseNet121(**kwargs)
    return load_library_weights(backbone, DenseNet121_Weights.IMAGENET1K_V1, "densenet121") if pretrained else backbone
