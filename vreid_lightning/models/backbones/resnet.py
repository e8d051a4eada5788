"""ResNet-50 (He et al. 2016) from torchvision, as a feature extractor."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torchvision.models import ResNet50_Weights
from torchvision.models import resnet50 as tv_resnet50

from .base import Backbone
from .registry import register_backbone
from .weights import load_library_weights

__all__ = ["ResNet50"]


class ResNet50(Backbone):
    """ResNet-50 stem and layer1..layer4 (no avgpool/fc); torchvision's parameter names.

    Args:
        last_stride: Stride of layer4's first block (2 as in the original; 1 is the common
            re-ID choice that doubles the output H and W). Applied to both its 3x3 conv2 and
            its downsample conv.
    """

    def __init__(self, last_stride: int = 2) -> None:
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        super().__init__(out_channels=2048)
        model = tv_resnet50(weights=None)  # torchvision's init: Kaiming-normal convs
        block = model.layer4[0]
        block.conv2.stride = (last_stride, last_stride)
        block.downsample[0].stride = (last_stride, last_stride)
        self.last_stride = last_stride
        self.conv1, self.bn1, self.relu, self.maxpool = model.conv1, model.bn1, model.relu, model.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = model.layer1, model.layer2, model.layer3, model.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return layer4's map: (B, 2048, H/32, W/32), or H/16, W/16 with ``last_stride=1``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop torchvision's ImageNet classifier (``fc.*``)."""
        return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


@register_backbone("resnet50")
def resnet50(pretrained: bool = False, **kwargs: object) -> ResNet50:
    """ResNet-50; ``pretrained`` loads torchvision's ``ResNet50_Weights.IMAGENET1K_V1``."""
    backbone = ResNet50(**kwargs)
    return load_library_weights(backbone, ResNet50_Weights.IMAGENET1K_V1, "resnet50") if pretrained else backbone
