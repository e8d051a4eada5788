"""SE-ResNeXt101-32x4d and SENet-154 (Hu et al. 2018) from timm, as feature extractors."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .base import Backbone
from .registry import register_backbone
from .weights import WEIGHTS_HINT

__all__ = ["TimmBackbone"]


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


class TimmBackbone(Backbone):
    """A timm model without pooling and classifier; ``forward`` is its ``forward_features``.

    Args:
        model_name: timm architecture name, e.g. ``"seresnext101_32x4d"``.
        pretrained: Load timm's default pretrained tag (Hugging Face hub cache or download).
        registry_name: Our registry name, for error messages.
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    def __init__(
        self, model_name: str, pretrained: bool = False, registry_name: str | None = None, **kwargs: Any
    ) -> None:
        model = _create(model_name, pretrained, registry_name or model_name, **kwargs)
        super().__init__(out_channels=model.num_features)
        self.model = model
        self.model_name = model_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's map (B, out_channels, H/32, W/32)."""
        return self.model.forward_features(x)

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept timm-native checkpoints (no ``model.`` prefix) and drop their ``fc`` classifier."""
        if any(k.startswith("model.") for k in state_dict):
            return dict(state_dict)
        return {f"model.{k}": v for k, v in state_dict.items() if not k.startswith("fc.")}


@register_backbone("se_resnext101_32x4d")
def se_resnext101_32x4d(pretrained: bool = False, **kwargs: Any) -> TimmBackbone:
    """SE-ResNeXt101-32x4d (timm ``seresnext101_32x4d``, 2048 channels)."""
    return TimmBackbone("seresnext101_32x4d", pretrained=pretrained, registry_name="se_resnext101_32x4d", **kwargs)


@register_backbone("senet154")
def senet154(pretrained: bool = False, **kwargs: Any) -> TimmBackbone:
    """SENet-154 (timm ``senet154``, 2048 channels)."""
    return TimmBackbone("senet154", pretrained=pretrained, registry_name="senet154", **kwargs)
