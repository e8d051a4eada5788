"""SCAN's picture (Teng et al., 2018, Fig. 5): the spatial attention weights of query images.

``spatial_attention_fig5.png``: odd rows the query images (one per identity), even rows the weights of the
spatial attention branch (SAB), min-max scaled per image; the title gives their raw range. A network without
a spatial branch (the baseline, ``branches: channel``) draws nothing. Named by ``conf/model/scan.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vreid_lightning.viz.figures import Figures, check_count, query_images
from vreid_lightning.viz.response_maps import save_response_grid

__all__ = ["SpatialAttention", "spatial_maps"]


@torch.no_grad()
def spatial_maps(net: nn.Module, x: Tensor) -> Tensor:
    """SAB weights ``(B, h, w)`` of images ``x`` (network input), in eval mode (mode restored)."""
    was_training = net.training
    net.eval()
    try:
        return net(x).spatial[:, 0].cpu()
    finally:
        net.train(was_training)


class SpatialAttention(Figures):
    """SCAN Fig. 5 of ``images`` query images."""

    def __init__(self, images: int = 8) -> None:
        self.images = check_count(images, "images")

    def after_test(self, module: Any, dm: Any, out: Path) -> list[Path]:
        net = module.net
        if getattr(net.attention, "spatial", None) is None:
            return []
        x, shown = query_images(dm, self.images)
        maps = spatial_maps(net, x.to(module.device))
        lo, hi = float(maps.min()), float(maps.max())
        flat = maps.flatten(1)
        scaled = (maps - flat.min(1).values[:, None, None]) / (flat.max(1).values - flat.min(1).values).clamp(
            min=1e-12)[:, None, None]
        title = f"spatial attention (SAB weights {lo:.3f}-{hi:.3f}, min-max per image)"
        return [save_response_grid(shown, {title: scaled}, Path(out) / "spatial_attention_fig5.png",
                                   layout="interleaved")]
