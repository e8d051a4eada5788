"""VGG_CNN_M and VGG_CNN_M_1024 (Chatfield et al., "Return of the devil in the details", BMVC 2014).

Layer names follow the Caffe prototxt (conv1..conv5, fc6, fc7) so converted Caffe weights
map one to one (docs/weights.md). At 224x224 input the conv5 map is 13x13 (RAM Sec. 3.1,
"Feature maps M is of size 13x13x512") and pool5 gives 512x6x6.

Input: the Caffe model was trained on BGR images in [0, 255] minus the mean pixel. The
converter in ``caffe.py`` folds that preprocessing into conv1 (exact, conv1 has no padding)
so the backbone takes the usual torchvision-normalised RGB tensors like every other backbone.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from .base import Backbone
from .registry import register_backbone

__all__ = ["VGGCNNM", "vgg_cnn_m", "vgg_cnn_m_1024", "caffe_lrn"]


def caffe_lrn(size: int = 5, alpha: float = 5e-4, beta: float = 0.75, k: float = 2.0) -> nn.LocalResponseNorm:
    """Caffe's ACROSS_CHANNELS LRN as in the VGG_CNN_M prototxt (norm1, norm2).

    Caffe computes ``x / (k + alpha / size * sum_{window} x^2) ** beta``; torch's
    ``LocalResponseNorm`` also divides ``alpha`` by ``size`` and pads the channel window
    by ``size // 2`` on each side for odd sizes, as Caffe does. So the prototxt values
    (local_size 5, alpha 0.0005, beta 0.75, k 2) are passed unchanged.
    """
    return nn.LocalResponseNorm(size=size, alpha=alpha, beta=beta, k=k)


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


class VGGCNNM(Backbone):
    """VGG_CNN_M trunk (conv1..conv5 + ReLU) with its fc6/fc7 stack as ``head``.

    Args:
        fc7_dim: Width of fc7 in the paper's model: 4096 (VGG_CNN_M) or 1024 (VGG_CNN_M_1024).
        width_mult: NOT the paper (paper value 1.0): scales every conv and fc width so the
            synthetic CPU experiments stay small. Converted Caffe weights need 1.0.
        fc6_dim: Override of fc6's width (default ``4096 * width_mult``).
        fc_dim: Override of fc7's width, i.e. ``head_dim`` (default ``fc7_dim * width_mult``).
        dropout: Dropout after fc6 and fc7 (Caffe prototxt: 0.5).
        head_pool_size: pool5 output size; 6 as in the paper (6x6 at 224 input, RAM Sec. 2.2).
        norm: ``lrn`` (the paper's network) or ``bn`` (NOT the paper, for from-scratch CPU runs).
        trunk_end: where ``forward`` stops: ``conv5`` (after relu5, 13x13 at 224 input, the "last conv
            layer") or ``pool5`` (then Caffe's pool5, max 3x3/2 with ceil rounding: 6x6 at 224 input; the
            RNN-HA authors' trunk, ``vgg_m[0:15]`` of main_GRU_fusion_attention.py:21-28,40).
    """

    def __init__(
        self,
        fc7_dim: int = 4096,
        width_mult: float = 1.0,
        fc6_dim: int | None = None,
        fc_dim: int | None = None,
        dropout: float = 0.5,
        head_pool_size: int = 6,
        norm: str = "lrn",
        trunk_end: str = "conv5",
    ) -> None:
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if norm not in ("lrn", "bn"):
            raise ValueError(f"backbone.norm must be 'lrn' (the paper's network) or 'bn', got {norm!r}")
        if trunk_end not in ("conv5", "pool5"):
            raise ValueError(f"backbone.trunk_end must be 'conv5' or 'pool5', got {trunk_end!r}")
        c1, c2, c3 = (_scaled(c, width_mult) for c in (96, 256, 512))
        super().__init__(out_channels=c3)
        # Chatfield et al. 2014, Table 1 (CNN-M) / the BVLC prototxt.
        # norm="bn" (NOT the paper): BatchNorm after every conv instead of LRN, so a randomly
        # initialised network trains from scratch in minutes (the synthetic CPU experiments).
        self.norm = norm
        self.conv1 = nn.Conv2d(3, c1, kernel_size=7, stride=2)
        self.relu1 = nn.ReLU(inplace=True)
        self.norm1 = caffe_lrn() if norm == "lrn" else nn.Identity()
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # Caffe pooling rounds up
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm2 = caffe_lrn() if norm == "lrn" else nn.Identity()
        self.pool2 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3, padding=1)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = nn.Conv2d(c3, c3, kernel_size=3, padding=1)
        self.relu4 = nn.ReLU(inplace=True)
        self.conv5 = nn.Conv2d(c3, c3, kernel_size=3, padding=1)
        self.relu5 = nn.ReLU(inplace=True)
        self.trunk_end = trunk_end
        # pool5 as in the Caffe prototxt (and the authors' torch port): max 3x3/2, ceil rounding; no parameters
        self.pool5 = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True) if trunk_end == "pool5" else nn.Identity()
        if norm == "bn":
            for i, c in enumerate((c1, c2, c3, c3, c3), start=1):
                self.add_module(f"bn{i}", nn.BatchNorm2d(c))

        d6 = fc6_dim if fc6_dim is not None else _scaled(4096, width_mult)
        d7 = fc_dim if fc_dim is not None else _scaled(fc7_dim, width_mult)
        self.head_pool_size = head_pool_size
        self.head_dim = d7
        # pool5 in Caffe is max 3x3/2 with ceil rounding. On the 13x13 conv5 map that makes
        # windows [0,3), [2,5), ..., [10,13), exactly the windows of an adaptive max pool to
        # 6x6; the adaptive form also keeps fc6's input at 6x6 for other input sizes.
        self.head = nn.Sequential(
            OrderedDict(
                pool5=nn.AdaptiveMaxPool2d(head_pool_size),
                flatten=nn.Flatten(1),
                fc6=nn.Linear(c3 * head_pool_size * head_pool_size, d6),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(d6, d7),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
            )
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Explicit random init: Kaiming-normal convs (fan_out, ReLU), N(0, 0.01) fcs, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the conv5 map (after ReLU): (B, 512, 13, 13) at 224x224 input; with ``trunk_end="pool5"``
        the pool5 map, (B, 512, 6, 6)."""
        return self.pool5(self.relu5(self.forward_pre_relu(x)))

    def forward_pre_relu(self, x: torch.Tensor) -> torch.Tensor:
        """The conv5 map before its ReLU (the RAM authors' BN branch reads it, train_RAM_finetune.prototxt:295)."""
        bn = self._bn
        x = self.pool1(self.norm1(self.relu1(bn(1, self.conv1(x)))))
        x = self.pool2(self.norm2(self.relu2(bn(2, self.conv2(x)))))
        x = self.relu3(bn(3, self.conv3(x)))
        x = self.relu4(bn(4, self.conv4(x)))
        return bn(5, self.conv5(x))

    def _bn(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"bn{i}")(x) if self.norm == "bn" else x

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept plain Caffe names too: ``fc6.*``/``fc7.*`` -> ``head.fc6.*``/``head.fc7.*``; drop ``fc8.*``."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key.startswith("fc8."):
                continue
            if key.startswith(("fc6.", "fc7.")):
                key = "head." + key
            out[key] = value
        return out


def _no_library_weights(name: str) -> RuntimeError:
    return RuntimeError(
        f"Backbone '{name}' has no library ImageNet weights (neither torchvision nor timm ships "
        f"VGG_CNN_M): convert the Caffe model as described in docs/weights.md and pass "
        f"backbone.weights=PATH, or set backbone.pretrained=false for an explicit random init."
    )


@register_backbone("vgg_cnn_m")
def vgg_cnn_m(pretrained: bool = False, **kwargs: object) -> VGGCNNM:
    """VGG_CNN_M: fc6 4096, fc7 4096 (``head_dim`` 4096). Weights: converted Caffe file only."""
    if pretrained:
        raise _no_library_weights("vgg_cnn_m")
    return VGGCNNM(fc7_dim=4096, **kwargs)


@register_backbone("vgg_cnn_m_1024")
def vgg_cnn_m_1024(pretrained: bool = False, **kwargs: object) -> VGGCNNM:
    """VGG_CNN_M_1024: fc6 4096, fc7 1024 (``head_dim`` 1024); 86.2M parameters (SCAN, Table 4)."""
    if pretrained:
        raise _no_library_weights("vgg_cnn_m_1024")
    return VGGCNNM(fc7_dim=1024, **kwargs)
