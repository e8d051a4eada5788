"""wandb integration: offline without an API key, online with one; sweeps grouped; summary, media, tables.

``logger=wandb`` builds a Lightning ``WandbLogger`` with these arguments: the full resolved config is
logged, the run files live in the run directory, and with no API key configured the run is written
offline (``wandb sync <dir>`` uploads it later). ``wandb.finish()`` is called by the entry point in
every case, failures included.

Dashboard layout: the runs of one sweep share a group (:func:`sweep_group`: ``<experiment or sweep
name>-sweep-<time>``; a single run's group is its experiment name), the job type is the stage of a
staged run or else the experiment (so a leaderboard sweep's methods are told apart), the final test
metrics go into the run summary (``final/<metric>``, ``final/<feature>/<metric>``), every PNG of the
run directory (rank lists, response / attention maps, the CMC curve) is logged as media, and the
sweep-end callback logs the sweep's table as a ``wandb.Table`` in the sweep's group
(:func:`log_sweep_table`, job type ``sweep_table``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["wandb_logger_kwargs", "wandb_has_api_key", "log_run_media", "log_run_summary", "log_sweep_table",
           "sweep_group", "finish_wandb"]


def wandb_has_api_key() -> bool:
    """True when wandb can authenticate: WANDB_API_KEY, or a netrc entry written by ``wandb login``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def _mode(mode: Any) -> str:
    if mode not in (None, "auto", "online", "offline"):
        from vreid_lightning.errors import ConfigError

        raise ConfigError(f"logger.wandb.mode={mode!r}; expected auto, online or offline")
    if mode in (None, "auto"):
        return "online" if wandb_has_api_key() else "offline"
    return str(mode)


def sweep_group(sweep_dir: str | Path) -> str:
    """The wandb group of a sweep: ``<name>-sweep-<time>`` from ``<log_dir>/<name>/multiruns/<time>``."""
    p = Path(sweep_dir)
    return f"{p.parent.parent.name}-sweep-{p.name}" if p.parent.name == "multiruns" else f"sweep-{p.name}"


def _current_sweep_dir() -> Path | None:
    """The sweep directory when this job runs under ``-m``, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(str(HydraConfig.get().sweep.dir))
    except (ValueError, AttributeError, KeyError):
        return None
    return None


def wandb_logger_kwargs(cfg: DictConfig, out: Path, stage: str | None) -> dict[str, Any]:
    """Arguments of ``WandbLogger`` beyond those in ``conf/logger/wandb.yaml``."""
    mode = _mode(cfg.logger.wandb.get("mode"))
    name = f"{out.parent.name}-{out.name}" if stage is None else f"{out.parent.name}-{out.name}-{stage}"
    sweep_dir = _current_sweep_dir()
    return {
        "name": f"{cfg.experiment_name}-{name}",
        "group": sweep_group(sweep_dir) if sweep_dir is not None else cfg.experiment_name,
        "job_type": stage or str(cfg.experiment_name),
        "save_dir": str(out),
        "offline": mode == "offline",
        "config": OmegaConf.to_container(cfg, resolve=True),
        "reinit": "finish_previous",
    }


def log_run_summary(logger: Any, out: Path) -> dict[str, float]:
    """Put the final test metrics of ``out/test_results.json`` into the wandb run summary
    (``final/<metric>``, ``final/<feature>/<metric>``, ``final/<size>/<metric>``); returns them."""
    f = out / "test_results.json"
    if not f.is_file():
        return {}
    import json

    res = json.loads(f.read_text())
    summary: dict[str, float] = {}
    for k, v in (res.get("metrics") or {}).items():
        if isinstance(v, (int, float)):
            summary[f"final/{k}"] = float(v)
        elif k == "sizes" and isinstance(v, dict):
            summary.update({f"final/{size}/{m}": float(x) for size, ms in v.items() for m, x in ms.items()
                            if isinstance(x, (int, float))})
    for combo, ms in (res.get("features") or {}).items():
        summary.update({f"final/{combo}/{m}": float(x) for m, x in ms.items() if isinstance(x, (int, float))})
    if summary:
        logger.experiment.summary.update(summary)
    return summary


def log_run_media(logger: Any, out: Path, recursive: bool = True, extra: list[Path] | None = None) -> None:
    """Upload the PNG figures written in ``out`` (and below it when ``recursive``), plus ``extra``,
    as wandb images, and the final test metrics into the run summary (:func:`log_run_summary`)."""
    import wandb

    log_run_summary(logger, out)

    found = out.rglob("*.png") if recursive else out.glob("*.png")
    pngs = sorted(p for p in found if "wandb" not in p.parts and "stages" not in p.relative_to(out).parts)
    pngs += [Path(p) for p in extra or [] if Path(p).is_file()]
    if pngs:
        logger.experiment.log({f"media/{p.stem}": wandb.Image(str(p)) for p in pngs})


def log_sweep_table(sweep_dir: str | Path, name: str, table: tuple[list[str], list[list[Any]]],
                    wandb_cfg: dict[str, Any], files: list[Path] | None = None) -> None:
    """Log a sweep's table as a ``wandb.Table`` in a run of the sweep's group (job type ``sweep_table``),
    with the table's markdown/CSV files saved beside it. Offline without an API key."""
    import wandb

    import os

    if os.environ.get("WANDB_MODE") == "":  # an empty variable is not a mode; the config's mode decides
        del os.environ["WANDB_MODE"]
    sweep_dir = Path(sweep_dir)
    group = sweep_group(sweep_dir)
    header, rows = table
    run = wandb.init(project=wandb_cfg.get("project") or "vreid_lightning", entity=wandb_cfg.get("entity"),
                     group=group, job_type="sweep_table", name=f"{group}-{name}", dir=str(sweep_dir),
                     mode=_mode(wandb_cfg.get("mode")), reinit="finish_previous",
                     config={"sweep_dir": str(sweep_dir), "table": name})
    try:
        run.log({name: wandb.Table(columns=list(header), data=[list(r) for r in rows])})
        run.summary.update({"sweep/rows": len(rows)})
        for f in files or []:
            if Path(f).is_file():
                run.save(str(f), base_path=str(Path(f).parent), policy="now")
    finally:
        run.finish()


def finish_wandb(exit_code: int = 0) -> None:
    """Close the current wandb run if one is open (safe to call when wandb was never used)."""
    import sys

    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
