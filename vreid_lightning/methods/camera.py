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
from torch import Tensor

from vreid_lightning.errors import ConfigError
from vreid_lightning.methods.base import ReIDModule
from vreid_lightning.methods.parts import build_part
from vreid_lightning.models.backbones import build_backbone

__all__ = ["CameraModule"]


class CameraModule(ReIDModule):
    """A camera classifier (``net``, e.g. :class:`~vreid_lightning.models.camera.CameraNet`) trained with
    cross-entropy on the camera labels.

    Args:
        backbone: backbone config (``name`` and its keyword arguments).
        net: Hydra config of the network, built with the backbone and ``num_classes=num_cameras``.
        num_cameras: camera classes; labels are the dataset's camera ids (``c001`` -> 1), used as class
            indices, so it must exceed the largest camera id.
        optimizer, scheduler, evaluation: as for every method.
    """

    def __init__(self, backbone: Mapping[str, Any], net: Mapping[str, Any], num_cameras: int,
                 optimizer: Any = None, scheduler: Any = None, evaluation: Mapping[str, Any] | None = None) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), max(int(num_cameras), 2))
        self.save_hyperparameters()
        if isinstance(num_cameras, bool) or int(num_cameras) < 2:
            raise ConfigError(f"model.num_cameras: expected an int >= 2, got {num_cameras!r}")
        self.num_cameras = int(num_cameras)
        self.net = build_part(net, "net", backbone=build_backbone(**dict(backbone)), num_classes=self.num_cameras)

    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        cams = batch["camid"]
        if bool((cams < 0).any()):
            raise ConfigError("camera model: this dataset has no camera labels (camid -1); camera verification "
                              "needs a dataset with cameras")
        if bool((cams >= self.num_cameras).any()):
            raise ConfigError(f"model.num_cameras={self.num_cameras}: camera id {int(cams.max())} found; "
                              "set num_cameras above the largest camera id")
        logits = self.net(batch["image"]).logits
        loss = F.cross_entropy(logits, cams)
        return loss, {"ce": loss.detach()}, logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # the base's training accuracy compares with batch["pid"]: here the labels are the cameras
        return super().training_step({**batch, "pid": batch["camid"]}, batch_idx)

    @torch.no_grad()
    def extract(self, images: Tensor) -> dict[str, Tensor]:
        return dict(self.net(images).features)
