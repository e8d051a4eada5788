"""Batch-hard triplet loss against a plain per-anchor reference, and the SCAN objective."""

from __future__ import annotations

import math

import pytest
import torch

from vreid_lightning.losses import SCANLoss, TripletLoss, batch_hard_triplet_loss


def reference_batch_hard(feats: torch.Tensor, labels: torch.Tensor, margin: float, soft: bool) -> float:
    """Plain loops: for each anchor, the farthest positive and the closest negative (Hermans et al. 2017)."""
    n = len(labels)
    losses = []
    for a in range(n):
        pos = [math.dist(feats[a].tolist(), feats[p].tolist()) for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [math.dist(feats[a].tolist(), feats[q].tolist()) for q in range(n) if labels[q] != labels[a]]
        if not pos or not neg:
            continue
        diff = max(pos) - min(neg)
        losses.append(math.log1p(math.exp(diff)) if soft else max(0.0, diff + margin))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_reference(soft: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(12, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])[torch.randperm(12, generator=g)]
    loss, _ = batch_hard_triplet_loss(feats, labels, margin=0.3, soft_margin=soft)
    assert loss.item() == pytest.approx(reference_batch_hard(feats, labels, 0.3, soft), rel=1e-5, abs=1e-6)


def test_unbalanced_batch_and_singletons_equal_reference():
    feats = torch.randn(7, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    labels = torch.tensor([5, 5, 5, 9, 2, 2, 7])  # 9 and 7 have no positive: not anchors
    loss, _ = batch_hard_triplet_loss(feats, labels, margin=0.5)
    assert loss.item() == pytest.approx(reference_batch_hard(feats, labels, 0.5, False), rel=1e-5)


def test_single_identity_is_zero_with_finite_gradients():
    feats = torch.randn(6, 8, requires_grad=True)
    loss, satisfied = batch_hard_triplet_loss(feats, torch.zeros(6, dtype=torch.long), margin=0.3)
    loss.backward()
    assert loss.item() == 0.0 and satisfied.item() == 0.0
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() == 0


def test_all_equal_features_give_margin_and_finite_gradients():
    feats = torch.ones(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss, satisfied = batch_hard_triplet_loss(feats, labels, margin=0.3)
    loss.backward()
    assert loss.item() == pytest.approx(0.3, abs=1e-5)
    assert reference_batch_hard(feats.detach(), labels, 0.3, False) == pytest.approx(0.3)
    assert satisfied.item() == 0.0
    assert torch.isfinite(feats.grad).all()


def test_gradient_pulls_positives_and_pushes_negatives():
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = TripletLoss(margin=1.0)(feats, labels)
    loss.backward()
    torch.optim.SGD([feats], lr=0.1).step()
    after, _ = batch_hard_triplet_loss(feats.detach(), labels, margin=1.0)
    assert after < loss.detach()


def test_separated_batch_is_zero_and_satisfied():
    feats = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    loss, satisfied = batch_hard_triplet_loss(feats, torch.tensor([0, 0, 1, 1]), margin=0.3)
    assert loss.item() == 0.0 and satisfied.item() == 1.0


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"labels must be \(N,\) = \(4,\)"):
        batch_hard_triplet_loss(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="feats must be"):
        batch_hard_triplet_loss(torch.zeros(4), torch.zeros(4, dtype=torch.long))


def test_scan_loss_weights_and_parts():
    g = torch.Generator().manual_seed(0)
    feats, logits = torch.randn(8, 6, generator=g), torch.randn(8, 4, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    total, parts = SCANLoss()(feats, logits, labels)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    tri = reference_batch_hard(feats, labels, 0.3, False)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert parts["triplet"].item() == pytest.approx(tri, rel=1e-5)
    assert total.item() == pytest.approx(ce.item() + tri, rel=1e-5)  # sec. 4.1: weights 1 and 1
    total2, _ = SCANLoss(ce_weight=0.5, triplet_weight=2.0, margin=0.3)(feats, logits, labels)
    assert total2.item() == pytest.approx(0.5 * ce.item() + 2.0 * tri, rel=1e-5)
    with pytest.raises(ValueError, match="not both 0"):
        SCANLoss(ce_weight=0.0, triplet_weight=0.0)
