"""SCAN (Teng et al., PCM 2018) and its light VGG baselines as a LightningModule.

``model.net.attention`` switches the SCAN module on (``light_vgg_m+SCAN``, ``light_vgg16+SCAN``) or off
(the light baselines, sec. 4.1); the backbone picks VGG_CNN_M_1024 or VGG16. Training: cross-entropy +
batch-hard triplet on P x K batches (sec. 4.1, Fig. 4); retrieval: the 512-d FC feature, Euclidean
distance (sec. 3.3).

Table 3's ``light_vgg16+SCAN*`` concatenates the features of two trained models (L2-normalised, then
concatenated, :func:`vreid_lightning.evaluation.ensemble.concat_features`). The second model is the
``partner``: a checkpoint path, or, in a staged run, the previous stage's model
(``previous_stage: partner``). Its feature is extracted beside this model's and the feature study
reports ``<own>``, ``<partner>`` and ``<own>+<partner>`` (e.g. ``scan+plain``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from vreid_lightning.errors import ConfigError
from vreid_lightning.evaluation.ensemble import concat_features
from vreid_lightning.methods.base import ReIDModule
from vreid_lightning.methods.parts import build_part
from vreid_lightning.models.backbones import build_backbone
from vreid_lightning.models.light_vgg import LightVGGNet

__all__ = ["SCANModule", "PREVIOUS_STAGE_CHOICES"]

log = logging.getLogger(__name__)

PREVIOUS_STAGE_CHOICES = ("partner", "init")


class SCANModule(ReIDModule):
    """light_vgg_m / light_vgg16, with or without SCAN.

    Args:
        num_classes: training identities.
        backbone: backbone config (``name``, ``pretrained``, ``weights`` and backbone kwargs).
        net: Hydra config of the network (``_target_``: :class:`~vreid_lightning.models.light_vgg.LightVGGNet`),
            built with the backbone and the classes.
        loss: Hydra config of the loss (``_target_``: :class:`~vreid_lightning.losses.scan.SCANLoss`).
        optimizer, scheduler: Hydra partial configs.
        evaluation: evaluation options (see :data:`vreid_lightning.methods.base.DEFAULT_EVAL`).
        figures: the config of the method's pictures (``model.figures``; null: none), kept with the
            hyper-parameters for the callbacks that draw them.
        partner: checkpoint of a trained SCANModule whose feature joins this one's (Table 3's SCAN*).
        previous_stage: in a staged run, what the previous stage's checkpoint is for: ``"partner"``
            (the SCAN* ensemble) or ``"init"`` (start from its weights where names and shapes match).
        attention_lr_mult: learning-rate factor of the SCAN module's parameters relative to the rest
            (paper unstated: 1, one rate). The SAB is four single-channel layers (22 parameters at 3x3
            kernels); at 10 its ReLU chain dies on the synthetic world (experiments/scan/README.md).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: Mapping[str, Any],
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Any = None,
        scheduler: Any = None,
        evaluation: Mapping[str, Any] | None = None,
        figures: Mapping[str, Any] | None = None,
        partner: str | None = None,
        previous_stage: str = "partner",
        attention_lr_mult: float = 1.0,
    ) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), num_classes)
        self.save_hyperparameters()
        if previous_stage not in PREVIOUS_STAGE_CHOICES:
            raise ConfigError(f"model.previous_stage={previous_stage!r}; expected one of {list(PREVIOUS_STAGE_CHOICES)}")
        if not float(attention_lr_mult) > 0.0:
            raise ConfigError(f"model.attention_lr_mult={attention_lr_mult}: expected a factor > 0")
        self.attention_lr_mult = float(attention_lr_mult)
        self.net = build_part(net, "net", backbone=build_backbone(**dict(backbone)), num_classes=num_classes)
        self.criterion = build_part(loss, "loss")
        self.previous_stage = previous_stage
        self._partner: list[LightVGGNet] = []  # a list: the partner is neither trained nor saved with this model
        if partner:
            self.set_partner(partner)

    # ------------------------------------------------------------------ ReIDModule API
    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        out = self.net(batch["image"])
        total, parts = self.criterion(out.features[self.net.feature_name], out.logits, batch["pid"])
        return total, parts, out.logits

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        feats = dict(self.net(images).features)
        if self._partner:
            partner = self._partner[0].to(images.device).eval()
            for name, f in partner(images).features.items():
                feats[self._partner_name(name)] = f
        return feats

    @property
    def main_feature(self) -> str:
        return self.net.feature_name

    def feature_combinations(self, feats: dict[str, Tensor], study: bool = True) -> dict[str, Tensor]:
        own = self.net.feature_name
        combos = {own: feats[own]}
        if study and self._partner:
            other = self._partner_name(self._partner[0].feature_name)
            combos[other] = feats[other]
            combos[f"{own}+{other}"] = concat_features([feats[own], feats[other]], normalize="l2")
        return combos

    def param_groups(self) -> list[dict[str, Any]] | Any:
        """The SCAN module at ``attention_lr_mult`` x the base learning rate, the rest at the base rate."""
        if self.net.attention is None or self.attention_lr_mult == 1.0:
            return self.parameters()
        base_lr = (self.optimizer_cfg or {}).get("lr")
        if base_lr is None:
            raise ConfigError("optimizer.lr is not set: model.attention_lr_mult scales it for the SCAN module")
        att = {id(p) for p in self.net.attention.parameters()}
        return [
            {"params": [p for p in self.parameters() if id(p) not in att], "lr": float(base_lr), "name": "network"},
            {"params": list(self.net.attention.parameters()), "lr": float(base_lr) * self.attention_lr_mult,
             "name": "attention"},
        ]

    # ------------------------------------------------------------------ the SCAN* partner
    def _partner_name(self, name: str) -> str:
        return name if name != self.net.feature_name else f"partner_{name}"

    def set_partner(self, ckpt_path: str | Path) -> None:
        """Load a trained SCANModule checkpoint as the frozen partner of the SCAN* ensemble.

        A Lightning checkpoint rebuilds the partner from its own hyper-parameters; a bare state dict (a
        staged run's ``final.ckpt`` when nothing was checkpointed) from this model's, with the attention
        switches read off the state dict's keys, loaded strictly.
        """
        from vreid_lightning.callbacks.checkpoint import read_checkpoint

        ckpt = read_checkpoint(ckpt_path, "model.partner")
        state = ckpt["state_dict"]
        hp = dict(ckpt.get("hyper_parameters") or self.hparams)
        if "hyper_parameters" not in ckpt:
            net = dict(hp.get("net") or {})
            spatial = any(k.startswith("net.attention.spatial.") for k in state)
            channel = any(k.startswith("net.attention.channel.") for k in state)
            net["attention"] = spatial or channel
            if spatial or channel:
                net["branches"] = "both" if spatial and channel else ("spatial" if spatial else "channel")
            hp["net"] = net
        hp.update(partner=None, backbone={**dict(hp["backbone"]), "pretrained": False, "weights": None})
        other = type(self)(**hp)
        other.load_state_dict(state, strict=True)
        net = other.net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self._partner = [net]
        log.info("SCAN* partner: %s (feature %r)", ckpt_path, net.feature_name)

    def load_previous_stage(self, ckpt_path: str | Path) -> dict[str, Any]:
        """Staged runs: the previous stage's model becomes the partner, or initialises this one."""
        if self.previous_stage == "partner":
            self.set_partner(ckpt_path)
            return {"loaded": [], "new": ["partner"]}
        from vreid_lightning.callbacks.checkpoint import read_checkpoint

        state = read_checkpoint(ckpt_path, "init_from")["state_dict"]
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        own = self.net.state_dict()
        take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.net.load_state_dict(take, strict=False)
        return {"loaded": sorted(take), "new": sorted(set(own) - set(take))}

    # ------------------------------------------------------------------ checks
    def setup(self, stage: str) -> None:
        """Batch-hard triplet mining needs P x K batches: check the DataModule's sampler once."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or stage != "fit":
            return
        sampler, bs, k = getattr(dm, "sampler_name", None), getattr(dm, "batch_size", None), getattr(dm, "num_instances", None)
        if sampler == "pk" and bs is not None and k is not None and (k < 2 or bs % k):
            raise ConfigError(f"data.batch_size={bs} must be a multiple of data.num_instances={k} >= 2 "
                              f"(P x K batches for the triplet loss)")
        if sampler is not None and sampler != "pk" and self.criterion.triplet_weight > 0:
            log.warning("data.sampler=%s: the batch-hard triplet loss finds few positives without P x K "
                        "batches (data.sampler=pk)", sampler)
