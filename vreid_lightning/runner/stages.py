"""Staged pipelines (RAM's steps, VehicleNet's two stages): per-stage configs, the loop, resume.

Each stage runs with the top-level config plus its own ``stages.<name>`` overrides, starts from the
previous stage's tested weights (the module's ``load_previous_stage`` hook), and is tested; a finished
stage leaves ``stages/<name>/stage_results.json`` so a resumed run reads it back instead of re-running.
"""

from __future__ import annotations

import copy
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from vreid_lightning.atomic import atomic_write_text
from vreid_lightning.callbacks.checkpoint import read_checkpoint
from vreid_lightning.errors import ConfigError
from vreid_lightning.evaluation.protocols import as_float_dict
from vreid_lightning.runner.ckpt_match import check_checkpoint_matches
from vreid_lightning.runner.finish import keep_only_tested
from vreid_lightning.runner.fit import build_model, fit_and_test, stage_dir
from vreid_lightning.runner.resume import STAGE_RESULTS, finished_stage, last_checkpoint
from vreid_lightning.runner.results import summary, test_extras
from vreid_lightning.viz.figures import Figures, build_figures

__all__ = ["STAGE_KEYS", "stage_config", "selected_stages", "run_stages", "setup_datamodule", "data_summary"]

log = logging.getLogger(__name__)

STAGE_KEYS = ("trainer", "data", "model", "backbone", "optimizer", "scheduler")


def stage_config(cfg: DictConfig, name: str) -> DictConfig:
    """The config one stage runs with: ``cfg`` with ``stages.<name>``'s overrides merged in.

    A stage may override the ``trainer``, ``data``, ``model``, ``backbone``, ``optimizer`` and
    ``scheduler`` groups. An override is merged key by key into the top-level group (keys the group
    does not have are refused), except that an override carrying its own ``_target_`` replaces the
    group whole (another model class, another optimizer). Overrides are per stage, not cumulative:
    each stage starts from the top-level config.
    """
    scfg = cfg.stages[name] or {}
    unknown = set(scfg) - set(STAGE_KEYS)
    if unknown:
        raise ConfigError(f"stages.{name}: unknown key(s) {sorted(unknown)}; a stage may override {list(STAGE_KEYS)}")
    out = copy.deepcopy(cfg)
    for group in STAGE_KEYS:
        over = scfg.get(group)
        if over is None:
            continue
        if not isinstance(over, DictConfig):
            raise ConfigError(f"stages.{name}.{group}: expected a mapping of overrides, got {over!r}")
        try:
            if "_target_" in over and over._target_ != (cfg.get(group) or {}).get("_target_"):
                with open_dict(out):
                    out[group] = over
            else:
                out[group] = OmegaConf.merge(cfg[group], over)
        except (ConfigKeyError, ConfigAttributeError) as e:
            raise ConfigError(f"stages.{name}.{group}: {e.msg.splitlines()[0]} (a stage overrides existing keys "
                              f"only; give a _target_ to replace the whole {group} config)") from None
    return out


def selected_stages(cfg: DictConfig) -> list[str]:
    """The stages this run trains, in order (``run_stages`` picks a subset)."""
    names = list(cfg.stages)
    only = cfg.get("run_stages")
    if isinstance(only, str):
        only = [only]
    unknown = [n for n in (only or []) if n not in names]
    if unknown:
        raise ConfigError(f"run_stages: unknown stage(s) {unknown}; this experiment's stages are {names}")
    if not only and not cfg.get("train", True) and cfg.get("ckpt_path"):
        return names[-1:]  # train=false ckpt_path=FILE: a trained model is the final stage's; test that stage
    return [n for n in names if not only or n in only]


def _data_key(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True, default=str)


def setup_datamodule(cfg: DictConfig) -> Any:
    """Instantiate ``cfg.data`` and set it up for fitting."""
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def data_summary(dm: Any) -> dict[str, Any]:
    return as_float_dict({"train_images": len(dm.train_split), "train_ids": dm.num_classes,
                          "eval_images": len(dm.eval_set.split)})


@rank_zero_only
def _write_stage(sdir: Path, record: dict[str, Any]) -> None:
    sdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sdir / STAGE_RESULTS, json.dumps(record, indent=2))


@rank_zero_only
def _finish_stage(cfg: DictConfig, sdir: Path, tested: str | None) -> None:
    keep_only_tested(cfg, sdir, tested)


def _save_weights(model: L.LightningModule, path: Path) -> str:
    """Save the weights once (rank 0); every rank waits until the file exists, then gets its path."""
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict()}, path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return str(path)


def run_stages(cfg: DictConfig, dm: Any, out: Path, resuming: bool = False) -> dict[str, Any]:
    """Step-wise training: each stage starts from the previous stage's tested weights.

    With ``resuming``, a stage with ``stage_results.json`` is read back, one with ``checkpoints/last.ckpt``
    continues from it, and the others run from the start.
    """
    names = list(cfg.stages)
    stage_cfgs = {name: stage_config(cfg, name) for name in names}  # every stage checked before any work
    selected = selected_stages(cfg)
    prev_ckpt: str | None = cfg.get("init_from")
    if prev_ckpt:
        read_checkpoint(prev_ckpt, "init_from")
    if selected[0] != names[0] and not prev_ckpt and cfg.get("train", True):
        log.warning("run_stages starts at %r without init_from: it trains from a fresh initialisation, not "
                    "from the %r stage", selected[0], names[names.index(selected[0]) - 1])
    stage_results: dict[str, Any] = {}
    stage_ckpts: dict[str, str | None] = {}
    stage_tested: dict[str, Any] = {}
    stage_sizes: dict[str, Any] = {}
    stage_data: dict[str, Any] = {}
    features: dict[str, Any] = {}
    last_res: dict[str, Any] = {}
    data_key = _data_key(cfg)
    for i, name in enumerate(selected):
        cfg_s = stage_cfgs[name]
        sdir = stage_dir(out, name)
        done = finished_stage(sdir) if resuming else None
        if _data_key(cfg_s) != data_key:  # this stage trains/tests on other data: a new DataModule
            data_key = _data_key(cfg_s)
            dm = setup_datamodule(cfg_s)
            log.info("stage %s: data rebuilt (%d train images, %d identities)", name, len(dm.train_split), dm.num_classes)
        stage_data[name] = data_summary(dm)
        if done is not None:  # finished before the interruption: read back, not re-run
            log.info("stage %s: finished before, results read back from %s", name, sdir / STAGE_RESULTS)
            res, record = done["results"], done["tested_checkpoint"]
        else:
            L.seed_everything(cfg.seed + names.index(name), workers=True)  # the same seed whichever stages run
            model = build_model(cfg_s, dm)
            if prev_ckpt and prev_ckpt == cfg.get("init_from"):  # another method's file: one error naming it
                check_checkpoint_matches(read_checkpoint(prev_ckpt, "init_from"), prev_ckpt, "init_from", model, False)
            if prev_ckpt:
                report = model.load_previous_stage(prev_ckpt)
                log.info("stage %s: started from %s (%d tensors carried over, new: %s)",
                         name, prev_ckpt, len(report["loaded"]), report["new"])
            ckpt = (last_checkpoint(sdir) if resuming else None)  # a damaged last.ckpt: one error naming it
            if ckpt:
                log.info("stage %s: continues from %s", name, ckpt)
            ckpt = ckpt or (cfg.get("ckpt_path") if i == 0 else None)
            figure = None
            drawn = build_figures(model.hparams.get("figures")) if i == len(selected) - 1 else None
            if drawn is not None:  # the method's run-level picture (model.figures: RAM's Fig. 3 across the steps)
                load = partial(type(model).load_from_checkpoint, map_location="cpu", weights_only=False)

                def figure(best: str | None, drawn: Figures = drawn, load: Any = load,
                           done_ckpts: dict = dict(stage_ckpts), name: str = name) -> list[Path]:
                    return drawn.across_stages(dm, out, {**done_ckpts, name: best}, load)
            res, record = fit_and_test(cfg_s, dm, model, out, name, ckpt, figure)
            if not record.get("path"):
                record["path"] = _save_weights(model, sdir / "final.ckpt")
            _write_stage(sdir, {"results": res, "tested_checkpoint": record})
        _finish_stage(cfg_s, sdir, record.get("path"))  # after the record: every state on disk resumes (finish)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        stage_results[name] = summary(res)
        features[name] = {k: summary({"metrics": v}) for k, v in res.get("features", {}).items()}
        if "sizes" in res.get("metrics", {}):
            stage_sizes[name] = {s: summary({"metrics": m}) for s, m in res["metrics"]["sizes"].items()}
        prev_ckpt = record["path"]
        stage_ckpts[name] = record["path"]
        stage_tested[name] = record
        last_res = res
    return {
        "stages": stage_results,
        "test": stage_results[selected[-1]],
        "main_feature": last_res.get("main"),
        "features": features[selected[-1]],
        "stage_features": features,
        **({"stage_sizes": stage_sizes} if stage_sizes else {}),
        **({"stage_data": stage_data} if len({json.dumps(v, sort_keys=True) for v in stage_data.values()}) > 1 else {}),
        **test_extras(last_res),
        "tested_checkpoint": stage_tested[selected[-1]],
        "stage_checkpoints": stage_tested,
        "best_checkpoint": prev_ckpt,
    }

