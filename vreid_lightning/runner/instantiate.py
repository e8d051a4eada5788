"""Callbacks and loggers from config: every entry with a ``_target_`` is instantiated; no names known.

As in lightning-hydra-template's ``instantiate_callbacks`` / ``instantiate_loggers``. Run-time paths
come from the trainer (``default_root_dir`` is the run or stage directory), not from the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

__all__ = ["instantiate_callbacks", "instantiate_loggers"]


def _entries(node: Any) -> list[Any]:
    if node is None:
        return []
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    items = node.values() if isinstance(node, dict) else node
    return [c for c in items if isinstance(c, dict) and "_target_" in c]


def instantiate_callbacks(callbacks_cfg: Any, has_logger: bool) -> list[L.Callback]:
    """One callback per ``_target_`` entry (a mapping or a list of them).

    A learning-rate monitor is left out when the run has no logger (Lightning refuses it then).
    """
    out: list[L.Callback] = []
    for c in _entries(callbacks_cfg):
        if not has_logger and issubclass(get_class(c["_target_"]), LearningRateMonitor):
            continue
        out.append(instantiate(c))
    return out


def instantiate_loggers(cfg: DictConfig, out: Path, stage: str | None) -> list[Any]:
    """The loggers of ``cfg.logger``; a staged run's loggers write under ``stages/<stage>``.

    wandb's keyword arguments (one run per stage, grouped by experiment) come from
    :func:`vreid_lightning.wandb_utils.wandb_logger_kwargs`.
    """
    loggers = []
    for lcfg in _entries(cfg.get("logger")):
        kwargs: dict[str, Any] = {}
        if "wandb" in lcfg["_target_"].lower():
            lcfg.pop("mode", None)
            from vreid_lightning.wandb_utils import wandb_logger_kwargs

            kwargs = wandb_logger_kwargs(cfg, out, stage)
        elif stage is not None and "save_dir" in lcfg:
            kwargs = {"save_dir": str(out / "stages" / stage)}
        target = get_class(lcfg.pop("_target_"))
        loggers.append(target(**{**lcfg, **kwargs}))
    return loggers
