"""BoT's objective (Luo et al., CVPRW 2019, 'Standard Baseline', 'Label Smoothing', 'BNNeck', 'Center Loss'): ID cross-entropy with label smoothing on the
BNNeck feature's logits, batch-hard triplet on the pooled feature, and center loss on the pooled feature.

``L = L_ID + L_Triplet + beta * L_C`` (paper, 'Center Loss'), reusing the suite's generic cross-entropy and
batch-hard triplet terms.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.losses.cross_entropy import cross_entropy
from vreid_lightning.losses.triplet import batch_hard_triplet_loss

__all__ = ["CenterLoss", "BoTLoss"]


class CenterLoss(nn.Module):
    """Center loss (Wen et al., ECCV 2016) as in BoT 'Center Loss': ``1/2 sum_j ||f_j - c_{y_j}||^2`` over the batch,
    divided by the batch size (a mean over samples).

    Args:
        num_classes: identities (one learned center each).
        feature_dim: feature dimension.
    """

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(int(num_classes), int(feature_dim)))

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        return 0.5 * (feats.float() - self.centers[labels].float()).pow(2).sum(dim=1).mean()


class BoTLoss(nn.Module):
    """``ce + triplet + center_weight * center`` on a :class:`~vreid_lightning.models.bot.BoTOutput`.

    Args:
        num_classes, feature_dim: given by the generic module (identities; the pooled feature's size).
        label_smoothing: epsilon of the smoothed ID target ('Label Smoothing': 0.1).
        triplet_margin: batch-hard triplet margin ('Standard Baseline' / authors' config/defaults.py SOLVER.MARGIN: 0.3).
        soft_margin: soft-margin triplet ``log(1 + exp(d_ap - d_an))`` instead of the hinge (FastReID's VehicleID
            config: ``MARGIN: 0.0``).
        center_weight: beta ('Center Loss': 0.0005); 0 leaves the center loss out (FastReID's BoT).
    """

    def __init__(self, num_classes: int, feature_dim: int, label_smoothing: float = 0.1,
                 triplet_margin: float = 0.3, soft_margin: bool = False, center_weight: float = 0.0005) -> None:
        super().__init__()
        if center_weight < 0 or triplet_margin < 0:
            raise ConfigError(f"model.loss: center_weight and triplet_margin must be >= 0, got {center_weight} and "
                              f"{triplet_margin}")
        self.label_smoothing = float(label_smoothing)
        self.triplet_margin = float(triplet_margin)
        self.soft_margin = bool(soft_margin)
        self.center_weight = float(center_weight)
        self.center = CenterLoss(num_classes, feature_dim) if self.center_weight > 0 else None

    def forward(self, out: Any, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        pids = batch["pid"]
        emb = out.embeddings["global"]
        ce = cross_entropy(out.logits["id"], pids, label_smoothing=self.label_smoothing)
        tri, _ = batch_hard_triplet_loss(emb, pids, self.triplet_margin, self.soft_margin)
        parts = {"ce": ce, "triplet": tri}
        total = ce + tri
        if self.center is not None:
            parts["center"] = self.center(emb, pids)
            total = total + self.center_weight * parts["center"]
        return total, parts
