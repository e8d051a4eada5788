"""RAM's pictures (Liu et al., ICME 2018, Fig. 3): feature-map responses of its branches.

After each test, ``response_maps.png``: the tested model's ``M`` (Conv branch), ``BN(M)`` (BN branch, when
it has one) and ``M`` with the Region branch's rows (when it has one). After a staged run,
``response_maps_fig3.png``: the paper's figure across the steps, ``M`` of the baseline model, ``BN(M)`` of the
BN model and ``M`` of the BN+R model, on the same images. Named by ``conf/model/ram.yaml``'s ``figures``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vreid_lightning.viz.figures import Figures, check_count, query_images
from vreid_lightning.viz.response_maps import response_map, save_response_grid

__all__ = ["ResponseMaps", "branch_maps"]

# Fig. 3's columns across the steps: step -> (column title, the network's map it shows)
_ACROSS_STEPS = {"baseline": ("Conv branch (baseline): M", "feature_map"),
                 "bn": ("BN branch (BN): BN(M)", "bn_feature_map"),
                 "bn_r": ("Region branch (BN+R): M", "feature_map")}


@torch.no_grad()
def branch_maps(net: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """One RAM network's response maps (eval mode, mode restored): M, BN(M) with a BN branch, M again under
    the Region branch's title with a Region branch."""
    was_training = net.training
    net.eval()
    try:
        maps = {"Conv branch: M": response_map(net.feature_map(x)).cpu()}
        if net.bn is not None:
            maps["BN branch: BN(M)"] = response_map(net.bn_feature_map(x)).cpu()
        if net.region is not None:
            maps["Region branch: M"] = maps["Conv branch: M"]
    finally:
        net.train(was_training)
    return maps


class ResponseMaps(Figures):
    """RAM Fig. 3 style response maps of ``images`` query images (one per identity)."""

    def __init__(self, images: int = 6) -> None:
        self.images = check_count(images, "images")

    def after_test(self, module: Any, dm: Any, out: Path) -> list[Path]:
        x, shown = query_images(dm, self.images)
        net = module.net
        maps = branch_maps(net, x.to(module.device))
        h = next(iter(maps.values())).shape[1]
        bounds = net.region.bounds(h) if net.region is not None else None
        return [save_response_grid(shown, maps, Path(out) / "response_maps.png", region_bounds=bounds)]

    def across_stages(self, dm: Any, out: Path, stage_ckpts: Mapping[str, str | None],
                      load: Callable[[str], Any]) -> list[Path]:
        if not all(stage_ckpts.get(s) for s in _ACROSS_STEPS):
            return []
        x, shown = query_images(dm, self.images)
        maps: dict[str, Tensor] = {}
        bounds = None
        for stage, (title, which) in _ACROSS_STEPS.items():
            net = load(str(stage_ckpts[stage])).net.eval()
            with torch.no_grad():
                m = getattr(net, which)(x)
            maps[title] = response_map(m)
            if stage == "bn_r":
                bounds = net.region.bounds(m.shape[2])
        return [save_response_grid(shown, maps, Path(out) / "response_maps_fig3.png", region_bounds=bounds)]
