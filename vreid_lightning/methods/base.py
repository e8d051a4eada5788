"""ReIDModule: the Lightning base every method sits on. It owns evaluation.

A method subclass supplies the network, the training loss and the named retrieval features; the base:

- extracts features for every evaluation image once per evaluation (optional flip averaging),
- shards the images across ranks without padding (``ShardSampler``) and gathers features with their
  row indices through a torchmetrics ``Metric`` with ``cat`` reduction, de-duplicating by index,
- evaluates once under the dataset's protocol object (:mod:`vreid_lightning.evaluation.protocol_registry`),
  for the method's main feature and any feature combinations it offers,
- logs ``val/mAP``, ``val/rank1``, ``val/rank5``, ``val/rank10``, ``val/mINP`` (and ``test/...``) and
  keeps the results in ``eval_results`` (the results writer callback writes them; the runner reads them).

Files, pictures and test-time post-processing are the callbacks' (:class:`~vreid_lightning.callbacks.results.ResultsWriter`).
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vreid_lightning.errors import ConfigError
from vreid_lightning.data.eval_sets import restrict_eval_set
from vreid_lightning.evaluation.protocol_registry import run_protocol
from vreid_lightning.evaluation.protocols import METRIC_KEYS

__all__ = ["FeatureCollector", "ReIDModule", "DEFAULT_EVAL", "MONITOR_PREFIX"]

log = logging.getLogger(__name__)

MONITOR_PREFIX = "val_on_test"  # validation on the test protocol's images: logged, never used to select
DEFAULT_EVAL: dict[str, Any] = {
    "flip": True,          # average the features of the image and its horizontal flip
    "metric": "cosine",    # cosine | euclidean
    "normalize": "l2",     # per-part normalisation before concatenation: l2 | none
    "feature_study": True,  # evaluate every feature combination the method offers (e.g. RAM Table 1)
    "scales": [1.0],        # test-time scales averaged, each resized from the original (VehicleNet AICity: [1, 0.9, 0.8])
    "scale_mode": "original",  # original | authors (VehicleNet test_2020.py: sqrt'd factors compounded; evaluation.tta)
}


class FeatureCollector(torchmetrics.Metric):
    """Accumulates evaluation features with their row indices; ``cat`` reduction across ranks.

    ``compute`` returns ``(features, rows)`` for every row seen on any rank, sorted by row and
    de-duplicated (a row extracted twice keeps one copy), so the result does not depend on the
    number of ranks or how rows were sharded.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("feats", default=[], dist_reduce_fx="cat")
        self.add_state("rows", default=[], dist_reduce_fx="cat")

    def update(self, feats: Tensor, rows: Tensor) -> None:
        self.feats.append(feats.detach().float())
        self.rows.append(rows.detach().long())

    def compute(self) -> tuple[Tensor, Tensor]:
        feats = self.feats if isinstance(self.feats, Tensor) else torch.cat(self.feats)
        rows = self.rows if isinstance(self.rows, Tensor) else torch.cat(self.rows)
        order = torch.argsort(rows, stable=True)
        rows, feats = rows[order], feats[order]
        keep = torch.ones_like(rows, dtype=torch.bool)
        keep[1:] = rows[1:] != rows[:-1]
        return feats[keep], rows[keep]


def _to_container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class ReIDModule(L.LightningModule, abc.ABC):
    """Base LightningModule for re-ID methods.

    Subclasses implement :meth:`training_loss` and :meth:`extract`, and may override
    :meth:`feature_combinations`, :attr:`main_feature` and :meth:`param_groups`.

    Args:
        optimizer: Hydra config of a partial optimizer (``_target_`` + ``_partial_: true``).
        scheduler: Hydra config of a partial LR scheduler, or None.
        evaluation: evaluation options (see ``DEFAULT_EVAL``).
        num_classes: number of training identities (for the training accuracy metric).
    """

    #: Tensor-name prefixes this method takes over from a checkpoint of another shape when it only tests
    #: (``train=false ckpt_path=``; its ``on_load_checkpoint`` re-fits them): the runner's checkpoint check
    #: (``runner.ckpt_match``) does not refuse their shapes. Default: none.
    test_refit_prefixes: tuple[str, ...] = ()

    def __init__(self, optimizer: Any, scheduler: Any = None, evaluation: dict[str, Any] | None = None,
                 num_classes: int = 2) -> None:
        super().__init__()
        self.optimizer_cfg = _to_container(optimizer)
        self.scheduler_cfg = _to_container(scheduler)
        self.eval_cfg = {**DEFAULT_EVAL, **(_to_container(evaluation) or {})}
        unknown = set(self.eval_cfg) - set(DEFAULT_EVAL)
        if unknown:
            raise ConfigError(f"model.evaluation: unknown option(s) {sorted(unknown)}; expected {sorted(DEFAULT_EVAL)}")
        self.collector = FeatureCollector()
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=max(num_classes, 2))
        self.eval_results: dict[str, dict[str, Any]] = {}
        self._feature_layout: list[tuple[str, int]] | None = None
        self.last_test_eval: dict[str, Any] | None = None  # the main feature and eval set of the last test

    # ------------------------------------------------------------------ subclass API
    @abc.abstractmethod
    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        """Return ``(total loss, named parts, ID logits for the training accuracy or None)``."""

    @abc.abstractmethod
    def extract(self, images: Tensor) -> dict[str, Tensor]:
        """Named retrieval features (B, D_i) of a batch of images, in eval mode."""

    def extract_batch(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Named retrieval features of an evaluation batch: ``image`` with its metadata (``index``, ``camid``,
        ``timestamp``, ``track``, ``attrs``; see :class:`~vreid_lightning.data.datamodule.ImageDataset`).
        Override for a method that needs side information at test time (a camera or view embedding);
        default: :meth:`extract` of the images."""
        return self.extract(batch["image"])

    @property
    def main_feature(self) -> str:
        """Name of the feature combination reported as the method's result."""
        return "+".join(self._feature_names())

    def feature_combinations(self, feats: dict[str, Tensor], study: bool = True) -> dict[str, Tensor]:
        """Feature combinations to evaluate (all of them, or only the main one when ``study`` is False);
        default: the concatenation of every named feature."""
        return {self.main_feature: self._concat([feats[n] for n in self._feature_names()])}

    def param_groups(self) -> list[dict[str, Any]] | Any:
        """Parameter groups for the optimizer (override for per-part learning rates)."""
        return self.parameters()

    # ------------------------------------------------------------------ optional hooks (no-op defaults)
    def load_previous_stage(self, ckpt_path: str | Path) -> dict[str, Any]:
        """Start this stage from the previous stage's checkpoint (staged runs, ``init_from``).

        Default: copy every tensor whose name and shape match; tensors that differ (a new classifier)
        keep their fresh initialisation. Returns ``{"loaded": keys, "new": keys}``.
        """
        from vreid_lightning.callbacks.checkpoint import read_checkpoint

        state = read_checkpoint(ckpt_path, "init_from")["state_dict"]
        own = self.state_dict()
        take = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        if not take:
            raise ConfigError(f"init_from: no tensor of {ckpt_path} matches this {type(self).__name__}")
        self.load_state_dict({**own, **take}, strict=True)
        return {"loaded": list(take), "new": [k for k in own if k not in take]}

    def extra_metrics(self, feats: dict[str, Tensor], eval_set: Any) -> dict[str, float]:
        """Method-specific scalar metrics of one evaluation, reported beside the ranking metrics (logged as
        ``<stage>/<name>``, kept under ``metrics["extra"]``); ``feats`` are the gathered named features,
        row-aligned with ``eval_set.split``. Default: none (RNN-HA: its model-level accuracy)."""
        return {}

    @property
    def feature_dims(self) -> dict[str, int]:
        """Name -> width of the named features extracted so far (empty before the first evaluation batch)."""
        return dict(self._feature_layout or [])

    # ------------------------------------------------------------------ helpers
    def _feature_names(self) -> list[str]:
        assert self._feature_layout is not None, "features have not been extracted yet"
        return [n for n, _ in self._feature_layout]

    def _concat(self, parts: list[Tensor]) -> Tensor:
        from vreid_lightning.evaluation.ensemble import concat_features  # the one normalise-and-concatenate

        return concat_features(parts, normalize=self.eval_cfg["normalize"])

    def metric_prefix(self, stage: str) -> str:
        """Logged metric names: ``val/...`` on a held-out validation split, ``test/...`` for the test;
        validation on the test protocol's images (no held-out split) is monitoring only and logged as
        ``val_on_test/...`` (:data:`MONITOR_PREFIX`), which no checkpoint selection reads."""
        from vreid_lightning.callbacks.checkpoint import has_held_out_split

        if stage == "val" and not has_held_out_split(self.trainer.datamodule):
            return MONITOR_PREFIX
        return stage

    @torch.no_grad()
    def extract_eval_features(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """:meth:`extract_batch` with the configured test-time flip and scales."""
        def extract(images: Tensor) -> dict[str, Tensor]:
            return self.extract_batch({**batch, "image": images})

        images = batch["image"]
        scales = list(self.eval_cfg["scales"])
        if scales != [1.0]:  # multi-scale test-time augmentation (evaluation.tta)
            from vreid_lightning.evaluation.tta import multi_scale_features

            return multi_scale_features(extract, images, scales, bool(self.eval_cfg["flip"]),
                                        str(self.eval_cfg["scale_mode"]))
        feats = extract(images)
        if self.eval_cfg["flip"]:
            flipped = extract(torch.flip(images, dims=[3]))
            feats = {k: (v + flipped[k]) / 2 for k, v in feats.items()}
        return feats

    @torch.no_grad()
    def combined_features(self, batch: dict[str, Any], study: bool = True) -> dict[str, Tensor]:
        """The feature combinations of one batch (test-time flip and scales) as the evaluation computes them;
        for tools that extract outside a test loop (``predict_step``, ``export``, ``evaluate --extract-crops``)."""
        named = self.extract_eval_features(batch)
        if self._feature_layout is None:
            self._feature_layout = [(k, int(v.shape[1])) for k, v in named.items()]
        return self.feature_combinations(named, study=study)

    def main_features(self, batch: dict[str, Any]) -> Tensor:
        """The tested feature (:attr:`main_feature`) of one batch."""
        return self.combined_features(batch, study=False)[self.main_feature]

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, parts, logits = self.training_loss(batch)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/loss_{k}", v, batch_size=bs)
        if logits is not None:
            self.train_acc(logits.detach(), batch["pid"])
            self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def configure_optimizers(self) -> Any:
        opt = instantiate(self.optimizer_cfg)(params=self.param_groups())
        if not self.scheduler_cfg:
            return opt
        sched = instantiate(self.scheduler_cfg)(optimizer=opt)
        from vreid_lightning.optim import scheduler_interval  # "step" for schedules counted in iterations

        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": scheduler_interval(sched)}}

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: dict[str, Any]) -> None:
        feats = self.extract_eval_features(batch)
        if self._feature_layout is None:
            self._feature_layout = [(k, int(v.shape[1])) for k, v in feats.items()]
        self.collector.update(torch.cat([feats[k] for k, _ in self._feature_layout], dim=1), batch["index"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The features a test run computes for the batch (test-time flip/scales, every feature combination
        the method offers): ``{"index": rows, "features": {combination: (B, D)}}``."""
        return {"index": batch["index"], "features": self.combined_features(batch, study=True)}

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def _gathered_features(self, eval_set: Any, stage: str) -> tuple[dict[str, Tensor], Any]:
        """All ranks' features, split by name; and the eval set restricted to the rows extracted.

        Rows are missing only when the loop was cut short (``fast_dev_run``, ``limit_*_batches``):
        then the protocol runs on what was extracted, and a warning says how much that was.
        """
        feats, rows = self.collector.compute()
        self.collector.reset()
        n_rows = len(eval_set.split)
        rows_np = rows.cpu().numpy()
        if rows.numel() != n_rows:
            log.warning("%s: evaluating on %d of %d images (the %s loop was limited)",
                        stage, rows.numel(), n_rows, stage)
            eval_set = restrict_eval_set(eval_set, rows_np)
        out, start = {}, 0
        for name, dim in self._feature_layout or []:
            out[name] = feats[:, start:start + dim]
            start += dim
        return out, eval_set

    def _evaluate(self, stage: str) -> None:
        if self.trainer.sanity_checking:
            self.collector.reset()
            return
        dm = self.trainer.datamodule
        base_set = dm.eval_set_for(stage) if hasattr(dm, "eval_set_for") else dm.eval_set
        feats, eval_set = self._gathered_features(base_set, stage)
        combos = self.feature_combinations(feats, study=bool(self.eval_cfg["feature_study"]))
        results = {name: run_protocol(f, eval_set, self.eval_cfg["metric"]) for name, f in combos.items()}
        main = results[self.main_feature]
        extra = {k: float(v) for k, v in self.extra_metrics(feats, eval_set).items()}
        if extra:
            main = {**main, "extra": extra}
        prefix = self.metric_prefix(stage)
        for key in METRIC_KEYS:
            self.log(f"{prefix}/{key}", float(main[key]), sync_dist=False, rank_zero_only=False)
        for key, value in extra.items():
            self.log(f"{prefix}/{key}", value, sync_dist=False, rank_zero_only=False)
        for size, metrics in main.get("sizes", {}).items():
            for key in ("mAP", "rank1", "rank5"):
                self.log(f"{prefix}/{size}/{key}", float(metrics[key]))
        self.eval_results[stage] = {"main": self.main_feature, "metrics": main, "features": results}
        if len(eval_set.split) != len(base_set.split):  # a cut-short loop: marked, never reported as the test
            self.eval_results[stage]["partial"] = {"evaluated_images": len(eval_set.split),
                                                   "total_images": len(base_set.split)}
        if stage == "test":  # for the results writer: post-processing, features.npz and pictures
            self.last_test_eval = {"features": combos[self.main_feature], "eval_set": eval_set,
                                   "metric": self.eval_cfg["metric"]}

