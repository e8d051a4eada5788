"""ReIDModule: the Lightning base every method sits on. It owns evaluation.

A method subclass supplies the network, the training loss and the named retrieval features; the base:

- extracts features for every evaluation image once per evaluation (optional flip averaging),
- shards the images across ranks without padding (``ShardSampler``) and gathers features with their
  row indices through a torchmetrics ``Metric`` with ``cat`` reduction, de-duplicating by index,
- evaluates once under the dataset's protocol (image-to-image with junk removal, or VehicleID's
  repeated random gallery), for the method's main feature and any feature combinations it offers,
- logs ``val/mAP``, ``val/rank1``, ``val/rank5``, ``val/rank10``, ``val/mINP`` (and ``test/...``) and
  keeps the results for ``results.json``.
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torchmetrics
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vreid_lightning.errors import ConfigError
from vreid_lightning.evaluation.protocols import image_protocol, vehicleid_protocol

__all__ = ["FeatureCollector", "ReIDModule", "DEFAULT_EVAL", "METRIC_KEYS", "MONITOR_PREFIX"]

log = logging.getLogger(__name__)

METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")
MONITOR_PREFIX = "val_on_test"  # validation on the test protocol's images: logged, never used to select
DEFAULT_EVAL: dict[str, Any] = {
    "flip": True,          # average the features of the image and its horizontal flip
    "metric": "cosine",    # cosine | euclidean
    "normalize": "l2",     # per-part normalisation before concatenation: l2 | none
    "feature_study": True,  # evaluate every feature combination the method offers (e.g. RAM Table 1)
    "rank_list": 8,         # queries drawn in rank_list.png beside the test results (0: none)
    "scales": [1.0],        # test-time scales averaged, each resized from the original (VehicleNet AICity: [1, 0.9, 0.8])
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
        self.results_path: str | None = None  # where test results go (set by the ResultsWriter callback)
        self.last_test_eval: dict[str, Any] | None = None  # the main feature and eval set of the last test
        self.postprocess_cfg: Any = None  # test-time post-processing steps, cfg.postprocess (set by the runner)

    # ------------------------------------------------------------------ subclass API
    @abc.abstractmethod
    def training_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        """Return ``(total loss, named parts, ID logits for the training accuracy or None)``."""

    @abc.abstractmethod
    def extract(self, images: Tensor) -> dict[str, Tensor]:
        """Named retrieval features (B, D_i) of a batch of images, in eval mode."""

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

    def make_figures(self, dm: Any, out: Path, best_ckpt: str | None) -> list[Path]:
        """Draw this model's pictures into ``out`` after its test (called by the results writer)."""
        return []

    @classmethod
    def staged_figure(cls, dm: Any, out: Path, stage_ckpts: dict[str, str | None]) -> Path | None:
        """A run-level picture across the stages of a staged run (RAM Fig. 3), drawn after the last one."""
        return None

    def extra_metrics(self, feats: dict[str, Tensor], eval_set: Any) -> dict[str, float]:
        """Method-specific scalar metrics of one evaluation, reported beside the ranking metrics (logged as
        ``<stage>/<name>``, kept under ``metrics["extra"]``); ``feats`` are the gathered named features,
        row-aligned with ``eval_set.split``. Default: none (RNN-HA: its model-level accuracy)."""
        return {}

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
    def extract_eval_features(self, images: Tensor) -> dict[str, Tensor]:
        scales = list(self.eval_cfg["scales"])
        if scales != [1.0]:  # multi-scale test-time augmentation (evaluation.tta)
            from vreid_lightning.evaluation.tta import multi_scale_features

            return multi_scale_features(self.extract, images, scales, bool(self.eval_cfg["flip"]))
        feats = self.extract(images)
        if self.eval_cfg["flip"]:
            flipped = self.extract(torch.flip(images, dims=[3]))
            feats = {k: (v + flipped[k]) / 2 for k, v in feats.items()}
        return feats

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
        feats = self.extract_eval_features(batch["image"])
        if self._feature_layout is None:
            self._feature_layout = [(k, int(v.shape[1])) for k, v in feats.items()]
        self.collector.update(torch.cat([feats[k] for k, _ in self._feature_layout], dim=1), batch["index"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The features a test run computes for ``batch["image"]`` (test-time flip/scales, every feature
        combination the method offers): ``{"index": rows, "features": {combination: (B, D)}}``."""
        feats = self.extract_eval_features(batch["image"])
        if self._feature_layout is None:
            self._feature_layout = [(k, int(v.shape[1])) for k, v in feats.items()]
        return {"index": batch["index"], "features": self.feature_combinations(feats, study=True)}

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
        if stage == "test":  # features.npz beside the results; post-processed main metrics (evaluation.postprocess)
            from vreid_lightning.evaluation.postprocess import postprocess_test_features

            main, plain = postprocess_test_features(combos[self.main_feature], eval_set, main, self.eval_cfg["metric"],
                                                    self.postprocess_cfg, self.results_path, self.trainer.is_global_zero)
            if plain is not None:
                results[self.main_feature] = main
                results[f"{self.main_feature} (before postprocess)"] = plain
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
        if stage == "test":  # the results writer (vreid_lightning.callbacks.ResultsWriter) draws the rank list
            self.last_test_eval = {"features": combos[self.main_feature], "eval_set": eval_set}


def save_test_rank_list(feats: Tensor, eval_set: Any, metric: str, num_queries: int, path: Path) -> Path:
    """Rank list of the first ``num_queries`` queries of distinct identities (top 10, junk removed)."""
    from vreid_lightning.evaluation.distance import compute_distance
    from vreid_lightning.viz.ranklist import save_rank_list, top_k_valid

    split = eval_set.split
    q_rows, g_rows = eval_set.groups["query"], eval_set.groups["gallery"]
    _, first = np.unique(split.pids[q_rows], return_index=True)
    q_rows = q_rows[np.sort(first)[:num_queries]]
    dev = feats.device
    dist = compute_distance(feats[torch.as_tensor(q_rows, device=dev)], feats[torch.as_tensor(g_rows, device=dev)],
                            metric=metric)
    has_cams = bool((split.camids >= 0).all())
    ranked = top_k_valid(dist.cpu().numpy(), split.pids[q_rows], split.pids[g_rows],
                         split.camids[q_rows] if has_cams else None, split.camids[g_rows] if has_cams else None, 10)
    return save_rank_list([split.paths[i] for i in q_rows], split.pids[q_rows].tolist(),
                          [split.paths[i] for i in g_rows], split.pids[g_rows].tolist(), ranked, path)


def restrict_eval_set(eval_set: Any, rows: np.ndarray) -> Any:
    """The eval set limited to ``rows`` (sorted, unique): renumbered, groups intersected."""
    from vreid_lightning.data.datamodule import EvalSet

    remap = np.full(len(eval_set.split), -1, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    groups = {k: remap[v][remap[v] >= 0] for k, v in eval_set.groups.items()}
    return EvalSet(eval_set.split.subset(rows), eval_set.protocol, groups, eval_set.options)


def run_protocol(feats: Tensor, eval_set: Any, metric: str) -> dict[str, Any]:
    """Evaluate features (rows of ``eval_set.split``) under the set's protocol.

    Returns a flat dict of metrics (fractions); VehicleID adds ``<metric>_std`` for the main size
    (the first listed) and ``sizes`` with every size's metrics.
    """
    split = eval_set.split
    if eval_set.protocol == "image":
        q, g = eval_set.groups["query"], eval_set.groups["gallery"]
        qt, gt = torch.as_tensor(q, device=feats.device), torch.as_tensor(g, device=feats.device)
        cams = split.camids
        has_cams = bool((cams >= 0).all())
        return image_protocol(
            feats[qt], feats[gt], split.pids[q], split.pids[g],
            cams[q] if has_cams else None, cams[g] if has_cams else None, metric=metric,
        )
    if eval_set.protocol == "vehicleid":
        opts = eval_set.options
        sizes = {}
        for size, rows in eval_set.groups.items():
            rt = torch.as_tensor(rows, device=feats.device)
            sizes[size] = vehicleid_protocol(
                feats[rt], split.pids[rows], repeats=int(opts.get("repeats", 10)),
                seed=int(opts.get("seed", 0)), metric=metric,
            )
        first = next(iter(sizes))
        return {**sizes[first], "main_size": first, "sizes": sizes}
    raise ValueError(f"unknown protocol {eval_set.protocol!r}")


def as_float_dict(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-able copy of a metrics dict (numpy/tensor scalars to float, nested dicts kept)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out[k] = as_float_dict(v)
        elif isinstance(v, (str, int)) and not isinstance(v, bool):
            out[k] = v
        elif isinstance(v, (float, np.floating, np.integer)) or (isinstance(v, Tensor) and v.numel() == 1):
            out[k] = float(v)
    return out
