"""Config checks made before any work starts, and the global-batch semantics under DDP."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

from vreid_lightning.errors import ConfigError

__all__ = ["check_config", "world_size", "apply_batch_semantics", "BATCH_SEMANTICS"]

log = logging.getLogger(__name__)

# what data.batch_size means (batch_semantics=...)
BATCH_SEMANTICS = {
    "per_rank": "each rank's batch: the global batch grows with the number of ranks, the learning rate does not",
    "global": "the global batch: each rank takes data.batch_size / world_size, so any device count sees the same",
    "scale_lr": "each rank's batch, and optimizer.lr is multiplied by the world size (linear scaling rule)",
}


def _task_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    except (ValueError, AttributeError):
        return []


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
    else:
        given = [o for o in _task_overrides() if o.lstrip("+~").split("=")[0] in ("trainer.max_epochs", "trainer.min_epochs")]
        if given:
            raise ConfigError(f"{given[0]}: this experiment is staged and each stage sets its own length; use "
                              f"stages.<step>.trainer.max_epochs (steps: {list(cfg.stages)})")
    if cfg.get("resume") and cfg.get("ckpt_path"):
        raise ConfigError("resume and ckpt_path are exclusive: resume=RUN_DIR finds each stage's last.ckpt itself")
    sem = cfg.get("batch_semantics", "per_rank")
    if sem not in BATCH_SEMANTICS:
        raise ConfigError(f"batch_semantics={sem!r}; expected one of {list(BATCH_SEMANTICS)}")
    if not cfg.get("train", True) and cfg.get("test", True) and not cfg.get("ckpt_path") and not cfg.get("stages"):
        log.warning("train=false without ckpt_path: testing a freshly initialised model")


def world_size(trainer_cfg: Any) -> int:
    """Ranks the trainer config asks for: devices x num_nodes (``auto``/-1: the visible GPUs, or 1 on CPU)."""
    devices = trainer_cfg.get("devices", 1)
    accel = str(trainer_cfg.get("accelerator", "auto"))
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, str) and "," in devices:
        n = len([d for d in devices.split(",") if d.strip()])
    elif devices in ("auto", -1, None):
        n = torch.cuda.device_count() if accel in ("gpu", "cuda", "auto") and torch.cuda.is_available() else 1
    elif isinstance(devices, int):
        n = devices
    else:  # a list of device ids
        n = len(list(devices))
    return max(1, n) * max(1, int(trainer_cfg.get("num_nodes", 1) or 1))


def apply_batch_semantics(cfg: DictConfig) -> dict[str, Any]:
    """Resolve ``batch_semantics`` into ``data.batch_size`` (per rank) and ``optimizer.lr``; print the result.

    Returns ``{"semantics", "world_size", "per_rank_batch", "global_batch", "lr"}`` (also in results.json).
    """
    sem = cfg.get("batch_semantics", "per_rank")
    world = world_size(cfg.trainer)
    bs = int(cfg.data.batch_size)
    lr = cfg.optimizer.get("lr") if cfg.get("optimizer") else None
    with open_dict(cfg):
        if sem == "global":
            if bs % world:
                raise ConfigError(f"data.batch_size={bs} with batch_semantics=global must be divisible by the "
                                  f"world size {world} (trainer.devices x trainer.num_nodes)")
            per_rank = bs // world
            k = int(cfg.data.get("num_instances", 1) or 1) if cfg.data.get("sampler") == "pk" else 1
            if per_rank % k:
                raise ConfigError(f"data.batch_size={bs} over {world} ranks gives {per_rank} per rank, not a multiple "
                                  f"of data.num_instances={k} (PK batches)")
            cfg.data.batch_size = per_rank
        elif sem == "scale_lr" and lr is not None:
            cfg.optimizer.lr = float(lr) * world
    info = {"semantics": sem, "world_size": world, "per_rank_batch": int(cfg.data.batch_size),
            "global_batch": int(cfg.data.batch_size) * world,
            "lr": float(cfg.optimizer.lr) if cfg.get("optimizer") and cfg.optimizer.get("lr") is not None else None}
    if rank_zero_only.rank == 0:
        print(f"Effective global batch: {info['global_batch']} = {info['per_rank_batch']} per rank x {world} rank(s) "
              f"(batch_semantics={sem}: data.batch_size is {BATCH_SEMANTICS[sem]}); lr {info['lr']}", flush=True)
    return info
