"""VehicleNet (Zheng et al., IEEE TMM 2020) as a LightningModule: two-stage progressive learning.

Stage I trains the network of :mod:`vreid_lightning.models.vehiclenet` with cross-entropy on the
merged multi-source VehicleNet set (Eq. 4: one classifier over the disjoint label spaces of all
sources, every image weighted equally). Stage II (Algorithm 1, Eq. 6) fine-tunes on the target's
training set alone: :meth:`VehicleNetModule.load_previous_stage` carries the backbone, ``fc1`` and its
BN over bit for bit and leaves ``fc2`` as the new classifier of the target's classes, trained from
scratch. The staged runner of :mod:`vreid_lightning.run` chains the stages (the experiment's
``stages`` give stage II its own data, dropout and schedule).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from vreid_lightning.errors import ConfigError
from vreid_lightning.methods.base import ReIDModule
from vreid_lightning.methods.parts import build_part
from vreid_lightning.models.backbones import build_backbone
from vreid_lightning.models.vehiclenet import FEATURE

__all__ = ["VehicleNetModule", "CLASSIFIER_PREFIX"]

log = logging.getLogger(__name__)

CLASSIFIER_PREFIX = "net.classifier."  # fc2: never carried from one stage to the next (sec. IV-B)
#: backbone options a checkpoint may omit, at the value they then had (their defaults)
_DEFAULTS: dict[str, Any] = {"last_stride": 2, "final_relu": True, "implementation": "timm"}


class VehicleNetModule(ReIDModule):
    """VehicleNet at one stage (the same class serves both).

    Args:
        num_classes: training classes of this stage (merged sources in stage I, the target's in II).
        backbone: backbone config (``name``, ``pretrained``, ``weights`` and backbone kwargs).
        net: Hydra config of the network (``_target_``: :class:`~vreid_lightning.models.vehiclenet.VehicleNet`;
            ``embed_dim``, ``dropout``), built with the backbone and the classes.
        loss: Hydra config of the loss (``_target_``:
            :class:`~vreid_lightning.losses.cross_entropy.CrossEntropyLoss`; ``label_smoothing``).
        stage: the stage name (informative; set by the staged runner).
        backbone_lr_mult: learning-rate factor of the backbone relative to the new layers
            (authors' code: 0.1).
        loss_warmup_epochs: the authors' warm-up (train_2020.py:256-258,350-352): over the first this many
            epochs the loss is scaled by a factor rising from 0.1 by 0.9 / (round(images / batch) x epochs)
            per iteration (the loss, not the learning rate: weight decay is not warmed up). 0: none.
        optimizer, scheduler: Hydra partial configs.
        evaluation: evaluation options (see :data:`vreid_lightning.methods.base.DEFAULT_EVAL`).
        figures: the config of the method's pictures (``model.figures``; null: none), kept with the
            hyper-parameters for the callbacks that draw them.
    """

    test_refit_prefixes = (CLASSIFIER_PREFIX,)  # fc2 of another class count, taken over for testing (on_load_checkpoint)

    def __init__(
        self,
        num_classes: int,
        backbone: Mapping[str, Any],
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        stage: str | None = None,
        backbone_lr_mult: float = 0.1,
        loss_warmup_epochs: int = 0,
        optimizer: Any = None,
        scheduler: Any = None,
        evaluation: Mapping[str, Any] | None = None,
        figures: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), num_classes)
        self.save_hyperparameters()
        if not 0.0 <= float(backbone_lr_mult):
            raise ConfigError(f"model.backbone_lr_mult={backbone_lr_mult}: expected >= 0")
        self.stage = stage
        self.net = build_part(net, "net", backbone=build_backbone(**dict(backbone)), num_classes=num_classes)
        self.criterion = build_part(loss, "loss")
        self.backbone_lr_mult = float(backbone_lr_mult)
        if int(loss_warmup_epochs) < 0:
            raise ConfigError(f"model.loss_warmup_epochs={loss_warmup_epochs}: expected >= 0")
        self.loss_warmup_epochs = int(loss_warmup_epochs)

    # ------------------------------------------------------------------ ReIDModule API
    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        out = self.net(batch["image"])
        ce = self.criterion(out.logits, batch["pid"])  # Eq. 4 / Eq. 6: the mean over the batch, sources alike
        if self.loss_warmup_epochs and self.current_epoch < self.loss_warmup_epochs:
            return ce * self.warmup_factor(), {"ce": ce}, out.logits
        return ce, {"ce": ce}, out.logits

    def warmup_factor(self) -> float:
        """The authors' loss factor at this optimizer step: min(1, 0.1 + 0.9 (step + 1) / warm_iterations)."""
        dm = self.trainer.datamodule
        per_epoch = max(1, round(len(dm.train_split) / dm.batch_size))  # train_2020.py:258
        return min(1.0, 0.1 + 0.9 * (self.global_step + 1) / (per_epoch * self.loss_warmup_epochs))

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        return self.net(images).features

    @property
    def main_feature(self) -> str:
        return FEATURE

    def param_groups(self) -> list[dict[str, Any]]:
        """Backbone at ``backbone_lr_mult`` x the base learning rate, fc1/BN/fc2 at the base rate."""
        base_lr = (self.optimizer_cfg or {}).get("lr")
        if base_lr is None:
            raise ConfigError("optimizer.lr is not set: VehicleNet's parameter groups scale it per group")
        return [
            {"params": list(self.net.backbone.parameters()), "lr": float(base_lr) * self.backbone_lr_mult,
             "name": "backbone"},
            {"params": [p for m in self.net.new_layers() for p in m.parameters()], "lr": float(base_lr),
             "name": "new_layers"},
        ]

    # ------------------------------------------------------------------ checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint built with other backbone options (a stride changes no shape, only every map);
        when only testing, take over a checkpoint's ``fc2`` of another class count (it plays no part in the
        feature: an imported stage-I model tested on its target)."""
        where = getattr(getattr(self, "_trainer", None), "ckpt_path", None) or "the checkpoint"
        self._check_backbone(checkpoint, where)
        weight = checkpoint.get("state_dict", {}).get(CLASSIFIER_PREFIX + "weight")
        if weight is None or tuple(weight.shape) == tuple(self.net.classifier.weight.shape):
            return
        trainer = getattr(self, "_trainer", None)
        if trainer is not None and trainer.state.fn == "fit":
            raise ConfigError(f"{where}: its classifier has {weight.shape[0]} classes, this run's data "
                              f"{self.net.num_classes}: train from it with init_from= (a new fc2), not ckpt_path=")
        log.info("%s: fc2 of %d classes taken over for testing (this data has %d; fc2 is not part of the feature)",
                 where, weight.shape[0], self.net.num_classes)
        self.net.reset_classifier(int(weight.shape[0]))

    def _check_backbone(self, checkpoint: Mapping[str, Any], where: Any) -> None:
        """Refuse ``checkpoint`` when its backbone options (stride, ReLU, implementation ...) differ from ours."""
        own = dict(self.hparams.get("backbone") or {})
        theirs = dict((checkpoint.get("hyper_parameters") or {}).get("backbone") or {})
        loading = {"pretrained", "weights", "strict"}

        def opt(d: dict[str, Any], k: str) -> Any:
            return d.get(k, _DEFAULTS.get(k))

        diff = sorted(k for k in (set(own) | set(theirs)) - loading if theirs and opt(own, k) != opt(theirs, k))
        if diff:
            raise ConfigError(f"{where} was built with " + ", ".join(f"backbone.{k}={opt(theirs, k)!r}" for k in diff)
                              + "; this run has " + ", ".join(f"{opt(own, k)!r}" for k in diff)
                              + ": set them as the checkpoint has them")

    # ------------------------------------------------------------------ staged training
    def load_previous_stage(self, ckpt_path: str | Path) -> dict[str, Any]:
        """Carry everything but the classifier over from a previous stage's checkpoint (sec. IV-B).

        Returns:
            ``{"loaded": [keys copied], "new": [keys left freshly initialised]}``.
        """
        path = Path(ckpt_path)
        if not path.is_file():
            raise ConfigError(f"init_from: checkpoint {path} does not exist")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        self._check_backbone(ckpt if isinstance(ckpt, dict) else {}, f"init_from: {path}")
        state = ckpt.get("state_dict", ckpt)
        own = self.state_dict()
        carried = {k: v for k, v in state.items() if k.startswith("net.") and not k.startswith(CLASSIFIER_PREFIX)}
        missing = sorted(k for k in own if k.startswith("net.") and not k.startswith(CLASSIFIER_PREFIX)
                         and k not in carried)
        if missing:
            raise ConfigError(f"init_from: {path} is not a VehicleNet checkpoint of this backbone: "
                              f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        wrong = sorted(k for k, v in carried.items() if k not in own or own[k].shape != v.shape)
        if wrong:
            raise ConfigError(f"init_from: {path} does not fit this network (backbone or embed_dim differ): {wrong[:5]}")
        self.load_state_dict(carried, strict=False)
        return {"loaded": sorted(carried), "new": sorted(k for k in own if k.startswith(CLASSIFIER_PREFIX))}
