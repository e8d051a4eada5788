"""Checks before anything starts, for set-ups that would otherwise end in a traceback or a cryptic line.

- :func:`check_devices`: a GPU trainer (``trainer=gpu``, ``trainer=ddp``) on a machine without a GPU
  ended in Lightning's ``No supported gpu backend found!``; it now names the key and the CPU ways
  (``trainer=cpu``, ``trainer=ddp_spawn`` over gloo, or ``trainer=ddp trainer.accelerator=cpu``).
- :class:`SweepPreflight` (a Hydra callback, ``conf/hydra/default.yaml``): ``hydra/launcher=slurm`` off a
  SLURM cluster ended in submitit's traceback (``Could not detect "srun"``); it now ends with one line
  suggesting ``hydra/launcher=local``.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vreid_lightning.errors import ConfigError

__all__ = ["check_devices", "check_launcher", "SweepPreflight"]


def check_devices(cfg: DictConfig) -> None:
    """A GPU accelerator needs a GPU: one clear error naming the CPU alternatives."""
    import torch

    trainer = cfg.get("trainer") or {}
    accel = str(trainer.get("accelerator", "auto")).lower()
    if accel not in ("gpu", "cuda") or torch.cuda.is_available():
        return
    strategy = str(trainer.get("strategy", "auto"))
    ddp = "ddp" in strategy
    raise ConfigError(
        f"trainer.accelerator={accel}" + (f" (trainer.strategy={strategy})" if ddp else "")
        + ": this machine has no GPU (torch.cuda.is_available() is False). On the CPU use trainer=cpu"
        + ("; for several processes on the CPU: trainer=ddp_spawn (gloo backend; also under -m) or "
           "trainer=ddp trainer.accelerator=cpu (single runs, torchrun)" if ddp else "; several CPU processes: "
           "trainer=ddp_spawn (gloo backend)"))


def check_launcher(config: DictConfig) -> str | None:
    """The one-line problem of the configured launcher on this machine (None when it can run)."""
    target = str(config.hydra.launcher.get("_target_", ""))
    if "SlurmLauncher" in target and shutil.which("srun") is None:
        return ("hydra/launcher=slurm needs a SLURM cluster: there is no `srun` on this machine's PATH. Run the "
                "same sweep here with hydra/launcher=local (one subprocess per job, submitit's local executor) or "
                "without hydra/launcher (one job after another); on the cluster, start it from a login node")
    return None


class SweepPreflight(Callback):
    """Hydra callback: stop a multirun before it starts when its launcher cannot run here (one line, exit 2)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        problem = check_launcher(config)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(2)
