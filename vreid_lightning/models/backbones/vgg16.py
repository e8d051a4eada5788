"""VGG16 (Simonyan & Zisserman 2015) from torchvision: conv5_3 map plus the fc6/fc7 stack as ``head``."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models import vgg16 as tv_vgg16

from .base import Backbone
from .registry import register_backbone
from .weights import load_library_weights

__all__ = ["VGG16"]

# torchvision classifier index -> Caffe layer name (classifier.6 is fc8, the ImageNet classifier).
_CLASSIFIER_TO_HEAD = {"classifier.0.": "head.fc6.", "classifier.3.": "head.fc7."}


class VGG16(Backbone):
    """VGG16 conv1_1..conv5_3 (+ReLU), without pool5; ``forward`` gives (B, 512, 14, 14) at 224.

    ``features`` keeps torchvision's indices so its checkpoints load unchanged. ``head`` is
    pool5 (max 2x2/2, written as an adaptive max pool to 7x7, which is the same windows on
    the 14x14 map) -> fc6 4096 -> ReLU -> Dropout -> fc7 4096 -> ReLU -> Dropout.

    Args:
        dropout: Dropout after fc6 and fc7 (VGG16: 0.5).
        head_pool_size: pool5 output size (7 at 224 input).
    """

    def __init__(self, dropout: float = 0.5, head_pool_size: int = 7) -> None:
        super().__init__(out_channels=512)
        model = tv_vgg16(weights=None)  # torchvision's init: Kaiming-normal convs, N(0, 0.01) fcs
        self.features = model.features[:-1]  # drop pool5; it lives in the head
        self.head_pool_size = head_pool_size
        self.head_dim = 4096
        self.head = nn.Sequential(
            OrderedDict(
                pool5=nn.AdaptiveMaxPool2d(head_pool_size),
                flatten=nn.Flatten(1),
                fc6=model.classifier[0],
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=model.classifier[3],
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the conv5_3 map after ReLU."""
        return self.features(x)

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map torchvision's ``classifier.0/3`` to ``head.fc6/fc7`` and drop fc8 (``classifier.6``)."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key.startswith("classifier.6."):
                continue
            for old, new in _CLASSIFIER_TO_HEAD.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            out[key] = value
        return out


@register_backbone("vgg16")
def vgg16(pretrained: bool = False, **kwargs: object) -> VGG16:
    """VGG16; ``pretrained`` loads torchvision's ``VGG16_Weights.IMAGENET1K_V1``."""
    backbone = VGG16(**kwargs)
    return load_library_weights(backbone, VGG16_Weights.IMAGENET1K_V1, "vgg16") if pretrained else backbone
