"""``resume=RUN_DIR``: continue an interrupted run in its own directory, staged or not.

The resumed config must be the original one (``RUN_DIR/config_resolved.yaml``) apart from where and
how it is logged; finished stages are read back from their ``stage_results.json``, an interrupted one
continues from its ``last.ckpt``, later ones follow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from vreid_lightning.errors import ConfigError

__all__ = ["prepare_resume", "STAGE_RESULTS", "finished_stage", "last_checkpoint"]

STAGE_RESULTS = "stage_results.json"
# keys that may differ between the original and the resumed command (they change no number)
_FREE = ("resume", "ckpt_path", "paths", "logger", "hydra", "trainer.enable_progress_bar",
         "callbacks.progress", "callbacks.model_summary", "callbacks.log_cadence")  # log output only


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in _FREE)


def prepare_resume(cfg: DictConfig) -> Path:
    """Check ``cfg.resume`` names a run directory made by the same config; point ``paths.output_dir`` at it."""
    run = Path(str(cfg.resume))
    saved = run / "config_resolved.yaml"
    if not run.is_dir():
        raise ConfigError(f"resume: {run} is not a directory (give the run directory of the interrupted run)")
    if not saved.is_file():
        raise ConfigError(f"resume: {run} has no config_resolved.yaml, so it is not a run directory of this suite")
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
    try:
        old = _flatten(yaml.safe_load(saved.read_text()) or {})
    except yaml.YAMLError as e:
        raise ConfigError(f"resume: {saved} is not readable YAML ({e})") from None
    new = _flatten(OmegaConf.to_container(cfg, resolve=True))
    diff = sorted(k for k in set(old) | set(new) if not _free(k) and old.get(k, "<absent>") != new.get(k, "<absent>"))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in diff[:6])
        raise ConfigError(f"resume: the config differs from {saved} at {shown}{' ...' if len(diff) > 6 else ''}; "
                          f"resume with the original command's overrides")
    return run


def finished_stage(stage_dir: Path) -> dict[str, Any] | None:
    """A finished stage's record (its test results and tested checkpoint), or None."""
    f = stage_dir / STAGE_RESULTS
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"resume: {f} is not valid JSON ({e}); delete it to re-run that stage") from None


def last_checkpoint(stage_dir: Path) -> str | None:
    """The interrupted stage's ``checkpoints/last.ckpt`` if there is one."""
    p = stage_dir / "checkpoints" / "last.ckpt"
    return str(p) if p.is_file() else None
