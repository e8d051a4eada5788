"""The RAM objective (Liu et al., ICME 2018, Eq. 1).

``L = l_conv + lambda1 * l_BN + lambda2 * l_re + lambda3 * l_att`` where every term is a softmax
(cross-entropy) classification loss: ``l_conv``/``l_BN`` on vehicle IDs from the Conv/BN branches,
``l_re`` the ``k`` equally weighted region ID losses, ``l_att`` the sum of one loss per attribute.
All weights are 1 (RAM sec. 3.2). ``l_re`` sums its region losses by default (each with weight
``region_loss_weight``, 1 in the paper; the authors' Caffe nets give each ``loss-part-N`` 0.5,
train_RAM_finetune.prototxt:568,670,772); ``region_reduction="mean"`` averages them instead. The
authors' extra ``id-parts`` classifier on the concatenated regions (logits ``parts``) adds
``lambda_parts`` x its loss (1, :824-830).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vreid_lightning.losses.cross_entropy import CrossEntropyLoss

__all__ = ["RAMLoss"]


class RAMLoss(nn.Module):
    """RAM Eq. 1 over the logits of the active branches.

    Terms come from the logits keys of :class:`~vreid_lightning.models.ram.RAMNet`: ``conv``, ``bn``,
    ``region_*`` and ``attr_<name>``; absent branches contribute nothing. Attribute labels equal to
    ``ignore_index`` (unlabelled) are ignored; an attribute with no labelled sample in the batch adds 0.

    Args:
        lambda_bn: ``lambda1``, weight of ``l_BN`` (1, RAM sec. 3.2).
        lambda_region: ``lambda2``, weight of ``l_re`` (1).
        lambda_attr: ``lambda3``, weight of ``l_att`` (1).
        region_reduction: ``"sum"`` (default) or ``"mean"`` of the ``k`` region losses.
        region_loss_weight: weight of each region loss inside ``l_re`` (1; the authors' 0.5).
        lambda_parts: weight of the ``parts`` classifier's loss, when the network has that classifier.
        label_smoothing: label smoothing of every cross-entropy (0: the paper's plain softmax loss).
        ignore_index: label of unlabelled samples (-1).
    """

    def __init__(
        self,
        lambda_bn: float = 1.0,
        lambda_region: float = 1.0,
        lambda_attr: float = 1.0,
        region_reduction: str = "sum",
        label_smoothing: float = 0.0,
        ignore_index: int = -1,
        region_loss_weight: float = 1.0,
        lambda_parts: float = 1.0,
    ):
        super().__init__()
        if region_reduction not in ("sum", "mean"):
            raise ValueError(f"RAMLoss: region_reduction must be 'sum' or 'mean', got {region_reduction!r}")
        self.lambda_bn = float(lambda_bn)
        self.lambda_region = float(lambda_region)
        self.lambda_attr = float(lambda_attr)
        self.region_reduction = region_reduction
        self.region_loss_weight = float(region_loss_weight)
        self.lambda_parts = float(lambda_parts)
        self.ce = CrossEntropyLoss(label_smoothing=label_smoothing, ignore_index=ignore_index)

    def forward(
        self,
        logits: Mapping[str, Tensor],
        targets: Tensor,
        attributes: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the total loss and its named parts.

        Args:
            logits: ``RAMOutput.logits``.
            targets: ``(B,)`` training identity labels in ``[0, num_classes)``.
            attributes: attribute name -> ``(B,)`` labels (``ignore_index`` = unlabelled); needed for
                every ``attr_<name>`` logit.

        Returns:
            ``(total, parts)``: ``parts`` holds detached ``conv``, ``bn``, ``region``, ``parts``, ``attr`` (the
            unweighted terms of the active branches) and each ``region_<r>`` / ``attr_<name>`` loss.
        """
        parts: dict[str, Tensor] = {}
        regions: list[Tensor] = []
        attrs: list[Tensor] = []
        total = None
        for key, value in logits.items():
            if key in ("conv", "bn", "parts"):
                parts[key] = self.ce(value, targets)
            elif key.startswith("region_"):
                parts[key] = self.ce(value, targets)
                regions.append(parts[key])
            elif key.startswith("attr_"):
                name = key[len("attr_"):]
                if attributes is None or name not in attributes:
                    have = sorted(attributes) if attributes is not None else []
                    raise KeyError(f"RAMLoss: logits '{key}' need attribute labels '{name}'; got labels for {have}")
                parts[key] = self.ce(value, attributes[name])
                attrs.append(parts[key])
            else:
                raise ValueError(f"RAMLoss: unknown logits key {key!r}; expected conv, bn, region_*, parts, attr_<name>")
        if regions:
            l_re = self.region_loss_weight * torch.stack(regions).sum()
            parts["region"] = l_re / len(regions) if self.region_reduction == "mean" else l_re
        if attrs:
            parts["attr"] = torch.stack(attrs).sum()
        weights = {"conv": 1.0, "bn": self.lambda_bn, "region": self.lambda_region, "parts": self.lambda_parts,
                   "attr": self.lambda_attr}
        for name, weight in weights.items():
            if name in parts:
                term = weight * parts[name]
                total = term if total is None else total + term
        if total is None:
            raise ValueError("RAMLoss: no logits given")
        return total, {k: v.detach() for k, v in parts.items()}
