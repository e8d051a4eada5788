"""SE-ResNeXt101-32x4d and SENet-154 (Hu et al. 2018) from timm, as feature extractors.

Two implementations of each, chosen by ``implementation``:

- ``timm``: timm's ResNet-based models (``seresnext101_32x4d``, ``senet154``): stem max-pool with padding 1,
  timm key names (``conv1``, ``layer1.0.se.fc1``) and timm's ImageNet weights.
- ``cadene``: timm's ``legacy_*`` ports of Cadene's ``pretrainedmodels`` SENet, the model the VehicleNet
  authors use (layumi/AICIty-reID-2020 pytorch/model.py:317): stem ``MaxPool2d(3, 2, ceil_mode=True)`` without
  padding, Cadene's key names (``layer0.conv1``, ``layer1.0.se_module.fc1``) and Cadene's ImageNet weights.
  The two give different maps from the same weights (the stem alone moves the pooled feature by ~5e-3).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .base import Backbone
from .registry import register_backbone
from .weights import WEIGHTS_HINT

__all__ = ["TimmBackbone", "IMPLEMENTATIONS", "set_last_stride"]


def _timm_source(model_name: str) -> str:
    """Describe where timm looks for the default pretrained weights of ``model_name``."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub.constants import HF_HUB_CACHE

        return f"the Hugging Face hub repo {cfg.hf_hub_id} (local cache {HF_HUB_CACHE}, then download)"
    if cfg is not None and cfg.url:
        return f"the torch.hub cache, then a download from {cfg.url}"
    return "timm's default weight source"


def _create(model_name: str, pretrained: bool, name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` without pooling/classifier; a failed weight fetch becomes a RuntimeError."""
    import timm  # imported here: it is slow to import and only these two backbones need it

    options = dict(num_classes=0, global_pool="", **kwargs)
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **options)
    try:
        return timm.create_model(model_name, pretrained=True, **options)
    except Exception as err:  # any cache/network/format failure of the weight fetch
        raise RuntimeError(
            f"Could not load ImageNet weights for backbone '{name}': timm.create_model('{model_name}', "
            f"pretrained=True) tried {_timm_source(model_name)} ({type(err).__name__}: {err}). {WEIGHTS_HINT}"
        ) from err


def set_last_stride(model: nn.Module, stride: int, name: str) -> None:
    """Set the stride of ``layer4``'s first block (its 3x3 ``conv2`` and its downsample conv) to ``stride``.

    The VehicleNet authors' ``stride == 1`` for SE-ResNeXt (pytorch/model.py:318-320) and ResNet-50 (:80-82).
    """
    if stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {stride}")
    block = model.layer4[0]
    down = block.downsample[0] if block.downsample is not None else None
    if not isinstance(block.conv2, nn.Conv2d) or not isinstance(down, nn.Conv2d):
        raise ValueError(f"backbone {name}: layer4[0] has no strided conv2 + downsample conv; last_stride unsupported")
    block.conv2.stride = (stride, stride)
    down.stride = (stride, stride)


class TimmBackbone(Backbone):
    """A timm model without pooling and classifier; ``forward`` is its ``forward_features``.

    Args:
        model_name: timm architecture name, e.g. ``"seresnext101_32x4d"``.
        pretrained: Load timm's default pretrained tag (Hugging Face hub cache or download).
        registry_name: Our registry name, for error messages.
        last_stride: stride of layer4's first block (2: the original; 1: the re-ID choice, H/16 maps).
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    def __init__(
        self, model_name: str, pretrained: bool = False, registry_name: str | None = None, last_stride: int = 2,
        **kwargs: Any
    ) -> None:
        model = _create(model_name, pretrained, registry_name or model_name, **kwargs)
        super().__init__(out_channels=model.num_features)
        set_last_stride(model, int(last_stride), registry_name or model_name)
        self.model = model
        self.model_name = model_name
        self.last_stride = int(last_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's map (B, out_channels, H/32, W/32)."""
        return self.model.forward_features(x)

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept timm-native checkpoints (no ``model.`` prefix) and drop their ``fc`` classifier."""
        if any(k.startswith("model.") for k in state_dict):
            return dict(state_dict)
        return {f"model.{k}": v for k, v in state_dict.items() if not k.startswith(("fc.", "last_linear."))}


#: implementation -> timm model name prefix (``cadene``: timm's ports of Cadene's pretrainedmodels SENets)
IMPLEMENTATIONS = {"timm": "", "cadene": "legacy_"}


def _timm_name(base: str, implementation: str, name: str) -> str:
    if implementation not in IMPLEMENTATIONS:
        from vreid_lightning.errors import ConfigError

        raise ConfigError(f"backbone.implementation={implementation!r} ({name}): expected one of {list(IMPLEMENTATIONS)}")
    return IMPLEMENTATIONS[implementation] + base


@register_backbone("se_resnext101_32x4d")
def se_resnext101_32x4d(pretrained: bool = False, implementation: str = "timm", **kwargs: Any) -> TimmBackbone:
    """SE-ResNeXt101-32x4d (2048 channels): timm ``seresnext101_32x4d`` or, with ``implementation="cadene"``,
    timm ``legacy_seresnext101_32x4d`` (Cadene's stem and key names)."""
    name = "se_resnext101_32x4d"
    return TimmBackbone(_timm_name("seresnext101_32x4d", implementation, name), pretrained=pretrained,
                        registry_name=name, **kwargs)


@register_backbone("senet154")
def senet154(pretrained: bool = False, implementation: str = "timm", **kwargs: Any) -> TimmBackbone:
    """SENet-154 (2048 channels): timm ``senet154`` or ``legacy_senet154`` (``implementation="cadene"``)."""
    return TimmBackbone(_timm_name("senet154", implementation, "senet154"), pretrained=pretrained,
                        registry_name="senet154", **kwargs)
