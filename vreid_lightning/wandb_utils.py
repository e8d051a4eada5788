"""wandb integration: offline without an API key, online with one; grouped by experiment; media.

``logger=wandb`` builds a Lightning ``WandbLogger`` with these arguments: runs are grouped by the
experiment name, the full resolved config is logged, the run files live in the run directory, and
with no API key configured the run is written offline (``wandb sync <dir>`` uploads it later).
``wandb.finish()`` is called by the entry point in every case, failures included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["wandb_logger_kwargs", "wandb_has_api_key", "log_run_media", "finish_wandb"]


def wandb_has_api_key() -> bool:
    """True when wandb can authenticate: WANDB_API_KEY, or a netrc entry written by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def wandb_logger_kwargs(cfg: DictConfig, out: Path, stage: str | None) -> dict[str, Any]:
    """Arguments of ``WandbLogger`` beyond those in ``conf/logger/wandb.yaml``."""
    mode = cfg.logger.wandb.get("mode")
    if mode not in (None, "auto", "online", "offline"):
        from vreid_lightning.errors import ConfigError

        raise ConfigError(f"logger.wandb.mode={mode!r}; expected auto, online or offline")
    if mode in (None, "auto"):
        mode = "online" if wandb_has_api_key() else "offline"
    name = f"{out.parent.name}-{out.name}" if stage is None else f"{out.parent.name}-{out.name}-{stage}"
    return {
        "name": f"{cfg.experiment_name}-{name}",
        "group": cfg.experiment_name,
        "job_type": stage or "train",
        "save_dir": str(out),
        "offline": mode == "offline",
        "config": OmegaConf.to_container(cfg, resolve=True),
        "reinit": "finish_previous",
    }


def log_run_media(logger: Any, out: Path, recursive: bool = True, extra: list[Path] | None = None) -> None:
    """Upload the PNG figures written in ``out`` (and below it when ``recursive``), plus ``extra``,
    as wandb images."""
    import wandb

    found = out.rglob("*.png") if recursive else out.glob("*.png")
    pngs = sorted(p for p in found if "wandb" not in p.parts and "stages" not in p.relative_to(out).parts)
    pngs += [Path(p) for p in extra or [] if Path(p).is_file()]
    if pngs:
        logger.experiment.log({f"media/{p.stem}": wandb.Image(str(p)) for p in pngs})


def finish_wandb(exit_code: int = 0) -> None:
    """Close the current wandb run if one is open (safe to call when wandb was never used)."""
    import sys

    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
