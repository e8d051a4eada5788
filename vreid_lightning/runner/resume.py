"""``resume=RUN_DIR``: continue an interrupted run in its own directory, staged or not.

The resumed config must be the original one (``RUN_DIR/config_resolved.yaml``) apart from where and
how it is logged; finished stages are read back from their ``stage_results.json``, an interrupted one
continues from its ``last.ckpt``, later ones follow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from vreid_lightning.errors import ConfigError

__all__ = ["prepare_resume", "STAGE_RESULTS", "finished_stage", "finished_run", "last_checkpoint"]

log = logging.getLogger(__name__)

STAGE_RESULTS = "stage_results.json"
# keys that may differ between the original and the resumed command (they change no number)
_FREE = ("resume", "ckpt_path", "paths", "logger", "hydra", "trainer.enable_progress_bar", "break_lock",
         "data.verify_eval_images",
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
        trained = any(run.rglob("*.ckpt")) or (run / "stages").is_dir()
        if trained:
            raise ConfigError(f"resume: {run} has no config_resolved.yaml, so it is not a run directory of this suite")
        from vreid_lightning.runner.lock import LOCK_NAME

        lock = " break_lock=true" if (run / LOCK_NAME).exists() else ""
        raise ConfigError(f"resume: {run} has no config_resolved.yaml and no checkpoint: the run was stopped before "
                          f"anything trained, so there is nothing to resume. Start afresh: the same command without "
                          f"resume= (add hydra.run.dir={run}{lock} to reuse the directory)")
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
    try:
        old = _flatten(yaml.safe_load(saved.read_text()) or {})
    except yaml.YAMLError as e:
        raise ConfigError(f"resume: {saved} is not readable YAML ({e})") from None
    new = _flatten(OmegaConf.to_container(cfg, resolve=True))
    diff = sorted(k for k in set(old) | set(new) if not _free(k) and old.get(k, "<absent>") != new.get(k, "<absent>"))
    if "model.net._target_" in diff and "model.net._target_" not in old:
        raise ConfigError(f"resume: {saved} is of a run made before model configs named their classes (no "
                          f"model.net._target_; its checkpoints hold the old hyper-parameters): it cannot be "
                          f"continued by this version; start the run afresh")
    if diff:
        shown = ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in diff[:6])
        raise ConfigError(f"resume: the config differs from {saved} at {shown}{' ...' if len(diff) > 6 else ''}; "
                          f"resume with the original command's overrides")
    return run


def _finished_record(f: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The JSON record ``f`` if it is a complete one; a missing, empty or invalid file is None (rebuilt)."""
    if not f.is_file():
        return None
    try:
        rec = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        log.warning("resume: %s is not valid JSON (%s); it is rebuilt", f, e)
        return None
    if not isinstance(rec, dict) or any(k not in rec for k in keys):
        log.warning("resume: %s is not a complete record (expected keys %s); it is rebuilt", f, list(keys))
        return None
    return rec


def finished_stage(stage_dir: Path) -> dict[str, Any] | None:
    """A finished stage's record (its test results and tested checkpoint), or None."""
    return _finished_record(stage_dir / STAGE_RESULTS, ("results", "tested_checkpoint"))


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """A finished (unstaged) run's ``results.json``, or None."""
    return _finished_record(run_dir / "results.json", ("tested_checkpoint",))


def last_checkpoint(stage_dir: Path) -> str | None:
    """The interrupted stage's ``checkpoints/last.ckpt`` if training can continue from it.

    A damaged file is one error naming it; a checkpoint stripped of its optimizer state (a finished
    stage's, whose record is missing) is not continued from: the stage trains again.
    """
    from vreid_lightning.callbacks.checkpoint import read_checkpoint
    from vreid_lightning.runner.finish import resumable

    p = stage_dir / "checkpoints" / "last.ckpt"
    if not p.is_file():
        return None
    return str(p) if resumable(read_checkpoint(p, "resume"), str(p)) else None
