"""RNN-HA's picture (Wei et al., ACCV 2018, Fig. 3): the attention maps ``a`` of Eq. 7 on test images.

``attention_maps.png``: one row per query image (one per identity), the image and its attention map, min-max
scaled per image. A network without attention (RNN-H w/o attention) draws nothing. Named by
``conf/model/rnn_ha.yaml``; Fig. 4 (rank lists) is the results writer's ``rank_list.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vreid_lightning.viz.figures import Figures, check_count, query_images
from vreid_lightning.viz.response_maps import save_response_grid

__all__ = ["AttentionMaps", "attention_maps"]


@torch.no_grad()
def attention_maps(net: nn.Module, x: Tensor) -> Tensor | None:
    """``a`` of Eq. 7 for a batch, ``(B, h, w)``, min-max scaled per image to [0, 1] (None without attention)."""
    was_training = net.training
    net.eval()
    try:
        a = net(x).attention
    finally:
        net.train(was_training)
    if a is None:
        return None
    flat = a.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return ((a - lo) / (hi - lo).clamp(min=1e-12)).cpu()


class AttentionMaps(Figures):
    """RNN-HA Fig. 3 of ``images`` query images."""

    def __init__(self, images: int = 8) -> None:
        self.images = check_count(images, "images")

    def after_test(self, module: Any, dm: Any, out: Path) -> list[Path]:
        if module.net.attention is None:
            return []
        x, shown = query_images(dm, self.images)
        maps = attention_maps(module.net, x.to(module.device))
        return [save_response_grid(shown, {"attention a (Eq. 7)": maps}, Path(out) / "attention_maps.png")]
