"""RAM (Liu et al., ICME 2018) as a LightningModule, trained stage by stage.

One module class serves every step of RAM sec. 3.3: ``stage`` picks the active branches
(``baseline`` = Conv branch only, which is also the suite's baseline method; ``bn``; ``bn_r``; ``ram``).
:meth:`RAMModule.load_previous_stage` carries the previous step's weights over; the staged pipeline
(:mod:`vreid_lightning.runner.stages`) chains the steps. Evaluation (from :class:`ReIDModule`) extracts every
branch's feature once and evaluates each RAM Table 1 combination from that single pass.
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
from vreid_lightning.models.ram import STAGES, RAMNet, combine_features, load_previous_stage

__all__ = ["RAMModule", "STAGE_MAIN_FEATURE"]

log = logging.getLogger(__name__)

# The concatenated feature each step reports (RAM sec. 3.3: "we test the concatenated feature in each step").
# One stage list: the network's STAGES (models/ram/net.py), in order.
STAGE_MAIN_FEATURE = dict(zip(STAGES, ("f_c", "f_c+f_b", "f_c+f_b+f_r", "f_c+f_b+f_r+f_a"), strict=True))


class RAMModule(ReIDModule):
    """RAM at one training stage.

    Args:
        num_classes: training identities.
        attribute_classes: attribute -> classes (the Attribute branch's classifiers).
        backbone: backbone config (``name``, ``pretrained``, ``weights`` and backbone kwargs).
        net: Hydra config of the network (``_target_``: :class:`RAMNet`; regions, overlap, FC widths ...), built
            with the backbone, the classes and ``stage``'s branches.
        loss: Hydra config of the loss (``_target_``: :class:`~vreid_lightning.losses.ram.RAMLoss`; lambda weights ...).
        stage: ``baseline``, ``bn``, ``bn_r`` or ``ram``.
        optim: Caffe-style multipliers (``bias_lr_mult``, ``bias_decay_mult``, ``lr_mult`` {name prefix of
            ``net``'s parameters: factor}), see :func:`vreid_lightning.optim.multiplier_groups`.
        optimizer, scheduler: Hydra partial configs.
        evaluation: evaluation options (see :data:`vreid_lightning.methods.base.DEFAULT_EVAL`).
        figures: the config of the method's pictures (``model.figures``; null: none), kept with the
            hyper-parameters for the callbacks that draw them.
    """

    def __init__(
        self,
        num_classes: int,
        attribute_classes: Mapping[str, int],
        backbone: Mapping[str, Any],
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        stage: str = "ram",
        optim: Mapping[str, Any] | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        evaluation: Mapping[str, Any] | None = None,
        figures: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), num_classes)
        self.save_hyperparameters()
        if stage not in STAGE_MAIN_FEATURE:
            raise ConfigError(f"model.stage={stage!r}; expected one of {list(STAGE_MAIN_FEATURE)}")
        self.stage = stage
        self.net = build_part(net, "net", backbone=build_backbone(**dict(backbone)), num_classes=num_classes,
                              attribute_classes=dict(attribute_classes), branches=RAMNet.stage_branches(stage))
        self.criterion = build_part(loss, "loss")
        self.optim = {"bias_lr_mult": 1.0, "bias_decay_mult": 1.0, "lr_mult": {}, **dict(optim or {})}
        unknown = sorted(set(self.optim) - {"bias_lr_mult", "bias_decay_mult", "lr_mult"})
        if unknown:
            raise ConfigError(f"model.optim: unknown key(s) {unknown}; expected bias_lr_mult, bias_decay_mult, lr_mult")
        mults = self.optim["lr_mult"] or {}
        try:  # a mapping, or [[prefix, factor], ...] (a list, so that a stage override replaces it whole)
            self.optim["lr_mult"] = {str(k): float(v) for k, v in (mults.items() if isinstance(mults, Mapping) else mults)}
        except (TypeError, ValueError):
            raise ConfigError(f"model.optim.lr_mult={mults!r}: expected [[parameter-name prefix, factor], ...]") from None

    def setup(self, stage: str) -> None:
        """Refuse, before any step, an input size whose conv map is too short for distinct regions.

        Checked in every step (not only those with the region branch), so a staged run stops before its
        first step rather than when ``bn_r`` starts.
        """
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        size = getattr(dm, "image_size", None)
        if size is None:
            return
        from vreid_lightning.models.ram.branches import distinct_region_bounds

        net_cfg = dict(self.hparams.get("net") or {})
        if net_cfg.get("region_rows") is not None or net_cfg.get("region_source", "conv5") == "pool5":
            return  # fixed rows / regions of the (adaptive 6x6) pool5: RegionBranch checks them against its map
        was = self.net.training
        self.net.eval()
        with torch.no_grad():
            height = int(self.net.feature_map(torch.zeros(1, 3, *size, device=self.device)).shape[2])
        self.net.train(was)
        distinct_region_bounds(height, int(net_cfg.get("num_regions", 3)), float(net_cfg.get("region_overlap", 4 / 7)))

    # ------------------------------------------------------------------ ReIDModule API
    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        out = self.net(batch["image"])
        total, parts = self.criterion(out.logits, batch["pid"], batch["attrs"])
        return total, parts, out.logits["conv"]

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        return self.net(images).features

    @property
    def main_feature(self) -> str:
        return STAGE_MAIN_FEATURE[self.stage]

    def feature_combinations(self, feats: dict[str, Tensor], study: bool = True) -> dict[str, Tensor]:
        combos = None if study else [self.main_feature]
        return combine_features(feats, combos=combos, normalize=self.eval_cfg["normalize"])

    def param_groups(self) -> list[dict[str, Any]] | Any:
        """Caffe-style lr/decay multipliers (``model.optim``) as optimizer parameter groups."""
        o = self.optim
        if float(o["bias_lr_mult"]) == 1.0 and float(o["bias_decay_mult"]) == 1.0 and not o["lr_mult"]:
            return self.parameters()
        cfg = self.optimizer_cfg or {}
        if cfg.get("lr") is None:
            raise ConfigError("optimizer.lr is not set: model.optim's multipliers scale it per parameter")
        from vreid_lightning.optim import multiplier_groups

        return multiplier_groups(self.net, float(cfg["lr"]), float(cfg.get("weight_decay") or 0.0),
                                 float(o["bias_lr_mult"]), float(o["bias_decay_mult"]), dict(o["lr_mult"]),
                                 where="model.optim")

    # ------------------------------------------------------------------ staged training
    def load_previous_stage(self, ckpt_path: str | Path) -> dict[str, Any]:
        """Start this stage from a previous stage's checkpoint (shared conv + existing branches)."""
        from vreid_lightning.callbacks.checkpoint import read_checkpoint

        state = read_checkpoint(ckpt_path, "init_from")["state_dict"]  # one clear error for a bad file
        return load_previous_stage(self.net, state, prefix="net.")
