"""One model's fit -> select -> test, with its checkpoints kept honest and small.

``fit_and_test`` trains (unless ``train=false``), tests the selected checkpoint (the last epoch's
without a held-out split, the best ``val/mAP`` on held-out identities with ``data.val_ids > 0``),
and uploads the figures. Pruning the folder to the tested checkpoint is the caller's, once the finished
record is on disk (:mod:`vreid_lightning.runner.finish`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from vreid_lightning.callbacks.checkpoint import BestCheckpoint, LastCheckpoint, has_held_out_split, read_checkpoint
from vreid_lightning.callbacks.results import TEST_RESULTS, ResultsWriter
from vreid_lightning.errors import ConfigError
from vreid_lightning.evaluation.protocols import as_float_dict
from vreid_lightning.runner.ckpt_match import check_checkpoint_matches
from vreid_lightning.runner.instantiate import instantiate_callbacks, instantiate_loggers

__all__ = ["make_trainer", "fill_data_info", "build_model", "fit_and_test", "SELECT_LAST", "SELECT_BEST", "SELECT_GIVEN"]

log = logging.getLogger(__name__)

SELECT_LAST = "last epoch (no held-out validation split: nothing is selected on test images)"
SELECT_BEST = "best val/mAP on the held-out validation identities (data.val_ids)"
SELECT_GIVEN = "the checkpoint given as ckpt_path (train=false)"


def stage_dir(out: Path, stage: str | None) -> Path:
    return out if stage is None else out / "stages" / stage


def make_trainer(cfg: DictConfig, out: Path, stage: str | None, overrides: dict[str, Any] | None = None) -> L.Trainer:
    """The Lightning trainer of one run or stage: ``cfg.trainer`` + ``cfg.callbacks`` + ``cfg.logger``.

    The trainer's ``default_root_dir`` is the run's (or, in a staged run, the stage's) directory: callbacks
    write there.
    """
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    tcfg.update(overrides or {})
    if tcfg.get("enable_progress_bar") is None:
        tcfg["enable_progress_bar"] = sys.stderr.isatty()
    loggers = instantiate_loggers(cfg, out, stage)
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    return instantiate(tcfg, callbacks=callbacks, logger=loggers or False, default_root_dir=str(stage_dir(out, stage)))


def fill_data_info(cfg: DictConfig, dm: Any) -> None:
    """Fill each key the config's ``data_info`` node declares with the DataModule's attribute of that name.

    Model configs read the values the data decides from there (``num_classes: ${data_info.num_classes}``).
    ``config_resolved.yaml`` is written before the data is set up, with these values still null.
    """
    info = cfg.get("data_info")
    if not info:
        return
    with open_dict(cfg):
        for key in list(info):
            if not hasattr(dm, key):
                raise ConfigError(f"data_info.{key}: the DataModule ({type(dm).__name__}) has no attribute {key!r} "
                                  f"to fill it from")
            cfg.data_info[key] = _plain(getattr(dm, key))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value  # numpy / torch scalars


def build_model(cfg: DictConfig, dm: Any) -> L.LightningModule:
    """Instantiate ``cfg.model`` as the config declares it, once ``data_info`` is filled from ``dm``.

    The runner passes no argument of its own: a model config names what its module takes, from the config
    groups (``backbone: ${backbone}``, ``optimizer: ${optimizer}``) or the data (``${data_info.num_classes}``);
    a staged method's per-stage settings (RAM's ``stage``) are in each stage's ``model`` override.
    """
    fill_data_info(cfg, dm)
    # plain containers (not DictConfig) in hparams, so checkpoints load with weights_only=True
    return instantiate(cfg.model, _recursive_=False, _convert_="all")


def _selected(trainer: L.Trainer, train: bool, ckpt_path: str | None, sdir: Path) -> tuple[str | None, str]:
    if not train:
        return ckpt_path, SELECT_GIVEN
    best = next((c for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)
    if best is not None and best.active and best.best_model_path:
        return best.best_model_path, SELECT_BEST
    last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
    if last is None:
        return None, SELECT_LAST
    # under ddp_spawn the callback ran in the workers: the file is where it always is
    fallback = Path(last.dirpath or sdir / "checkpoints") / last.filename
    return last.last_path or (str(fallback) if fallback.is_file() else None), SELECT_LAST


def _test_results(trainer: L.Trainer, model: L.LightningModule, sdir: Path) -> dict[str, Any]:
    """The test's results, in memory: the results writer's (post-processed, as written), else the module's.

    Under ``ddp_spawn`` the test ran in worker processes and neither object here saw it: the results are
    those the writer wrote there (``test_results.json``), the one case read from disk.
    """
    writer = next((c for c in trainer.callbacks if isinstance(c, ResultsWriter)), None)
    if writer is not None and writer.results is not None:
        return writer.results
    own = getattr(model, "eval_results", {}).get("test")
    if own is not None:
        return as_float_dict(own)
    rfile = sdir / TEST_RESULTS
    return json.loads(rfile.read_text()) if writer is not None and rfile.is_file() else {}


def _record(path: str | None, rule: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"path": path, "rule": rule}
    if path:
        ckpt = read_checkpoint(path, "checkpoint")
        rec.update(epoch=int(ckpt.get("epoch", -1)), global_step=int(ckpt.get("global_step", -1)))
    return rec


def fit_and_test(cfg: DictConfig, dm: Any, model: L.LightningModule, out: Path, stage: str | None,
                 ckpt_path: str | None,
                 extra_figures: Callable[[str | None], list[Path]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit (unless ``train=false``), test the selected checkpoint, upload the figures to wandb.

    ``extra_figures(tested_ckpt)`` draws run-level pictures (RAM's Fig. 3 across steps) before the
    upload, so they reach wandb as media too. Returns ``(test results, tested-checkpoint record)``
    on rank 0 (``({}, record)`` elsewhere).
    """
    trainer = make_trainer(cfg, out, stage)
    sdir = stage_dir(out, stage)
    train = bool(cfg.get("train", True))
    if ckpt_path:  # one clear error for a file that is not a checkpoint, or not this method's (runner.ckpt_match)
        check_checkpoint_matches(read_checkpoint(ckpt_path, "ckpt_path"), str(ckpt_path), "ckpt_path", model,
                                 refit=() if train else model.test_refit_prefixes)
    if train:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)  # RNG states are numpy objects
    tested, rule = _selected(trainer, train, ckpt_path, sdir)
    if rule == SELECT_LAST and has_held_out_split(dm):
        rule = "last epoch (held-out validation split given, but no val/mAP checkpoint was saved)"
    results: dict[str, Any] = {}
    try:
        if cfg.get("test", True):
            if tested:
                trainer.test(model, datamodule=dm, ckpt_path=tested, weights_only=False)
            else:
                trainer.test(model, datamodule=dm)
        if trainer.is_global_zero and cfg.get("test", True):
            results = _test_results(trainer, model, sdir)
            extra: list[Path] = []
            try:  # a picture never costs the results
                if extra_figures is not None:
                    extra = extra_figures(tested)
            except (OSError, ValueError, RuntimeError) as e:
                log.warning("figures of %s were not drawn: %s", stage or "the run", e)
            for lg in trainer.loggers:
                if "wandb" in type(lg).__name__.lower():
                    from vreid_lightning.wandb_utils import log_run_media

                    log_run_media(lg, sdir, recursive=stage is not None, extra=extra)
    finally:
        if trainer.is_global_zero:
            from vreid_lightning.wandb_utils import finish_wandb

            finish_wandb()  # one wandb run per stage: the next stage's logger starts its own
    # the checkpoint folder is pruned by the caller after the finished record is written (runner.finish)
    record = _record(tested, rule) if trainer.is_global_zero else {"path": tested, "rule": rule}
    trainer.strategy.barrier("tested")
    return results, record
