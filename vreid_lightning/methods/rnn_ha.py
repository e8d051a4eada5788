"""RNN-HA (Wei et al., ACCV 2018) as a LightningModule on the shared :class:`ReIDModule` base.

Training (``objective="rnn_ha"``): ``L = L_model + L_vehicle`` (Eq. 5), plain cross-entropy each; the
model-level label is a DataModule attribute (VeRi: ``type``, VehicleID: ``model``), and images without one
(-1) are ignored by ``L_model`` while still counting in ``L_vehicle``. Evaluation: ``o2``, L2-normalised, cosine distance
(sec. 4.2); the model-level classification accuracy on the evaluation images (``model_acc``) is
reported beside the ranking metrics. Pictures: Fig. 3 (the attention maps ``a`` of Eq. 7 over test
images); Fig. 4 (top-5 lists of successful and failed queries) is the results writer's rank list
(``callbacks.results_writer.rank_list: {successes: 8, failures: 4, top: 5}`` in the RNN-HA experiments).

``objective="backbone_classifier"`` is the authors' first step, ``fine_tune.py``: the trunk alone, global
average pooled and classified over the training identities (``load_vgg_m_1024.py``: ``vgg_m[0:15]`` ->
AvgPool 6x6 -> Linear(512, identities)); its feature is that pooled vector (``gap``). A staged run carries
the trunk into the RNN-HA stages (``load_previous_stage``: tensors matched by name).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from vreid_lightning.errors import ConfigError
from vreid_lightning.losses.cross_entropy import cross_entropy
from vreid_lightning.methods.base import ReIDModule
from vreid_lightning.methods.parts import build_part
from vreid_lightning.models.backbones import build_backbone

__all__ = ["OBJECTIVES", "RNNHAModule", "eval_model_labels", "model_level_accuracy"]

log = logging.getLogger(__name__)

_LOGITS = "model_logits"  # gathered with the retrieval feature, for the model-level accuracy
OBJECTIVES: tuple[str, ...] = ("rnn_ha", "backbone_classifier")


def eval_model_labels(train_values: np.ndarray, eval_values: np.ndarray) -> np.ndarray:
    """Evaluation images' model-level labels as the training classes (-1: unlabelled or unseen in training).

    The DataModule numbers a training attribute's classes by its sorted distinct labelled values
    (:func:`vreid_lightning.data.datamodule.remap_labels`); the same numbering is applied here.
    """
    from vreid_lightning.data.datamodule import remap_labels

    _, classes = remap_labels(train_values)
    values = np.asarray(eval_values, dtype=np.int64)
    if len(classes) == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(classes, values), 0, len(classes) - 1)
    return np.where((values >= 0) & (classes[pos] == values), pos, -1)


def model_level_accuracy(logits: Tensor, train_values: np.ndarray, eval_values: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy of model-level ``logits`` (N, C) against the evaluation images' labels (raw dataset
    values, numbered as the training classes), over the images whose label was seen in training.

    Returns ``{"model_acc": accuracy, "model_acc_images": count}``, or ``{}`` when no image qualifies.
    """
    labels = torch.as_tensor(eval_model_labels(train_values, eval_values))
    known = labels >= 0
    if not bool(known.any()):
        return {}
    pred = logits.argmax(dim=1).cpu()
    return {"model_acc": float((pred[known] == labels[known]).float().mean()), "model_acc_images": float(known.sum())}


class RNNHAModule(ReIDModule):
    """RNN-HA, FC-HA (w/o RNN) or RNN-H w/o attention, by ``net`` switches.

    Args:
        num_classes: training identities (vehicle-level classes).
        attribute_classes: attribute -> classes, from the DataModule.
        backbone: backbone config (``name``, ``pretrained``, ``weights`` and backbone kwargs).
        net: Hydra config of the network (``_target_``: :class:`~vreid_lightning.models.rnn_ha.RNNHANet`; hierarchy,
            attention, hidden_size ...), built with the backbone, the vehicle- and the model-level classes.
        model_level: the attribute used as the model-level label (VeRi ``type``, VehicleID ``model``).
        dataset: the dataset's name, for error messages.
        optimizer, scheduler: Hydra partial configs.
        evaluation: evaluation options (see :data:`vreid_lightning.methods.base.DEFAULT_EVAL`).
        figures: the config of the method's pictures (``model.figures``; null: none), kept with the
            hyper-parameters for the callbacks that draw them.
        objective: ``rnn_ha`` (Eq. 5) or ``backbone_classifier`` (the authors' fine_tune.py step: the pooled
            trunk classified over the identities; the GRU, attention and classifiers get no gradient).
    """

    def __init__(
        self,
        num_classes: int,
        attribute_classes: Mapping[str, int],
        backbone: Mapping[str, Any],
        net: Mapping[str, Any],
        model_level: str = "type",
        dataset: str | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
        evaluation: Mapping[str, Any] | None = None,
        figures: Mapping[str, Any] | None = None,
        objective: str = "rnn_ha",
    ) -> None:
        super().__init__(optimizer, scheduler, dict(evaluation or {}), num_classes)
        self.save_hyperparameters()
        attribute_classes = dict(attribute_classes)
        if model_level not in attribute_classes:
            where = f"dataset {dataset!r}" if dataset else "the training data"
            raise ConfigError(
                f"RNN-HA needs a model-level label: {where} has no labelled {model_level!r} attribute "
                f"(model.model_level={model_level!r}; trained attributes: {sorted(attribute_classes) or 'none'}). "
                "Add it to data.attributes or set model.model_level to one the dataset labels "
                "(VeRi: type, VehicleID: model)."
            )
        self.model_level = model_level
        self.net = build_part(net, "net", backbone=build_backbone(**dict(backbone)), num_classes=num_classes,
                              num_model_classes=int(attribute_classes[model_level]))
        if objective not in OBJECTIVES:
            raise ConfigError(f"model.objective={objective!r}; expected one of {list(OBJECTIVES)}")
        self.objective = objective
        self.backbone_classifier: nn.Linear | None = None
        if objective == "backbone_classifier":  # load_vgg_m_1024.py: Linear(512, 10309), kaiming-normal, zero bias
            self.backbone_classifier = nn.Linear(self.net.channels, num_classes)
            nn.init.kaiming_normal_(self.backbone_classifier.weight)
            nn.init.zeros_(self.backbone_classifier.bias)

    # ------------------------------------------------------------------ ReIDModule API
    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        if self.backbone_classifier is not None:  # fine_tune.py: cross-entropy over the identities
            logits = self.backbone_classifier(self.net.backbone(batch["image"]).mean(dim=(2, 3)))
            loss = cross_entropy(logits, batch["pid"])
            return loss, {"vehicle": loss}, logits
        out = self.net(batch["image"])
        l_model = cross_entropy(out.logits["model"], batch["attrs"][self.model_level])  # -1: ignored
        l_vehicle = cross_entropy(out.logits["vehicle"], batch["pid"])
        return l_model + l_vehicle, {"model": l_model, "vehicle": l_vehicle}, out.logits["vehicle"]  # Eq. 5

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        if self.backbone_classifier is not None:
            return {"gap": self.net.backbone(images).mean(dim=(2, 3))}
        out = self.net(images)
        return {"o2": out.features["o2"], _LOGITS: out.logits["model"]}

    @property
    def main_feature(self) -> str:
        return "gap" if self.backbone_classifier is not None else "o2"

    def feature_combinations(self, feats: dict[str, Tensor], study: bool = True) -> dict[str, Tensor]:
        # sec. 4.2: o2, L2-normalised (evaluation.normalize); the authors' test feature o_vin is the same
        # tensor (main_GRU_fusion_attention_test.py:86-89,131,135)
        return {self.main_feature: self._concat([feats[self.main_feature]])}

    def param_groups(self) -> Any:
        if self.backbone_classifier is not None:  # only what fine_tune.py's network holds
            return list(self.net.backbone.parameters()) + list(self.backbone_classifier.parameters())
        return self.parameters()

    def extra_metrics(self, feats: dict[str, Tensor], eval_set: Any) -> dict[str, float]:
        """``model_acc``: model-level top-1 accuracy of ``o1``'s classifier over the evaluation images
        that carry a model-level label seen in training (VeRi: every test image's type)."""
        dm = self.trainer.datamodule
        values = eval_set.split.attributes.get(self.model_level)
        if _LOGITS not in feats or values is None or not hasattr(dm, "train_split"):
            return {}
        return model_level_accuracy(feats[_LOGITS], dm.train_split.attributes[self.model_level], values)
