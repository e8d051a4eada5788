"""Batch-hard triplet loss (Hermans, Beyer, Leibe, "In Defense of the Triplet Loss", 2017).

For every anchor of a P x K batch: the farthest sample of its identity and the closest sample of any
other identity, ``max(0, d(a, p) - d(a, n) + margin)`` (or the soft margin ``log(1 + exp(d_ap - d_an))``),
averaged over the anchors that have both a positive and a negative. A batch without any such anchor
(a single identity, or every identity seen once) gives exactly 0 with finite gradients.

Distances are Euclidean (SCAN sec. 3.3 ranks by L2 distance); the square root is taken of the squared
distance clamped at 1e-12, so identical features (distance 0) give finite (zero) gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["pairwise_euclidean", "batch_hard_triplet_loss", "TripletLoss"]


def pairwise_euclidean(x: Tensor, eps: float = 1e-12) -> Tensor:
    """``(N, D)`` -> ``(N, N)`` Euclidean distances, ``sqrt(max(|a|^2 + |b|^2 - 2 a.b, eps))``."""
    x = x.float()
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp(min=eps).sqrt()


def batch_hard_triplet_loss(feats: Tensor, labels: Tensor, margin: float = 0.3,
                            soft_margin: bool = False) -> tuple[Tensor, Tensor]:
    """Batch-hard triplet loss and the fraction of anchors whose triplet is already satisfied.

    Args:
        feats: ``(N, D)`` embeddings.
        labels: ``(N,)`` identity labels.
        margin: the hinge margin (ignored with ``soft_margin``).
        soft_margin: use ``softplus(d_ap - d_an)`` instead of the hinge.

    Returns:
        ``(loss, satisfied)``: the mean over valid anchors (0 when there is none), and the fraction of
        valid anchors with ``d_an > d_ap`` (detached; 0 when there is none).
    """
    if feats.dim() != 2:
        raise ValueError(f"batch_hard_triplet_loss: feats must be (N, D), got shape {tuple(feats.shape)}")
    if labels.shape != feats.shape[:1]:
        raise ValueError(f"batch_hard_triplet_loss: labels must be (N,) = ({feats.shape[0]},), "
                         f"got shape {tuple(labels.shape)}")
    dist = pairwise_euclidean(feats)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=feats.device)
    pos, neg = same & ~eye, ~same
    valid = pos.any(dim=1) & neg.any(dim=1)
    d_ap = torch.where(pos, dist, torch.full_like(dist, -1.0)).max(dim=1).values
    d_an = torch.where(neg, dist, torch.full_like(dist, float("inf"))).min(dim=1).values
    if not bool(valid.any()):
        zero = feats.sum() * 0.0
        return zero.float(), zero.detach().float()
    d_ap, d_an = d_ap[valid], d_an[valid]
    diff = d_ap - d_an
    losses = nn.functional.softplus(diff) if soft_margin else (diff + margin).clamp(min=0)
    return losses.mean(), (d_an > d_ap).float().mean().detach()


class TripletLoss(nn.Module):
    """Module form of :func:`batch_hard_triplet_loss` (returns the loss only).

    Args:
        margin: hinge margin (SCAN: a config value, default 0.3).
        soft_margin: soft-margin variant instead of the hinge.
    """

    def __init__(self, margin: float = 0.3, soft_margin: bool = False) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"TripletLoss: margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.soft_margin = bool(soft_margin)

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        return batch_hard_triplet_loss(feats, labels, self.margin, self.soft_margin)[0]

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft_margin={self.soft_margin}"
