"""The SCAN objective (Teng et al., PCM 2018, sec. 4.1 and Fig. 4).

``L = w_ce * CE(ID logits, pid) + w_tri * batch-hard triplet(512-d feature, pid)``, both weights 1
("The loss weight for cross entropy loss is set to 1 and the loss weight for triplet loss is also set
to 1.0"). The paper names the triplet loss without its variant or margin: batch-hard mining over the
P x K batch with margin 0.3 is our choice (a config value, as is the soft margin).
"""

from __future__ import annotations

from torch import Tensor, nn

from vreid_lightning.losses.cross_entropy import CrossEntropyLoss
from vreid_lightning.losses.triplet import batch_hard_triplet_loss

__all__ = ["SCANLoss"]


class SCANLoss(nn.Module):
    """Cross-entropy on the ID logits plus batch-hard triplet on the feature.

    Args:
        ce_weight: weight of the cross-entropy (sec. 4.1: 1).
        triplet_weight: weight of the triplet loss (sec. 4.1: 1).
        margin: triplet margin (paper unstated: 0.3).
        soft_margin: soft-margin triplet instead of the hinge.
        label_smoothing: of the cross-entropy (0: the paper's plain softmax loss).
    """

    def __init__(self, ce_weight: float = 1.0, triplet_weight: float = 1.0, margin: float = 0.3,
                 soft_margin: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if ce_weight < 0 or triplet_weight < 0 or ce_weight + triplet_weight == 0:
            raise ValueError(f"SCANLoss: weights must be >= 0 and not both 0, got ce_weight={ce_weight}, "
                             f"triplet_weight={triplet_weight}")
        if margin < 0:
            raise ValueError(f"SCANLoss: margin must be >= 0, got {margin}")
        self.ce_weight = float(ce_weight)
        self.triplet_weight = float(triplet_weight)
        self.margin = float(margin)
        self.soft_margin = bool(soft_margin)
        self.ce = CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, feats: Tensor, logits: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(total, parts)``; parts: ``ce``, ``triplet`` (unweighted) and ``triplet_satisfied``."""
        ce = self.ce(logits, targets)
        tri, satisfied = batch_hard_triplet_loss(feats, targets, self.margin, self.soft_margin)
        total = self.ce_weight * ce + self.triplet_weight * tri
        return total, {"ce": ce.detach(), "triplet": tri.detach(), "triplet_satisfied": satisfied}
