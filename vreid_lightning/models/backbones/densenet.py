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
    """DenseNet-121 ``features`` including the final norm5, then ReLU as torchvision's classifier path.

    Args:
        last_stride: stride of transition3's 2x2 average pool (2 as in the original). 1 is what the
            VehicleNet authors call stride 1 for DenseNet (layumi/AICIty-reID-2020 pytorch/model.py:197-198,
            ``transition3.pool.stride = 1``): the 2x2 pool slides by 1, so the map is H/16 - 1.
        final_relu: apply ReLU to norm5 (torchvision's ``DenseNet.forward``). ``False``: return norm5 itself,
            as the VehicleNet authors pool it (model.py:209,223: ``features.avgpool`` appended after norm5).
    """

    def __init__(self, last_stride: int = 2, final_relu: bool = True) -> None:
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        super().__init__(out_channels=1024)
        self.features = tv_densenet121(weights=None).features  # torchvision's init: Kaiming-normal convs
        self.features.transition3.pool.stride = last_stride
        self.last_stride = last_stride
        self.final_relu = bool(final_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(norm5(...)) (or norm5 with ``final_relu=False``): (B, 1024, H/32, W/32)."""
        x = self.features(x)
        return F.relu(x) if self.final_relu else x

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
