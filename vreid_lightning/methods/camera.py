"""Camera classifier for camera verification (VehicleNet sec. IV-C): a CNN trained to recognise the
camera an image was taken by; its pooled features, clustered over query + gallery, give each test image a
camera cluster (``evaluation.camera_verification``).

The paper fine-tunes a DenseNet-121; any registry backbone works here. Trained and tested like every
method on the shared base, so a test run writes ``features.npz`` whose features are the camera-aware
ones (pass them to ``python -m vreid_lightning.evaluate --camera-features``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.methods.base import ReIDModule
from vreid_lightning.models.backbones import build_backbone

__all__ = ["CameraModule"]


class CameraModule(ReIDModule):
    """Backbone -> global average pooling -> BatchNorm -> linear camera classifier (cross-entropy).

    Args:
        backbone: backbone config (``name`` and its keyword arguments).
        num_cameras: camera classes; labels are the dataset's camera ids (``c001`` -> 1), used as class
            indices, so it must exceed the largest camera id.
        num_classes, attribute_classes: given by the runner (identities and attributes: unused here).
        optimizer, scheduler, evaluation: as for every method.
    """

    def __init__(self, backbone: Mapping[str, Any], num_cameras: int, num_classes: int = 2,
                 attribute_classes: Mapping[str, int] | None = None, optimizer: Any = None,
                 scheduler: Any = None, evaluation: Mapping[str, Any] | None = None) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), max(int(num_cameras), 2))
        self.save_hyperparameters()
        if isinstance(num_cameras, bool) or int(num_cameras) < 2:
            raise ConfigError(f"model.num_cameras: expected an int >= 2, got {num_cameras!r}")
        self.num_cameras = int(num_cameras)
        self.backbone = build_backbone(**dict(backbone))
        self.bn = nn.BatchNorm1d(self.backbone.out_channels)
        self.classifier = nn.Linear(self.backbone.out_channels, self.num_cameras)

    def _pooled(self, images: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(self.backbone(images), 1).flatten(1)

    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        cams = batch["camid"]
        if bool((cams < 0).any()):
            raise ConfigError("camera model: this dataset has no camera labels (camid -1); camera verification "
                              "needs a dataset with cameras")
        if bool((cams >= self.num_cameras).any()):
            raise ConfigError(f"model.num_cameras={self.num_cameras}: camera id {int(cams.max())} found; "
                              "set num_cameras above the largest camera id")
        logits = self.classifier(self.bn(self._pooled(batch["image"])))
        loss = F.cross_entropy(logits, cams)
        return loss, {"ce": loss.detach()}, logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # the base's training accuracy compares with batch["pid"]: here the labels are the cameras
        return super().training_step({**batch, "pid": batch["camid"]}, batch_idx)

    @torch.no_grad()
    def extract(self, images: Tensor) -> dict[str, Tensor]:
        return {"cam": self.bn(self._pooled(images))}
