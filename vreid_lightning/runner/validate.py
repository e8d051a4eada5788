"""Config values checked up front: one error naming the key, the value and what is expected.

Hydra composes the config as untyped YAML, so ``data.batch_size=abc`` or ``optimizer.lr=-0.01`` would
surface as a traceback deep in a constructor (some only after the model is built). :data:`RULES` lists
the numeric keys every experiment shares with their type and bound; :func:`validate_config` checks them
(and each stage's overrides) before any work, plus the PK-batch arithmetic (``data.batch_size`` a
multiple of ``data.num_instances``, with at least two identities per batch, or the triplet loss is 0
on every step).
"""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from vreid_lightning.errors import ConfigError

__all__ = ["RULES", "validate_config"]

# key -> (type, test, what is expected); a key absent from the composed config is not checked
RULES: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "data.batch_size": (int, lambda v: v >= 1, "an int >= 1"),
    "data.eval_batch_size": (int, lambda v: v >= 1, "an int >= 1"),
    "data.num_instances": (int, lambda v: v >= 1, "an int >= 1 (images per identity in a PK batch)"),
    "data.num_workers": (int, lambda v: v >= 0, "an int >= 0"),
    "data.val_ids": (int, lambda v: v >= 0, "an int >= 0"),
    "optimizer.lr": (float, lambda v: v > 0, "a float > 0"),
    "optimizer.weight_decay": (float, lambda v: v >= 0, "a float >= 0"),
    "optimizer.momentum": (float, lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "trainer.max_epochs": (int, lambda v: v >= 1 or v == -1, "an int >= 1 (or -1: no limit)"),
    "trainer.check_val_every_n_epoch": (int, lambda v: v >= 1, "an int >= 1"),
    "seed": (int, lambda v: True, "an int"),
}


def _typed(value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise ValueError
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ValueError
        return value
    if isinstance(value, str):  # "1e-3" from YAML 1.1 is a string
        return float(value)
    if not isinstance(value, (int, float)):
        raise ValueError
    return float(value)


def _check(cfg: DictConfig, prefix: str) -> None:
    for key, (kind, test, expected) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            continue
        try:
            ok = test(_typed(value, kind))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ConfigError(f"{prefix}{key}={value!r}: expected {expected}")
    data = cfg.get("data") or {}
    if data.get("sampler") == "pk" and data.get("batch_size") is not None:
        bs, k = int(data.batch_size), int(data.get("num_instances", 4))
        if bs % k:
            raise ConfigError(f"{prefix}data.batch_size={bs} must be a multiple of {prefix}data.num_instances={k} "
                              f"(expected a PK batch of P identities x K images)")
        if bs // k < 2:
            raise ConfigError(f"{prefix}data.batch_size={bs} with {prefix}data.num_instances={k} gives P=1 identity per "
                              f"batch (no negative: the triplet loss is 0 on every step); expected data.batch_size >= "
                              f"{2 * k} (2 x num_instances)")


def validate_config(cfg: DictConfig) -> None:
    """Check :data:`RULES` on the config and on each stage's merged config; raise one ConfigError."""
    _check(cfg, "")
    if cfg.get("stages"):
        from vreid_lightning.runner.stages import stage_config

        for name in cfg.stages:
            scfg = stage_config(cfg, name)
            _check(scfg, f"(stage {name}) ")
