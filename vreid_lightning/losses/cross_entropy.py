"""Softmax cross-entropy with label smoothing and an ignore label, safe for all-ignored batches.

``torch.nn.functional.cross_entropy`` returns NaN when every target of a batch is ``ignore_index``
(0 / 0). Attribute labels are often missing (VehicleID labels colour/model for a part of its images),
so a batch may hold no labelled sample: here it contributes exactly 0 with zero (finite) gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["cross_entropy", "CrossEntropyLoss"]


def cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0, ignore_index: int = -1) -> Tensor:
    """Mean cross-entropy over the samples whose target is not ``ignore_index``.

    Matches ``F.cross_entropy(logits, targets, label_smoothing=..., ignore_index=...)`` (the smoothed
    target puts ``1 - eps + eps / C`` on the label and ``eps / C`` elsewhere) whenever at least one
    target is labelled, and returns 0 when none is.

    Args:
        logits: ``(N, C)`` unnormalised scores.
        targets: ``(N,)`` class indices in ``[0, C)`` or ``ignore_index``.
        label_smoothing: ``eps`` in ``[0, 1)``.
        ignore_index: target value of unlabelled samples.

    Returns:
        A scalar tensor (float32 or wider).
    """
    if logits.dim() != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"cross_entropy: targets must be (N,) = ({logits.shape[0]},), got shape {tuple(targets.shape)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    num_classes = logits.shape[1]
    targets = targets.long()
    valid = targets != ignore_index
    invalid = valid & ((targets < 0) | (targets >= num_classes))
    if bool(invalid.any()):
        bad = targets[invalid][0].item()
        raise ValueError(
            f"cross_entropy: target {bad} is outside [0, {num_classes}) and is not ignore_index={ignore_index}"
        )
    logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(dim=1)
    nll = -logp.gather(1, torch.where(valid, targets, 0).unsqueeze(1)).squeeze(1)
    if label_smoothing > 0:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(dim=1)
    nll = torch.where(valid, nll, torch.zeros_like(nll))
    return nll.sum() / valid.sum().clamp(min=1)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy`.

    Args:
        label_smoothing: ``eps`` in ``[0, 1)`` (0 = plain softmax loss, as in RAM).
        ignore_index: target value of unlabelled samples (-1, the datasets' ``MISSING``).
    """

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -1):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean loss over labelled samples (0 when none is labelled)."""
        return cross_entropy(logits, targets, self.label_smoothing, self.ignore_index)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index}"
