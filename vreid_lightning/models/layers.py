"""Small building blocks shared by the re-ID networks: FC blocks, FC stacks and ID classifiers.

Fresh layers are initialised as follows (the papers are silent; FastReID's choices):
hidden FC layers with Kaiming-normal weights (fan-in, ReLU gain) and zero bias, classifiers with
N(0, 0.001) weights and zero bias so that the first logits are near uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

__all__ = ["FCBlock", "fc_stack", "Classifier", "init_fc", "caffe_xavier_", "reset_linear_layers", "L2Scale"]


def init_fc(linear: nn.Linear) -> nn.Linear:
    """Initialise a hidden FC layer (Kaiming-normal fan-in weights, zero bias) in place."""
    nn.init.kaiming_normal_(linear.weight, mode="fan_in", nonlinearity="relu")
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class FCBlock(nn.Sequential):
    """``Linear -> ReLU -> Dropout``: one fully connected layer as in VGG's fc6/fc7.

    Indexed like a Caffe/torchvision VGG head slice (``0`` Linear, ``1`` ReLU, ``2`` Dropout), so a
    block cut from a pretrained head and a fresh block have the same state-dict keys.

    Args:
        in_features: input width.
        out_features: output width.
        dropout: dropout probability after the ReLU (0 disables it).
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.5):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FCBlock: dropout must be in [0, 1), got {dropout}")
        super().__init__(
            init_fc(nn.Linear(in_features, out_features)),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.in_features = in_features
        self.out_features = out_features


def fc_stack(in_features: int, dims: Sequence[int], dropout: float = 0.5) -> nn.Sequential:
    """A stack of :class:`FCBlock` with the given output widths (empty ``dims`` gives identity).

    Args:
        in_features: input width of the first block.
        dims: output width of each block, in order.
        dropout: dropout probability of every block.
    """
    blocks = []
    width = in_features
    for i, dim in enumerate(dims):
        if int(dim) < 1:
            raise ValueError(f"fc_stack: dims[{i}] must be a positive width, got {dim}")
        blocks.append(FCBlock(width, int(dim), dropout))
        width = int(dim)
    return nn.Sequential(*blocks)


class Classifier(nn.Linear):
    """ID / attribute classifier: a linear layer with N(0, std) weights and zero bias.

    Args:
        in_features: feature width.
        num_classes: number of classes.
        std: weight standard deviation (0.001 by default, as in FastReID).
    """

    def __init__(self, in_features: int, num_classes: int, std: float = 0.001):
        if num_classes < 1:
            raise ValueError(f"Classifier: num_classes must be >= 1, got {num_classes}")
        super().__init__(in_features, num_classes)
        nn.init.normal_(self.weight, std=std)
        nn.init.zeros_(self.bias)


def caffe_xavier_(linear: nn.Linear) -> nn.Linear:
    """Caffe's ``xavier`` filler with a ``constant`` (0) bias filler, in place.

    Caffe's XavierFiller (default ``variance_norm: FAN_IN``) draws U(-a, a) with ``a = sqrt(3 / fan_in)``
    (not Glorot's fan-in + fan-out); the RAM authors' new layers use it (train_RAM_finetune.prototxt:269-274).
    """
    bound = math.sqrt(3.0 / linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


INITS = {"kaiming": init_fc, "xavier": caffe_xavier_}


def reset_linear_layers(module: nn.Module, init: str = "kaiming") -> nn.Module:
    """Re-initialise every ``nn.Linear`` inside ``module`` in place (``kaiming``: :func:`init_fc`,
    ``xavier``: :func:`caffe_xavier_`)."""
    if init not in INITS:
        raise ValueError(f"reset_linear_layers: init must be one of {sorted(INITS)}, got {init!r}")
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            INITS[init](layer)
    return module


class L2Scale(nn.Module):
    """``scale * x / ||x||`` over each row: Caffe's NormalizationL2 + Power(scale) in front of a classifier.

    The RAM authors' layer divides by the plain L2 norm (normalization_l2_layer); a zero row would be
    NaN there, here it stays 0 (``eps`` 1e-12 under the norm).
    """

    def __init__(self, scale: float = 10.0, eps: float = 1e-12):
        super().__init__()
        self.scale, self.eps = float(scale), float(eps)

    def forward(self, x):  # noqa: D102
        flat = x.flatten(1)
        return (self.scale * flat / flat.norm(dim=1, keepdim=True).clamp_min(self.eps)).view_as(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
