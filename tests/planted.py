"""A planted-answer method for end-to-end tests, and a plain reference evaluation to check it against.

:class:`PlantedModule`'s retrieval feature is a fixed function of the image (2x2 block means of the three
channels, scaled per dimension by a learnable ``w``), so the right metrics of a test are known without
training: :func:`reference_metrics` computes them with plain loops from the same images. The feature is
chosen so that each protocol fault changes the answer: it differs between an image and its mirror (flip),
its norm varies (cosine vs euclidean), same-camera images of a vehicle are close (the junk rule), and
the query and gallery sets differ in size (swapping them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.methods.base import ReIDModule

__all__ = ["PlantedModule", "planted_feature", "reference_metrics"]


def planted_feature(images: Tensor, w: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 12)``: 2x2 block means per channel, times ``w``."""
    return F.adaptive_avg_pool2d(images, 2).flatten(1) * w


class PlantedModule(ReIDModule):
    """A method whose feature is :func:`planted_feature`; training moves ``w`` towards ``target`` (MSE)."""

    def __init__(self, optimizer: Any = None, scheduler: Any = None, evaluation: Any = None, num_classes: int = 2,
                 target: float = 3.0) -> None:
        super().__init__(optimizer, scheduler, evaluation, num_classes)
        self.save_hyperparameters()
        self.w = nn.Parameter(torch.ones(12))
        self.target = float(target)

    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], None]:
        goal = torch.linspace(1.0, self.target, 12, device=self.w.device)
        loss = ((self.w - goal) ** 2).sum() + 0.0 * batch["image"].sum()
        return loss, {}, None

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        return {"planted": planted_feature(images, self.w)}


def _ap_and_first_hit(dist: np.ndarray, good: np.ndarray) -> tuple[float, int]:
    order = np.argsort(dist, kind="stable")
    hits = good[order]
    ranks = np.flatnonzero(hits)
    precision = np.arange(1, len(ranks) + 1) / (ranks + 1)
    return float(precision.mean()), int(ranks[0])


def reference_metrics(feats: np.ndarray, pids: np.ndarray, cams: np.ndarray, query: np.ndarray, gallery: np.ndarray,
                      metric: str = "cosine", junk: bool = True) -> dict[str, float]:
    """mAP and rank-1 of the image protocol, one query at a time, written plainly.

    Good = same id (and another camera when ``junk``); junk (same id and camera) is left out of the ranking.
    """
    if metric == "cosine":
        f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        dist_all = 1.0 - f[query] @ f[gallery].T
    else:
        dist_all = np.linalg.norm(feats[query][:, None, :] - feats[gallery][None, :, :], axis=2)
    aps, r1 = [], []
    for i, q in enumerate(query):
        same = pids[gallery] == pids[q]
        bad = same & (cams[gallery] == cams[q]) if junk else np.zeros_like(same)
        keep = ~bad
        good = (same & ~bad)[keep]
        if not good.any():
            continue
        ap, first = _ap_and_first_hit(dist_all[i][keep], good)
        aps.append(ap)
        r1.append(first == 0)
    return {"mAP": float(np.mean(aps)), "rank1": float(np.mean(r1))}
