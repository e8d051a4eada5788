"""Networks: backbones (registry) and the per-paper models built on them."""
from __future__ import annotations

from .backbones import BACKBONES, Backbone, build_backbone

__all__ = ["BACKBONES", "Backbone", "build_backbone"]
