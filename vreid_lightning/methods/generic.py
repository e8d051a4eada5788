"""The generic method: a network and a loss from config (``_target_``), trained and evaluated by the base.

A method whose training is "run the network, apply the loss" needs no LightningModule of its own: its
``conf/model/<name>.yaml`` names this class and gives ``net`` and ``loss`` as Hydra ``_target_`` configs.

The contract:

- ``net``: an ``nn.Module`` built as ``instantiate(net, backbone=<backbone config>, num_classes=<training
  identities>)``, with a ``feature_dim`` attribute; ``net(images)`` returns an object with ``features``
  (name -> ``(B, D)``, the retrieval features, used in eval mode) and ``logits`` (name -> ``(B, C)``).
- ``loss``: an ``nn.Module`` built as ``instantiate(loss, num_classes=..., feature_dim=net.feature_dim)``;
  ``loss(out, batch)`` returns ``(total, named parts)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from vreid_lightning.methods.base import ReIDModule
from vreid_lightning.methods.parts import build_part

__all__ = ["GenericReIDModule"]


class GenericReIDModule(ReIDModule):
    """Network + loss from config on the shared base.

    Args:
        net: Hydra config of the network (``_target_`` and its keyword arguments).
        loss: Hydra config of the loss.
        backbone: the backbone config (given to the network).
        num_classes: training identities (given to the network and the loss).
        accuracy_logits: the ``logits`` entry whose training accuracy is logged (None: none).
        optimizer, scheduler, evaluation: as for every method.
        figures: the config of the method's pictures (``model.figures``; null: none), kept with the
            hyper-parameters for the callbacks that draw them.
    """

    def __init__(self, net: Mapping[str, Any], loss: Mapping[str, Any], backbone: Mapping[str, Any],
                 num_classes: int, accuracy_logits: str | None = "id", optimizer: Any = None, scheduler: Any = None,
                 evaluation: Mapping[str, Any] | None = None, figures: Mapping[str, Any] | None = None) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), num_classes)
        self.save_hyperparameters()
        self.net = build_part(net, "net", backbone=dict(backbone), num_classes=int(num_classes))
        self.criterion = build_part(loss, "loss", num_classes=int(num_classes), feature_dim=int(self.net.feature_dim))
        self.accuracy_logits = accuracy_logits

    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        out = self.net(batch["image"])
        total, parts = self.criterion(out, batch)
        return total, parts, out.logits[self.accuracy_logits] if self.accuracy_logits else None

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        return dict(self.net(images).features)
