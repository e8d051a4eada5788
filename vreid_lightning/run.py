"""Train -> test orchestration: single runs and staged pipelines, results.json, the results table.

``run(cfg)`` is what ``python -m vreid_lightning`` calls with the composed Hydra config. A config
without ``stages`` trains one model and tests its best checkpoint. A config with ``stages`` (RAM's
step-wise training) trains each stage in order, each starting from the previous stage's best weights,
tests every stage and reports all of them under ``stages`` in ``results.json``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from vreid_lightning.errors import ConfigError
from vreid_lightning.methods.base import METRIC_KEYS, as_float_dict

__all__ = ["run", "run_dir", "format_results_table"]

log = logging.getLogger(__name__)


def run_dir(cfg: DictConfig) -> Path:
    """The run directory: Hydra's output dir for this job (also under multirun)."""
    if cfg.paths.get("output_dir"):
        return Path(cfg.paths.output_dir)
    return Path(HydraConfig.get().runtime.output_dir)


def _loggers(cfg: DictConfig, out: Path, stage: str | None) -> list[Any]:
    if cfg.get("logger") is None:
        return []
    loggers = []
    for name, lcfg in cfg.logger.items():
        if lcfg is None or "_target_" not in lcfg:
            continue
        kwargs: dict[str, Any] = {}
        lcfg = OmegaConf.to_container(lcfg, resolve=True)
        if "wandb" in lcfg["_target_"].lower():
            lcfg.pop("mode", None)
            from vreid_lightning.wandb_utils import wandb_logger_kwargs

            kwargs = wandb_logger_kwargs(cfg, out, stage)
        elif stage is not None and "save_dir" in lcfg:
            kwargs = {"save_dir": str(out / "stages" / stage)}
        target = get_class(lcfg.pop("_target_"))
        loggers.append(target(**{**lcfg, **kwargs}))
    return loggers


def _callbacks(cfg: DictConfig, ckpt_dir: Path, has_logger: bool) -> list[L.Callback]:
    cbs: list[L.Callback] = []
    for name, ccfg in (cfg.get("callbacks") or {}).items():
        if ccfg is None or "_target_" not in ccfg:
            continue
        if name == "model_checkpoint":
            cbs.append(instantiate(ccfg, dirpath=str(ckpt_dir)))
        elif name == "lr_monitor" and not has_logger:
            continue
        else:
            cbs.append(instantiate(ccfg))
    return cbs


def _make_trainer(cfg: DictConfig, out: Path, stage: str | None, overrides: dict[str, Any]) -> L.Trainer:
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    tcfg.update(overrides)
    if tcfg.get("enable_progress_bar") is None:
        tcfg["enable_progress_bar"] = sys.stderr.isatty()
    loggers = _loggers(cfg, out, stage)
    ckpt_dir = out / "checkpoints" if stage is None else out / "stages" / stage / "checkpoints"
    callbacks = _callbacks(cfg, ckpt_dir, bool(loggers))
    return instantiate(tcfg, callbacks=callbacks, logger=loggers or False, default_root_dir=str(out))


def _best_ckpt(trainer: L.Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    if isinstance(cb, ModelCheckpoint) and cb.best_model_path:
        return cb.best_model_path
    return None


def _accepts(target: str, name: str) -> bool:
    """Whether the class ``target`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    params = inspect.signature(get_class(target).__init__).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _build_model(cfg: DictConfig, dm: Any, stage: str | None, stage_sets_model_stage: bool = False) -> L.LightningModule:
    """Instantiate ``cfg.model`` with the data-dependent arguments.

    In a staged run the stage's name is passed as ``stage`` (RAM: the step picks the branches) when the
    module takes a ``stage`` argument and the stage's own ``model`` override does not set it.
    """
    extra: dict[str, Any] = {
        "num_classes": dm.num_classes,
        "attribute_classes": dict(dm.attribute_classes),
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "scheduler": OmegaConf.to_container(cfg.scheduler, resolve=True) or None,
    }
    if stage is not None and not stage_sets_model_stage and _accepts(cfg.model._target_, "stage"):
        extra["stage"] = stage
    # plain containers (not DictConfig) in hparams, so checkpoints load with weights_only=True
    return instantiate(cfg.model, **extra, _recursive_=False, _convert_="all")


def _fit_and_test(cfg: DictConfig, dm: Any, model: L.LightningModule, out: Path, stage: str | None,
                  trainer_overrides: dict[str, Any], ckpt_path: str | None,
                  extra_figures: Callable[[str | None], list[Path]] | None = None) -> tuple[dict[str, Any], str | None]:
    """Fit (unless ``train=false``), test the best checkpoint, draw figures, upload them to wandb.

    ``extra_figures(best_ckpt)`` draws run-level pictures (RAM's Fig. 3 across steps) before the
    upload, so they reach wandb as media too.
    """
    trainer = _make_trainer(cfg, out, stage, trainer_overrides)
    stage_dir = out if stage is None else out / "stages" / stage
    results_file = stage_dir / "test_results.json"
    if trainer.is_global_zero:
        results_file.unlink(missing_ok=True)
    model.results_path = str(results_file)
    model.postprocess_cfg = OmegaConf.to_container(cfg.postprocess, resolve=True) if cfg.get("postprocess") else None
    train = bool(cfg.get("train", True))
    if train:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    # test the best checkpoint of this fit; with train=false, the checkpoint given as ckpt_path
    best = _best_ckpt(trainer) if train else ckpt_path
    results: dict[str, Any] = {}
    try:
        if cfg.get("test", True):
            trainer.test(model, datamodule=dm, ckpt_path=best, weights_only=False) if best else trainer.test(
                model, datamodule=dm)
        if trainer.is_global_zero:
            # read back from the file rank 0 wrote: under ddp_spawn the evaluation ran in other processes
            results = json.loads(results_file.read_text()) if results_file.is_file() else {}
            extra: list[Path] = []
            try:  # a picture never costs the results
                if hasattr(model, "make_figures"):
                    model.make_figures(dm, stage_dir, best)
                if extra_figures is not None:
                    extra = extra_figures(best)
            except (OSError, ValueError, RuntimeError) as e:
                log.warning("figures of %s were not drawn: %s", stage or "the run", e)
            for lg in trainer.loggers:
                if "wandb" in type(lg).__name__.lower():
                    from vreid_lightning.wandb_utils import log_run_media

                    log_run_media(lg, stage_dir, recursive=stage is not None, extra=extra)
    finally:
        if trainer.is_global_zero:
            from vreid_lightning.wandb_utils import finish_wandb

            finish_wandb()  # one wandb run per stage: the next stage's logger starts its own
    return results, best


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    metrics = res.get("metrics", {})
    out = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    out.update({k: v for k, v in metrics.items() if k.endswith("_std")})
    return as_float_dict(out)


def format_results_table(results: dict[str, Any]) -> str:
    """A plain-text table of the test metrics (and stages / feature combinations when present)."""
    cols = ["mAP", "rank1", "rank5", "rank10", "mINP"]
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, m in results.get("stages", {}).items():
        rows.append((f"stage {name}", m))
    for name, m in results.get("features", {}).items():
        rows.append((f"feature {name}", m))
    rows.append(("test (final)", results.get("test", {})))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}" + "".join(f"{c:>9}" for c in cols)]
    for name, m in rows:
        lines.append(f"{name:<{width}}" + "".join(
            f"{m[c]:>9.4f}" if isinstance(m.get(c), float) else f"{'-':>9}" for c in cols))
    return "\n".join(lines)


@rank_zero_only
def _write_results(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(format_results_table(results))
    print(f"\nRun directory: {out.resolve()}")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train then test as the composed config says; returns the results written to results.json."""
    check_config(cfg)
    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))

    stages = cfg.get("stages")
    if stages:  # a bad stage key fails before any data is generated
        for name in stages:
            stage_config(cfg, name)
    dm = _setup_datamodule(cfg)
    results: dict[str, Any] = {"experiment": cfg.experiment_name, "data": _data_summary(dm),
                               "model_selection": dm.model_selection}

    if not stages:
        model = _build_model(cfg, dm, None)
        res, best = _fit_and_test(cfg, dm, model, out, None, {}, cfg.get("ckpt_path"))
        results["test"] = _summary(res)
        results["main_feature"] = res.get("main")
        results["features"] = {k: _summary({"metrics": v}) for k, v in res.get("features", {}).items()}
        if "sizes" in res.get("metrics", {}):
            results["test_sizes"] = {k: _summary({"metrics": m}) for k, m in res["metrics"]["sizes"].items()}
        results["best_checkpoint"] = best
    else:
        results.update(_run_stages(cfg, dm, out))
    _write_results(out, results)
    return results


def _run_stages(cfg: DictConfig, dm: Any, out: Path) -> dict[str, Any]:
    """Step-wise training: each stage starts from the previous stage's best weights."""
    stages_cfg = cfg.stages
    names = list(stages_cfg)
    only = cfg.get("run_stages")
    if isinstance(only, str):
        only = [only]
    unknown = [n for n in (only or []) if n not in names]
    if unknown:
        raise ConfigError(f"run_stages: unknown stage(s) {unknown}; this experiment's stages are {names}")
    stage_cfgs = {name: stage_config(cfg, name) for name in names}  # every stage checked before any work
    selected = [n for n in names if not only or n in only]
    prev_ckpt: str | None = cfg.get("init_from")
    if selected[0] != names[0] and not prev_ckpt:
        log.warning("run_stages starts at %r without init_from: it trains from a fresh initialisation, not "
                    "from the %r stage", selected[0], names[names.index(selected[0]) - 1])
    stage_results: dict[str, Any] = {}
    stage_ckpts: dict[str, str | None] = {}
    stage_sizes: dict[str, Any] = {}
    features: dict[str, Any] = {}
    last_res: dict[str, Any] = {}
    data_key = _data_key(cfg)
    stage_data: dict[str, Any] = {}
    for i, name in enumerate(selected):
        scfg = stages_cfg[name] or {}
        cfg_s = stage_cfgs[name]
        if _data_key(cfg_s) != data_key:  # this stage trains/tests on other data: a new DataModule
            data_key = _data_key(cfg_s)
            dm = _setup_datamodule(cfg_s)
            log.info("stage %s: data rebuilt (%d train images, %d identities)", name, len(dm.train_split), dm.num_classes)
        stage_data[name] = _data_summary(dm)
        L.seed_everything(cfg.seed + names.index(name), workers=True)  # the same seed whichever stages run
        model = _build_model(cfg_s, dm, name, stage_sets_model_stage="stage" in (scfg.get("model") or {}))
        if prev_ckpt:
            report = model.load_previous_stage(prev_ckpt)
            log.info("stage %s: started from %s (%d tensors carried over, new: %s)",
                     name, prev_ckpt, len(report["loaded"]), report["new"])
        overrides: dict[str, Any] = {}  # the stage's trainer keys are merged into cfg_s.trainer already
        ckpt = cfg.get("ckpt_path") if i == 0 else None
        figure = None
        if i == len(selected) - 1 and hasattr(type(model), "staged_figure"):
            def figure(best: str | None, cls: Any = type(model), done: dict = dict(stage_ckpts), name: str = name) -> list[Path]:
                fig = cls.staged_figure(dm, out, {**done, name: best})
                return [fig] if fig is not None else []
        res, best = _fit_and_test(cfg_s, dm, model, out, name, overrides, ckpt, figure)
        stage_results[name] = _summary(res)
        features[name] = {k: _summary({"metrics": v}) for k, v in res.get("features", {}).items()}
        if "sizes" in res.get("metrics", {}):
            stage_sizes[name] = {s: _summary({"metrics": m}) for s, m in res["metrics"]["sizes"].items()}
        prev_ckpt = best or _save_weights(model, out / "stages" / name / "final.ckpt")
        stage_ckpts[name] = best
        last_res = res
    return {
        "stages": stage_results,
        "test": stage_results[selected[-1]],
        "main_feature": last_res.get("main"),
        "features": features[selected[-1]],
        "stage_features": features,
        **({"stage_sizes": stage_sizes} if stage_sizes else {}),
        **({"stage_data": stage_data} if len({json.dumps(v, sort_keys=True) for v in stage_data.values()}) > 1 else {}),
        "best_checkpoint": prev_ckpt,
    }


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


def _data_key(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True, default=str)


def _setup_datamodule(cfg: DictConfig) -> Any:
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _data_summary(dm: Any) -> dict[str, Any]:
    return as_float_dict({"train_images": len(dm.train_split), "train_ids": dm.num_classes,
                          "eval_images": len(dm.eval_set.split)})


def _save_weights(model: L.LightningModule, path: Path) -> str:
    """Save the weights once (rank 0); every rank waits until the file exists, then gets its path."""
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict()}, path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return str(path)


def check_config(cfg: DictConfig) -> None:
    """Refuse combinations that would silently do the wrong thing (before any work starts)."""
    from hydra.types import RunMode

    t = cfg.trainer
    if t.get("use_distributed_sampler"):
        raise ConfigError("trainer.use_distributed_sampler must be false: the PK sampler and the evaluation "
                          "shards are DDP-aware; Lightning's sampler would split batches and evaluate ~1/N of the images")
    strategy = str(t.get("strategy", "auto"))
    launched_outside = "LOCAL_RANK" in os.environ or "SLURM_PROCID" in os.environ
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN and strategy == "ddp" \
            and not launched_outside:
        raise ConfigError("trainer.strategy=ddp re-executes the command line per rank, which under -m re-launches "
                          "the whole sweep: use trainer=ddp_spawn for sweeps (or launch ranks with torchrun/SLURM)")
    if not cfg.get("stages"):
        for key in ("init_from", "run_stages"):
            if cfg.get(key) is not None:
                raise ConfigError(f"{key} applies to staged experiments only; this one has no stages")
    if not cfg.get("train", True) and cfg.get("test", True) and not cfg.get("ckpt_path") and not cfg.get("stages"):
        log.warning("train=false without ckpt_path: testing a freshly initialised model")
